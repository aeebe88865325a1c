"""Paths against exact answers: autograd derivatives, the literature's SDE coefficients, the moment
ODEs of the SDE, Bayes for the DDPM posterior, diffusers' discrete schedules."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import difflab as dl
from conftest import ALL_PATHS

T_INTERIOR = torch.tensor([0.013, 0.1, 0.37, 0.5, 0.77, 0.95], dtype=torch.float64)


def test_derivatives_agree_with_autograd(any_path):
    t = T_INTERIOR.clone().requires_grad_(True)
    for f, df in [(any_path.alpha, any_path.d_alpha), (any_path.sigma, any_path.d_sigma)]:
        (grad,) = torch.autograd.grad((f(t) + 0 * t).sum(), t)  # + 0 t: constant alpha (VE) has no graph
        torch.testing.assert_close(df(T_INTERIOR), grad, rtol=1e-9, atol=1e-12)
    (grad,) = torch.autograd.grad(any_path.log_snr(t).sum(), t)
    torch.testing.assert_close(any_path.d_log_snr(T_INTERIOR), grad, rtol=1e-8, atol=1e-10)


def test_endpoints(any_path):
    t0 = torch.tensor(0.0, dtype=torch.float64)
    assert float(any_path.alpha(t0)) == pytest.approx(1.0, abs=1e-12)
    # t = 0 is the clean data, except on Lipman's flow path, which keeps a tube of width sigma_min there
    tube = any_path.sigma_min if isinstance(any_path, dl.paths.Linear) else 0.0
    assert float(any_path.sigma(t0)) == pytest.approx(tube, abs=1e-12)
    t = torch.linspace(0.001, 0.999, 500, dtype=torch.float64)
    lam = any_path.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all()), "log-SNR must decrease strictly"


@pytest.mark.parametrize(
    "path, g2",
    [
        (dl.paths.VP(0.1, 20.0), lambda t: 0.1 + t * 19.9),  # Song et al. eq. 11: g^2 = beta(t)
        (dl.paths.SubVP(0.1, 20.0),  # eq. 12: g^2 = beta(t) (1 - exp(-2 int beta))
         lambda t: (0.1 + t * 19.9) * (1 - np.exp(-2 * (0.1 * t + 0.5 * 19.9 * t**2)))),
        (dl.paths.VE(0.01, 50.0),  # eq. 30: g = sigma_min r^t sqrt(2 log r)
         lambda t: (0.01 * 5000.0**t) ** 2 * 2 * math.log(5000.0)),
        (dl.paths.Linear(), lambda t: 2 * t / (1 - t)),
    ],
)
def test_diffusion_matches_literature(path, g2):
    f, g2_ours = path.drift_diffusion(T_INTERIOR)
    torch.testing.assert_close(g2_ours, torch.as_tensor(g2(T_INTERIOR.numpy())), rtol=1e-10, atol=0)


MOMENT_PATHS = {**{k: v for k, v in ALL_PATHS.items() if not k.startswith("Discrete")},
                "DiscreteVP.linear(50)": lambda: dl.paths.DiscreteVP.linear(50, 2e-3, 0.3),
                "DiscreteVP.cosine(40)": lambda: dl.paths.DiscreteVP.cosine(40),
                "DiscreteVE.geometric(20)": lambda: dl.paths.DiscreteVE.geometric(20, 0.05, 5.0)}


@pytest.mark.parametrize("name", list(MOMENT_PATHS))
def test_sde_moment_odes_reproduce_the_path(name):
    """m' = f m, v' = 2 f v + g^2 from (m, v) = (1, 0): the SDE's mean factor and variance are alpha, sigma^2."""
    path = MOMENT_PATHS[name]()
    t_end = 0.95

    def rhs(t, y):
        f, g2 = (float(c) for c in path.drift_diffusion(torch.tensor(t, dtype=torch.float64)))
        return [f * y[0], 2 * f * y[1] + g2]

    t_start = 1e-9  # g^2 is finite at 0 for every path, but start just inside for Linear's 0/0 form
    y0 = [float(path.alpha(torch.tensor(t_start, dtype=torch.float64))), float(path.sigma(torch.tensor(t_start, dtype=torch.float64))) ** 2]
    grid = [0.1, 0.5, t_end]
    kinks = path.T is not None
    sol = solve_ivp(rhs, (t_start, t_end), y0, t_eval=grid, rtol=1e-10, atol=1e-12, method="LSODA" if not kinks else "RK45",
                    max_step=(1.0 / path.T if kinks else np.inf))
    tt = torch.tensor(grid, dtype=torch.float64)
    rtol = 2e-5 if kinks else 1e-6  # a discrete path's drift jumps at every grid point
    np.testing.assert_allclose(sol.y[0], path.alpha(tt).numpy(), rtol=rtol)
    np.testing.assert_allclose(sol.y[1], (path.sigma(tt) ** 2).numpy(), rtol=rtol)


