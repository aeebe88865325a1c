"""Likelihoods against exact answers: divergences, probability-flow log-densities, the DDPM ELBO, bits/dim."""

import math

import pytest
import torch

import difflab as dl
from difflab.divergence import exact_divergence, hutchinson_divergence, probes
from difflab.likelihood import (bits_per_dim, dequantize, discretized_gaussian_log_prob, elbo, log_likelihood)

D64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tilted_gaussian():
    return dl.oracles.Gaussian([0.5, -1.0], covariance=torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=D64))


def mixture():
    return dl.oracles.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, 2.0]], dtype=D64),
                                      torch.tensor([0.5, 0.3, 0.7], dtype=D64), torch.tensor([0.3, 0.3, 0.4], dtype=D64))


# -- divergences ----------------------------------------------------------------------------------

def field(x):  # a nonlinear field with a full, non-symmetric Jacobian, independent across the batch
    W = torch.tensor([[0.3, -1.2, 0.5], [0.7, 0.1, -0.4], [-0.2, 0.9, 0.6]], dtype=x.dtype)
    return torch.tanh(x @ W) * x.sum(1, keepdim=True) + x**3


def jacobian_traces(x):
    return torch.stack([torch.trace(torch.autograd.functional.jacobian(lambda v: field(v[None])[0], xi)) for xi in x])


def test_exact_divergence_is_the_jacobian_trace():
    x = torch.randn(7, 3, generator=gen(), dtype=D64)
    y, div = exact_divergence(field, x)
    torch.testing.assert_close(y, field(x))
    torch.testing.assert_close(div, jacobian_traces(x))


def test_hutchinson_is_unbiased_and_exact_for_diagonal_jacobians():
    x = torch.randn(5, 3, generator=gen(1), dtype=D64)
    truth = jacobian_traces(x)
    for kind in ("rademacher", "gaussian"):
        _, est = hutchinson_divergence(field, x, probes(kind, 20000, x, gen(2)))
        se = est.std(0) / math.sqrt(est.shape[0])
        assert bool(((est.mean(0) - truth).abs() < 5 * se).all()), (kind, est.mean(0), truth, se)
    # elementwise field: diagonal Jacobian, so one Rademacher probe is exact
    _, est = hutchinson_divergence(lambda v: torch.sin(v) * 2, x, probes("rademacher", 1, x, gen(3)))
    torch.testing.assert_close(est[0], (2 * torch.cos(x)).sum(1))


def test_divergence_input_errors():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="shape of its input"):
        exact_divergence(lambda v: v[:, :2], x)
    with pytest.raises(ValueError, match="probes must have shape"):
        hutchinson_divergence(field, x, torch.randn(2, 4, 2))
    with pytest.raises(ValueError, match="probe kind"):
        probes("uniform", 2, x)


# -- probability flow -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [dl.paths.Cosine(), dl.paths.Linear()], ids=repr)
def test_flow_likelihood_of_a_gaussian_matches_the_closed_form(path):
    """alpha(1) = 0 on these paths, so the prior is exact and log p_{t0} itself is the answer."""
    g = tilted_gaussian()
    x = g.sample(200, gen())
    logp, info = log_likelihood(g.denoiser(path), path, x, return_info=True)
    assert (logp - g.log_prob(x, info.t_start, path)).abs().max() < 1e-3
    assert info.nfe > 0 and info.stderr is None


@pytest.mark.parametrize("path", [dl.paths.VP(), dl.paths.SubVP(), dl.paths.VE()], ids=repr)
def test_flow_likelihood_is_the_models_change_of_variables(path):
    """With the N(0, sigma(1)^2) prior the model's density is log N(Phi(x)) + log|det Phi'| for the exact
    (linear) flow map Phi of a Gaussian: the ODE must reproduce it and its latent Phi(x)."""
    g = tilted_gaussian()
    x = g.sample(100, gen(1))
    logp, info = log_likelihood(g.denoiser(path), path, x, return_info=True)
    latent = g.flow(x, info.t_start, 1.0, path)
    jac = torch.stack([g.flow(x[:1] + e, info.t_start, 1.0, path)[0] - latent[0] for e in torch.eye(2, dtype=D64)], 1)
    model = path.prior_log_prob(latent) + torch.logdet(jac)
    assert (logp - model).abs().max() < 1e-3
    assert (info.latent - latent).abs().max() < 1e-2 * float(path.sigma(torch.tensor(1.0)))


def test_flow_likelihood_of_a_mixture_is_within_1e2_nats_of_log_p0():
    m = mixture()
    x = m.sample(200, gen(2))
    path = dl.paths.Cosine()
    logp = log_likelihood(m.denoiser(path), path, x)
    assert (logp - m.log_prob(x)).abs().max() < 1e-2


def test_hutchinson_likelihood_is_within_its_standard_error_which_shrinks_with_probes():
    m = mixture()
    x = m.sample(100, gen(3))
    path = dl.paths.Cosine()
    truth = m.log_prob(x)
    ses = {}
    for k in (4, 64):
        logp, info = log_likelihood(m.denoiser(path), path, x, method="hutchinson", probes=k, probe="gaussian",
                                    generator=gen(4), return_info=True)
        se = info.stderr
        # the batch mean error is within 4 pooled standard errors
        assert abs(float((logp - truth).mean())) < 4 * float(se.pow(2).mean().sqrt()) / math.sqrt(len(x))
        ses[k] = float(se.mean())
    assert 2.5 < ses[4] / ses[64] < 6.5  # ~ sqrt(64 / 4) = 4


