"""The exact mixture model against independent computations: autograd, quadrature, Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import difflab as dl
from conftest import gen, test_mixture


@pytest.mark.parametrize("path", [dl.paths.VP(), dl.paths.VE(), dl.paths.Linear()], ids=repr)
def test_score_is_the_gradient_of_log_prob(path):
    mix = test_mixture()
    x = torch.randn(64, 2, dtype=torch.float64, generator=gen(1)) * 2
    t = torch.rand(64, dtype=torch.float64, generator=gen(2)) * 0.9 + 0.05
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xr, t, path).sum(), xr)
    torch.testing.assert_close(mix.score(x, t, path), grad)
    # Tweedie: E[x0 | x_t] = (x_t + sigma^2 score) / alpha
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    torch.testing.assert_close(mix.posterior_mean(x, t, path), (x + s**2 * mix.score(x, t, path)) / a)


def test_log_prob_matches_scipy_at_every_time():
    mix = test_mixture()
    path = dl.paths.VP()
    x = torch.randn(20, 2, dtype=torch.float64, generator=gen(3))
    t = 0.3
    a, s = (float(f(torch.tensor(t, dtype=torch.float64))) for f in (path.alpha, path.sigma))
    covs = mix.component_covariances().numpy()
    dens = sum(
        float(w) * stats.multivariate_normal(a * m.numpy(), a**2 * c + s**2 * np.eye(2)).pdf(x.numpy())
        for w, m, c in zip(mix.weights, mix.means, covs)
    )
    np.testing.assert_allclose(mix.log_prob(x, t, path).numpy(), np.log(dens), rtol=1e-10)
    # the data density at t = 0
    dens0 = sum(float(w) * stats.multivariate_normal(m.numpy(), c).pdf(x.numpy()) for w, m, c in zip(mix.weights, mix.means, covs))
    np.testing.assert_allclose(mix.log_prob(x).numpy(), np.log(dens0), rtol=1e-10)


def test_posterior_mean_matches_quadrature_in_1d():
    """E[x0 | x_t] = int x0 p(x0) q(x_t | x0) dx0 / int p(x0) q(x_t | x0) dx0, by numerical integration."""
    mix = dl.oracles.GaussianMixture([-2.0, 0.5, 3.0], [0.3, 0.7, 0.2], [0.2, 0.5, 0.3])
    path = dl.paths.Cosine()
    for t, xt in [(0.2, -1.0), (0.5, 0.3), (0.8, 1.7)]:
        a, s = (float(f(torch.tensor(t, dtype=torch.float64))) for f in (path.alpha, path.sigma))

        def joint(x0, k):
            p0 = math.exp(float(mix.log_prob(torch.tensor([[x0]], dtype=torch.float64))))
            return x0**k * p0 * stats.norm(a * x0, s).pdf(xt)

        num = integrate.quad(joint, -8, 8, args=(1,), points=[-2, 0.5, 3], limit=200)[0]
        den = integrate.quad(joint, -8, 8, args=(0,), points=[-2, 0.5, 3], limit=200)[0]
        got = float(mix.posterior_mean(torch.tensor([[xt]], dtype=torch.float64), t, path))
        assert got == pytest.approx(num / den, rel=1e-7)


def test_samples_have_the_exact_moments_and_weights():
    mix = test_mixture()
    x, comp = mix.sample(100_000, gen(4), dtype=torch.float64, return_components=True)
    n = x.shape[0]
    se = torch.sqrt(torch.diagonal(mix.covariance()) / n)
    assert bool(((x.mean(0) - mix.mean()).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(x.T), mix.covariance(), atol=0.03, rtol=0.02)
    counts = torch.bincount(comp, minlength=3).double()
    assert stats.chisquare(counts.numpy(), (mix.weights * n).numpy()).pvalue > 1e-4
    # a sample of x_t has the marginal's moments: mean alpha m, covariance alpha^2 C + sigma^2 I
    path, t = dl.paths.VE(), 0.4
    xt = mix.sample(100_000, gen(5), path=path, t=t, dtype=torch.float64)
    s = float(path.sigma(torch.tensor(t)))
    torch.testing.assert_close(torch.cov(xt.T), mix.covariance() + s**2 * torch.eye(2, dtype=torch.float64), rtol=0.03, atol=0.03)


def test_gaussian_flow_solves_the_probability_flow_ode():
    """d/ds flow(x, t -> s) equals the ODE velocity alpha' x0_hat + sigma' eps_hat at the flowed point."""
    g = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    path = dl.paths.VP()
    den = g.denoiser(path)
    x = torch.randn(50, 2, dtype=torch.float64, generator=gen(6))
    for s in [0.2, 0.5, 0.8]:
        h = 1e-6
        xs = g.flow(x, 1.0, s, path)
        dxds = (g.flow(x, 1.0, s + h, path) - g.flow(x, 1.0, s - h, path)) / (2 * h)
        st = torch.tensor(s, dtype=torch.float64)
        coefs = [float(f(st)) for f in (path.alpha, path.sigma, path.d_alpha, path.d_sigma)]
        v = dl.samplers.velocity(xs, den(xs, torch.full((50,), s, dtype=torch.float64)), *coefs)
        torch.testing.assert_close(dxds, v, rtol=1e-6, atol=1e-6)
    # and it is a flow: composing t -> s -> r is t -> r, and it pushes N(alpha_t m, S_t) to N(alpha_s m, S_s)
    torch.testing.assert_close(g.flow(g.flow(x, 0.9, 0.5, path), 0.5, 0.1, path), g.flow(x, 0.9, 0.1, path))
    xt = g.sample(100_000, gen(7), path=path, t=0.9, dtype=torch.float64)
    x0 = g.flow(xt, 0.9, 0.0, path)
    torch.testing.assert_close(torch.cov(x0.T), g.covariance(), rtol=0.03, atol=0.01)


def test_bad_mixtures_are_refused():
    with pytest.raises(ValueError, match="exactly one of"):
        dl.oracles.GaussianMixture([[0.0, 0.0]])
    with pytest.raises(ValueError, match="weights"):
        dl.oracles.GaussianMixture([[0.0], [1.0]], 1.0, [1.0, -1.0])
    with pytest.raises(ValueError, match="positive semi-definite"):
        dl.oracles.GaussianMixture([[0.0, 0.0]], covariances=[[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        test_mixture().log_prob(torch.zeros(3, 5))


def test_isotropic_fast_path_equals_the_general_computation():
    g = gen(12)
    means, stds = torch.randn(6, 5, dtype=torch.float64, generator=g), torch.rand(6, dtype=torch.float64, generator=g) + 0.1
    fast = dl.oracles.GaussianMixture(means, stds, torch.rand(6, dtype=torch.float64, generator=g))
    slow = dl.oracles.GaussianMixture(means, covariances=torch.diag_embed(stds[:, None].expand(6, 5) ** 2), weights=fast.weights)
    assert fast._iso_var is not None and slow._iso_var is None
    path = dl.paths.VP()
    x = torch.randn(40, 5, dtype=torch.float64, generator=g)
    t = torch.rand(40, dtype=torch.float64, generator=g)
    for name in ["posterior_mean", "score", "log_prob", "posterior_weights"]:
        torch.testing.assert_close(getattr(fast, name)(x, t, path), getattr(slow, name)(x, t, path), msg=name)