def test_forward_sde_simulation_matches_marginals():
    """Euler-Maruyama on the forward VP SDE from a point x0 lands on N(alpha x0, sigma^2) (Monte Carlo)."""
    path = dl.paths.VP()
    g = torch.Generator().manual_seed(0)
    n, steps, x0 = 200_000, 1000, 2.0
    x = torch.full((n,), x0, dtype=torch.float64)
    ts = torch.linspace(0, 0.6, steps + 1, dtype=torch.float64)
    for t, s in zip(ts[:-1], ts[1:]):
        f, g2 = path.drift_diffusion(t)
        x = x + f * x * (s - t) + torch.sqrt(g2 * (s - t)) * torch.randn(n, generator=g, dtype=torch.float64)
    a, sig = float(path.alpha(ts[-1])), float(path.sigma(ts[-1]))
    assert float(x.mean()) == pytest.approx(a * x0, abs=5 * sig / math.sqrt(n) + 2e-3)
    assert float(x.var()) == pytest.approx(sig**2, rel=0.01)


def test_discrete_vp_on_its_grid():
    path = dl.paths.DiscreteVP.linear(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    torch.testing.assert_close(path.alpha(t) ** 2, abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(path.sigma(t) ** 2, 1 - abar, rtol=1e-10, atol=0)
    # piecewise log-linear in between: continuous, and d_alpha is the slope of log alpha
    mid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    torch.testing.assert_close(path.alpha(mid) ** 2, torch.sqrt(abar * torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])), rtol=1e-12, atol=0)


def test_discrete_vp_posterior_matches_bayes():
    """q(x_{i-1} | x_i, x0) from Gaussian conditioning of the joint (x_{i-1}, x_i) given x0."""
    path = dl.paths.DiscreteVP.cosine(50)
    for i in [1, 2, 17, 50]:
        abar_prev = float(path.alphas_cumprod[i - 2]) if i > 1 else 1.0
        beta = float(path.betas[i - 1])
        a_prev, a = math.sqrt(abar_prev), math.sqrt(abar_prev * (1 - beta))
        # joint of (x_{i-1}, x_i) given x0: x_{i-1} = a_prev x0 + ..., x_i = sqrt(1 - beta) x_{i-1} + sqrt(beta) e
        v_prev = 1 - abar_prev
        cov = np.array([[v_prev, math.sqrt(1 - beta) * v_prev], [math.sqrt(1 - beta) * v_prev, (1 - beta) * v_prev + beta]])
        k = cov[0, 1] / cov[1, 1]  # conditional mean = a_prev x0 + k (x_i - a x0)
        coef_xt, coef_x0, var = k, a_prev - k * a, cov[0, 0] - k * cov[0, 1]
        assert float(path.posterior_mean_coef_xt[i - 1]) == pytest.approx(coef_xt, rel=1e-10, abs=1e-14)
        assert float(path.posterior_mean_coef_x0[i - 1]) == pytest.approx(coef_x0, rel=1e-10, abs=1e-14)
        assert float(path.beta_tilde[i - 1]) == pytest.approx(var, rel=1e-9, abs=1e-14)
        # the generic posterior of any pair of times agrees on the grid
        c0, ct, v = path.posterior(torch.tensor(i / 50, dtype=torch.float64), torch.tensor((i - 1) / 50, dtype=torch.float64))
        assert (float(c0), float(ct), float(v)) == pytest.approx((coef_x0, coef_xt, var), rel=1e-9, abs=1e-14)


def test_generic_posterior_matches_bayes_on_continuous_paths(any_path):
    t, s = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64)
    a_t, a_s, sig_t, sig_s = (float(f(u)) for f, u in [(any_path.alpha, t), (any_path.alpha, s), (any_path.sigma, t), (any_path.sigma, s)])
    # x_s = a_s x0 + sig_s e1, x_t = (a_t/a_s) x_s + sqrt(sig_t^2 - (a_t/a_s)^2 sig_s^2) e2  (given x0)
    cov_ss, cov_ts, cov_tt = sig_s**2, a_t / a_s * sig_s**2, sig_t**2
    k = cov_ts / cov_tt
    c0, ct, v = any_path.posterior(t, s)
    assert float(ct) == pytest.approx(k, rel=1e-10)
    assert float(c0) == pytest.approx(a_s - k * a_t, rel=1e-9, abs=1e-12)
    assert float(v) == pytest.approx(cov_ss - k * cov_ts, rel=1e-9, abs=1e-12)