def test_likelihood_input_errors():
    m = mixture()
    path = dl.paths.Cosine()
    with pytest.raises(ValueError, match="likelihood method"):
        log_likelihood(m.denoiser(path), path, torch.zeros(3, 2, dtype=D64), method="exactly")
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(m.denoiser(path), path, torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="t_start"):
        log_likelihood(m.denoiser(path), path, torch.zeros(3, 2, dtype=D64), t_start=0.0)


# -- the DDPM ELBO --------------------------------------------------------------------------------

def discretised_vp(T):
    """The continuous VP path sampled on T steps: the same process, finer and finer."""
    t = torch.arange(T + 1, dtype=D64) / T
    a2 = dl.paths.VP().alpha(t) ** 2
    return dl.paths.DiscreteVP(1 - a2[1:] / a2[:-1])


def test_elbo_of_the_exact_model_is_a_lower_bound_that_tightens_with_T():
    g = dl.oracles.Gaussian([0.5, -1.0], covariance=0.3 * torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=D64))
    x = g.sample(4000, gen(5))
    truth = g.log_prob(x)
    gaps = {}
    for T in (10, 100, 1000):
        path = discretised_vp(T)
        for variance in ("beta", "beta_tilde"):
            bound = elbo(g.denoiser(path), path, x, decoder="gaussian", variance=variance, generator=gen(T))
            gap = truth - bound
            se = float(gap.std()) / math.sqrt(len(x))
            assert float(gap.mean()) > -3 * se, (T, variance)  # a lower bound on average
            if variance == "beta":
                gaps[T] = (float(gap.mean()), se)
    assert gaps[10][0] > gaps[100][0] + 3 * gaps[10][1] > 0
    assert gaps[1000][0] < gaps[100][0] - 2 * gaps[100][1]
    assert abs(gaps[1000][0]) < 0.08


def test_elbo_subsampled_terms_are_unbiased():
    g = tilted_gaussian()
    x = g.sample(3000, gen(6))
    path = discretised_vp(50)
    full, info = elbo(g.denoiser(path), path, x, decoder="gaussian", generator=gen(7), return_info=True)
    part, pinfo = elbo(g.denoiser(path), path, x, decoder="gaussian", terms=5, generator=gen(8), return_info=True)
    assert info.nfe == 50 and pinfo.nfe == 6
    diff = part - full
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(len(x))


def test_elbo_terms_are_closed_form_kls():
    """T = 1: the ELBO is the decoder's log-likelihood minus the prior KL, each checkable by hand."""
    path = dl.paths.DiscreteVP.constant(1, 0.5)
    x = torch.tensor([[0.3, -0.7]], dtype=D64)
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731  a denoiser that always says 0
    value, info = elbo(zero, path, x, decoder="gaussian", variance="beta", generator=gen(), return_info=True)
    # prior KL(N(sqrt(.5) x, .5) || N(0, .5)) = x^2 / 2 summed; decoder N(x; 0, beta = .5)
    torch.testing.assert_close(info.prior_kl, (x**2).sum(1) / 2)
    torch.testing.assert_close(info.decoder_log_prob, torch.distributions.Normal(0.0, math.sqrt(0.5)).log_prob(x).sum(1))
    torch.testing.assert_close(value, info.decoder_log_prob - info.prior_kl)


def test_discretized_gaussian_sums_to_one_over_the_256_levels():
    levels = torch.arange(256, dtype=D64) / 127.5 - 1
    for mean, std in ((0.1, 0.05), (-0.98, 0.3), (0.999, 0.002)):
        p = discretized_gaussian_log_prob(levels, torch.tensor(mean, dtype=D64), std).exp()
        assert abs(float(p.sum()) - 1) < 1e-9


def test_elbo_input_errors():
    path = discretised_vp(10)
    den = lambda xt, t: xt  # noqa: E731
    with pytest.raises(ValueError, match="data range"):
        elbo(den, path, torch.full((2, 3), 1.5, dtype=D64))
    with pytest.raises(ValueError, match="continuous path needs"):
        elbo(den, dl.paths.VP(), torch.zeros(2, 3, dtype=D64))
    with pytest.raises(ValueError, match="ELBO variance"):
        elbo(den, path, torch.zeros(2, 3, dtype=D64), variance="sigma")


# -- bits per dimension ----------------------------------------------------------------------------

def test_uniform_density_on_the_cube_is_eight_bits_per_dim():
    dims = 10
    nll = torch.tensor([dims * math.log(2.0)])  # U[-1, 1]^D
    torch.testing.assert_close(bits_per_dim(nll, dims), torch.tensor([8.0]))
    torch.testing.assert_close(bits_per_dim(nll, dims, bins=None), torch.tensor([1.0]))


def test_dequantize_stays_in_each_pixels_bin():
    k = torch.randint(0, 256, (500, 4), generator=gen())
    x = k / 127.5 - 1  # how images are stored
    y = dequantize(x.to(D64), gen(1))
    u = (y + 1) / 2 * 256  # back to bin units
    assert bool((u.floor() == k).all())
    assert 0.45 < float((u - k).mean()) < 0.55
    with pytest.raises(ValueError, match="data range"):
        dequantize(torch.tensor([[1.2]]))