def test_discrete_schedules_match_diffusers():
    from diffusers import DDPMScheduler

    lin = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    torch.testing.assert_close(dl.paths.DiscreteVP.linear(1000).betas.float(), lin.betas, rtol=1e-6, atol=1e-9)
    cos = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(dl.paths.DiscreteVP.cosine(1000).betas.float(), cos.betas, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(dl.paths.DiscreteVP.cosine(1000).alphas_cumprod.float(), cos.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_t_from_log_snr_inverts(any_path):
    t = T_INTERIOR
    torch.testing.assert_close(any_path.t_from_log_snr(any_path.log_snr(t)), t, rtol=0, atol=1e-12)


def test_discrete_t_from_log_snr_is_the_bisection_in_closed_form():
    """DiscreteVP inverts its piecewise log-linear alpha exactly; the generic bisection agrees."""
    for path in (dl.paths.DiscreteVP.cosine(1000), dl.paths.DiscreteVP.linear(50)):
        lam = torch.cat([torch.linspace(-25.0, 12.0, 301, dtype=torch.float64), path.log_snr(torch.arange(1, 11) / 10)])
        torch.testing.assert_close(path.t_from_log_snr(lam), dl.paths.AffinePath.t_from_log_snr(path, lam), rtol=0, atol=1e-12)
        assert path.t_from_log_snr(torch.tensor(-40.0)).shape == () and float(path.t_from_log_snr(-40.0)) == 1.0


def test_cosine_reaches_pure_noise():
    path = dl.paths.Cosine()
    assert float(path.alpha(torch.tensor(1.0, dtype=torch.float64))) == 0.0
    assert float(path.sigma(torch.tensor(1.0, dtype=torch.float64))) == 1.0


def test_perturb_and_prior():
    path = dl.paths.VP()
    x0, z = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t = torch.tensor([0.0, 0.2, 0.5, 1.0])
    xt = path.perturb(x0, t, z)
    for i in range(4):
        torch.testing.assert_close(xt[i], path.alpha(t[i]) * x0[i] + path.sigma(t[i]) * z[i])
    p = path.prior_sample((10000, 2), torch.Generator().manual_seed(0))
    assert abs(float(p.var()) - float(path.sigma(torch.tensor(1.0))) ** 2) < 0.05
    x = torch.randn(5, 2, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))).log_prob(x).sum(1)
    torch.testing.assert_close(path.prior_log_prob(x), expected)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p.perturb(torch.zeros(3, 2), torch.tensor([0.1, 1.5, 0.2]), torch.zeros(3, 2)), r"\[0, 1\]"),
        (lambda p: p.perturb(torch.zeros(3, 2), torch.tensor([0.1, 0.2]), torch.zeros(3, 2)), "shape"),
        (lambda p: p.perturb(torch.zeros(3, 2), 0.5, torch.zeros(3, 3)), "shape"),
        (lambda p: p.perturb(torch.zeros(3, 2), torch.tensor(float("nan")), torch.zeros(3, 2)), "NaN"),
        (lambda p: p.prior_log_prob(torch.tensor([[float("inf"), 0.0]])), "NaN or infinite"),
    ],
)
def test_bad_input_is_refused_clearly(call, message):
    with pytest.raises(ValueError, match=message):
        call(dl.paths.VP())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: dl.paths.VP(-1, 2), "beta_min"),
        (lambda: dl.paths.VE(1.0, 0.5), "sigma_min < sigma_max"),
        (lambda: dl.paths.DiscreteVP([0.1, 1.2]), "open interval"),
        (lambda: dl.paths.DiscreteVP.linear(0), "positive integer"),
    ],
)
def test_bad_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_discrete_ve_is_ncsns_geometric_ladder():
    path = dl.paths.DiscreteVE.geometric(10, 0.01, 5.0)
    levels = path.sigma(torch.arange(1, 11, dtype=torch.float64) / 10)
    torch.testing.assert_close(levels[1:] / levels[:-1], torch.full((9,), (5.0 / 0.01) ** (1 / 9), dtype=torch.float64))
    torch.testing.assert_close(levels[[0, -1]], torch.tensor([0.01, 5.0], dtype=torch.float64))
    assert path.T == 10 and path.t_min == 0.1
    # the default (trailing) grid with steps = L visits exactly the levels, largest first
    ts = dl.samplers.grids.make_grid("trailing", path, 10)
    torch.testing.assert_close(path.sigma(ts[:-1]), levels.flip(0))
    with pytest.raises(ValueError, match="strictly increasing"):
        dl.paths.DiscreteVE([1.0, 0.5])
