"""Samplers against exact answers: distributions from exact oracles, convergence orders against the
closed-form flow of a Gaussian, identities between kernels, and diffusers' trajectories."""

import math

import pytest
import torch
from scipy import stats

import difflab as dl
from conftest import gen, test_mixture

G = dl.samplers.grids


def assert_matches_mixture(x: torch.Tensor, mix, z_max: float = 5.0, p_min: float = 1e-4):
    """Mean and covariance within z_max standard errors, mode weights by a chi-square test."""
    x = x.double()
    n = x.shape[0]
    cov = mix.covariance()
    z_mean = (x.mean(0) - mix.mean()) / torch.sqrt(torch.diagonal(cov) / n)
    var = torch.diagonal(cov)
    se_cov = torch.sqrt((torch.outer(var, var) + cov**2) / n)  # Gaussian approximation of Var[cov_ij]
    z_cov = (torch.cov(x.T) - cov) / se_cov
    counts = torch.bincount(mix.classify(x), minlength=mix.num_components).double()
    p = stats.chisquare(counts.numpy(), (mix.weights * n).numpy()).pvalue
    assert float(z_mean.abs().max()) < z_max, f"mean off by {z_mean.tolist()} standard errors"
    assert float(z_cov.abs().max()) < z_max, f"covariance off by {z_cov.tolist()} standard errors"
    assert p > p_min, f"mode weights {(counts / n).tolist()} vs {mix.weights.tolist()} (p = {p:.2g})"


# (sampler, options, path, grid, steps, samples): enough steps that discretisation bias is below
# sampling error; every case starts from the exact marginal at the grid's first time.
CASES = [
    ("ddpm", {}, "VP", "log_snr", 200, 20000),
    ("ddpm", {}, "Linear", "uniform", 200, 20000),
    ("ddpm", {"variance": "beta"}, "VP", "log_snr", 400, 20000),
    ("ddim", {}, "VE", "log_snr", 200, 20000),
    ("ddim", {}, "DiscreteVP", "trailing", 250, 20000),
    ("ddim", {"eta": 0.5}, "Cosine", "uniform", 200, 20000),
    ("euler_maruyama", {}, "VP", "log_snr", 400, 20000),
    ("euler_maruyama", {}, "VE", "log_snr", 400, 20000),
    ("pc", {}, "VP", "log_snr", 200, 20000),
    ("pc", {"snr": 0.1, "corrector_steps": 2}, "SubVP", "log_snr", 150, 20000),
    ("ode_euler", {}, "VP", "log_snr", 200, 20000),
    ("ode_euler", {}, "Linear", "uniform", 100, 20000),
    ("ode_heun", {}, "VE", "karras", 100, 20000),
    ("ode_heun", {}, "Cosine", "uniform", 50, 20000),
    ("ode_rk45", {}, "VP", None, None, 20000),
    ("ode_rk45", {"rtol": 1e-6, "atol": 1e-6}, "VE", None, None, 20000),
    ("dpmpp_2m", {}, "VP", "log_snr", 25, 20000),
    ("dpmpp_2m", {}, "VE", "karras", 25, 20000),
    ("dpmpp_2m", {}, "Linear", "uniform", 25, 20000),
    ("dpmpp_2m_sde", {}, "VP", "log_snr", 50, 20000),
    ("dpmpp_2m_sde", {"eta": 0.5}, "VE", "karras", 50, 20000),
    ("dpmpp_2m_sde", {}, "Linear", "uniform", 50, 20000),
    ("unipc", {}, "VP", "log_snr", 25, 20000),
    ("unipc", {"order": 3}, "VE", "karras", 25, 20000),
    ("unipc", {"variant": "bh1"}, "Linear", "uniform", 25, 20000),
    ("annealed_langevin", {"steps_per_level": 20, "eps_ratio": 0.3}, "VE", "log_snr", 50, 5000),
]
PATHS = {"VP": dl.paths.VP, "VE": dl.paths.VE, "Linear": dl.paths.Linear, "Cosine": dl.paths.Cosine,
         "SubVP": dl.paths.SubVP, "DiscreteVP": lambda: dl.paths.DiscreteVP.linear(1000)}


@pytest.mark.parametrize("sampler, options, path_name, grid, steps, n", CASES,
                         ids=[f"{c[0]}-{c[2]}-{'-'.join(f'{k}={v}' for k, v in c[1].items())}" for c in CASES])
def test_sampler_reproduces_the_mixture(sampler, options, path_name, grid, steps, n):
    mix, path = test_mixture(), PATHS[path_name]()
    options = dict(options)
    if sampler == "ode_rk45":
        ts = torch.tensor([1.0, path.t_min, 0.0], dtype=torch.float64)
    else:
        ts = G.make_grid(grid, path, steps)
    if "eps_ratio" in options:  # Algorithm 1's eps as a multiple of the last level's sigma^2
        last = ts[ts > 0][-1]
        options["eps"] = options.pop("eps_ratio") * float(path.sigma(last) / path.alpha(last)) ** 2
    g = gen(0)
    x1 = mix.sample(n, g, path=path, t=float(ts[0]), dtype=torch.float64)
    x = dl.sample(mix.denoiser(path), path, x=x1, sampler=sampler, timesteps=ts, generator=g, **options)
    assert_matches_mixture(x, mix)


def test_dl_sample_from_the_prior_with_default_grids():
    """The one-call API from the prior: a discrete path's trailing grid, a continuous path's uniform grid."""
    mix = test_mixture()
    for path, sampler, steps in [(dl.paths.DiscreteVP.linear(1000), "ddim", 100), (dl.paths.Linear(), "ode_heun", 30)]:
        x, info = dl.sample(mix.denoiser(path), path, (20000, 2), sampler=sampler, steps=steps, generator=gen(1),
                            dtype=torch.float64, return_info=True)
        assert info.steps == steps
        assert_matches_mixture(x, mix, z_max=6)


def _flow_error(sampler, path, gaussian, steps):
    x1 = torch.randn(200, 2, dtype=torch.float64, generator=gen(2))
    ts = G.uniform(path, steps)
    x = sampler(gaussian.denoiser(path), path, x1, ts)
    return float((x - gaussian.flow(x1, 1.0, 0.0, path)).abs().max())


@pytest.mark.parametrize("path", [dl.paths.Linear(), dl.paths.VP(), dl.paths.Cosine()], ids=repr)
def test_euler_is_first_order_and_heun_second_order(path):
    """Halving the step halves Euler's error and quarters Heun's, against the exact Gaussian flow."""
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    for sampler, order in [(dl.samplers.ode_euler, 1), (dl.samplers.ode_heun, 2)]:
        errors = [_flow_error(sampler, path, gauss, n) for n in (40, 80, 160)]
        rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
        assert all(abs(r - order) < 0.25 for r in rates), f"{sampler.__name__}: errors {errors}, observed orders {rates}"


@pytest.mark.parametrize("path", [dl.paths.Linear(), dl.paths.Cosine()], ids=repr)
def test_rk4_is_fourth_order(path):
    """Halving the step divides RK4's error by ~16, its final Heun-3 step to t = 0 included."""
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    errors = [_flow_error(dl.samplers.ode_rk4, path, gauss, n) for n in (16, 32, 64)]
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(r - 4) < 0.4 for r in rates), f"errors {errors}, observed orders {rates}"


def test_rk45_meets_its_tolerance_on_the_exact_flow():
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    path = dl.paths.VP()
    x1 = torch.randn(100, 2, dtype=torch.float64, generator=gen(3))
    ts = torch.tensor([1.0, 0.05], dtype=torch.float64)
    errs = []
    for tol in (1e-4, 1e-7):
        x, info = dl.samplers.ode_rk45(gauss.denoiser(path), path, x1, ts, rtol=tol, atol=tol, return_info=True)
        errs.append(float((x - gauss.flow(x1, 1.0, 0.05, path)).abs().max()))
        assert info.nfe > 10
    assert errs[1] < 1e-5 and errs[1] < errs[0] / 10


def test_ddim_with_eta_one_is_the_ddpm_step():
    """Same mean (noise = 0) and the same noise coefficient: the same Gaussian transition law."""
    path = dl.paths.DiscreteVP.cosine(100)
    x, x0 = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    for t, s in [(0.9, 0.8), (0.5, 0.2), (0.11, 0.01)]:
        st = dl.samplers.step_of(path, t, s)
        m_ddim = dl.samplers.ddim_step(x, x0, st, eta=1.0, noise=zero)
        m_ddpm = dl.samplers.ddpm_step(x, x0, st, "beta_tilde", noise=zero)
        torch.testing.assert_close(m_ddim, m_ddpm)
        c_ddim = dl.samplers.ddim_step(x, x0, st, eta=1.0, noise=one) - m_ddim
        c_ddpm = dl.samplers.ddpm_step(x, x0, st, "beta_tilde", noise=one) - m_ddpm
        torch.testing.assert_close(c_ddim, c_ddpm)
        assert float(c_ddpm[0, 0]) ** 2 == pytest.approx(float(path.posterior(torch.tensor(t), torch.tensor(s))[2]), rel=1e-6)


def test_ddpm_step_is_the_notes_algorithm_on_one_chain_step():
    """x_{i-1} = (x_i - beta_i / sqrt(1 - abar_i) eps_hat) / sqrt(alpha_i) + sigma_i z (Algorithm 25.2)."""
    path = dl.paths.DiscreteVP.linear(1000)
    x, x0 = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    z = torch.randn(5, 4, dtype=torch.float64)
    for i in [1000, 500, 2]:
        st = dl.samplers.step_of(path, i / 1000, (i - 1) / 1000)
        beta, abar = float(path.betas[i - 1]), float(path.alphas_cumprod[i - 1])
        eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        for variance, var in [("beta", beta), ("beta_tilde", float(path.beta_tilde[i - 1]))]:
            expected = (x - beta / math.sqrt(1 - abar) * eps) / math.sqrt(1 - beta) + math.sqrt(var) * z
            torch.testing.assert_close(dl.samplers.ddpm_step(x, x0, st, variance, noise=z), expected)


def test_dpmpp_2m_lands_on_the_denoised_estimate_at_t0():
    mix, path = test_mixture(), dl.paths.VP()
    seen = []
    x = dl.sample(mix.denoiser(path), path, (10, 2), sampler="dpmpp_2m", steps=7, grid="log_snr", generator=gen(4),
                  dtype=torch.float64, callback=seen.append)
    assert seen[-1]["s"] == 0.0
    torch.testing.assert_close(x, seen[-1]["x0"])
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("path", [dl.paths.DiscreteVP.cosine(100), dl.paths.VP(), dl.paths.VE(), dl.paths.Linear()],
                         ids=["DiscreteVP", "VP", "VE", "Linear"])
def test_sde_dpm_solver_first_order_is_the_ddpm_step(path):
    """With d = x0_hat and eta = 1 the step is the DDPM step with beta-tilde, noise for noise; at eta = 0 it
    is the ODE step; and a step to t = 0 lands on x0_hat."""
    x, x0, z = (torch.randn(8, 3, dtype=torch.float64, generator=gen(i)) for i in range(3))
    for t, s in [(1.0, 0.8), (0.5, 0.2), (0.11, 0.01), (0.3, 0.0)]:
        st = dl.samplers.step_of(path, t, s)
        torch.testing.assert_close(dl.samplers.dpmpp_2m_step(x, x0, st, eta=1.0, noise=z),
                                   dl.samplers.ddpm_step(x, x0, st, "beta_tilde", noise=z))
        if math.isfinite(st.lambda_s - st.lambda_t):  # from alpha_t = 0 any eta > 0 forgets x_t entirely
            torch.testing.assert_close(dl.samplers.dpmpp_2m_step(x, x0, st, eta=1e-12, noise=torch.zeros_like(z)),
                                       dl.samplers.dpmpp_2m_step(x, x0, st))
    torch.testing.assert_close(dl.samplers.dpmpp_2m_step(x, x0, dl.samplers.step_of(path, 0.3, 0.0), eta=0.7), x0)
    with pytest.raises(ValueError, match="pass noise="):
        dl.samplers.dpmpp_2m_step(x, x0, dl.samplers.step_of(path, 0.5, 0.2), eta=1.0)


def test_sde_dpm_solver_at_eta_zero_is_dpmpp_2m():
    mix, path = test_mixture(), dl.paths.DiscreteVP.cosine(1000)
    ts = G.make_grid("karras", path, 12)
    x = torch.randn(32, 2, dtype=torch.float64, generator=gen(3))
    ode = dl.samplers.dpmpp_2m(mix.denoiser(path), path, x, ts)
    sde = dl.samplers.dpmpp_2m_sde(mix.denoiser(path), path, x, ts, eta=0.0, generator=gen(4))
    torch.testing.assert_close(sde, ode, rtol=0, atol=0)


def test_every_sampler_counts_its_network_evaluations():
    mix, path = test_mixture(), dl.paths.VP()
    expected = {"ddpm": 10, "ddim": 10, "euler_maruyama": 10, "pc": 20, "ode_euler": 10, "ode_heun": 19, "ode_rk4": 39,
                "dpmpp_2m": 10, "dpmpp_2m_sde": 10, "unipc": 10, "annealed_langevin": 10 * 3 + 1}
    for name, nfe in expected.items():
        opts = {"steps_per_level": 3} if name == "annealed_langevin" else {}
        calls = []
        den = lambda x, t: calls.append(1) or mix.denoiser(path)(x, t)  # noqa: E731
        _, info = dl.sample(den, path, (4, 2), sampler=name, steps=10, generator=gen(5), return_info=True, **opts)
        assert info.nfe == nfe == len(calls), name
    _, info = dl.sample(mix.denoiser(path), path, (4, 2), sampler="ode_rk45", generator=gen(5), return_info=True)
    assert info.nfe > 0


@pytest.mark.parametrize("sampler", list(dl.samplers.SAMPLERS))
def test_same_seed_same_samples(sampler):
    mix, path = test_mixture(), dl.paths.VP()
    runs = [dl.sample(mix.denoiser(path), path, (16, 2), sampler=sampler, steps=None if sampler == "ode_rk45" else 8,
                      generator=gen(6)) for _ in range(2)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_no_sampler_returns_nan_at_1000_steps_and_float32_is_as_accurate_as_float64():
    """In float32 (the users' default) no sampler returns NaN at 1000 steps, and every deterministic sampler lands
    within 1e-3 of its float64 run from the same start (measured: at most 5e-4 on data of scale 2)."""
    mix, path = test_mixture(), dl.paths.DiscreteVP.linear(1000)
    deterministic = {"ddim", "dpmpp_2m", "unipc", "ode_heun", "ode_rk4", "ode_euler"}
    for sampler in ["ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "ode_heun", "ode_rk4", "ode_euler", "euler_maruyama"]:
        for grid in ["trailing", "log_snr", "karras"]:
            x1 = path.prior_sample((64, 2), gen(7), dtype=torch.float64)
            x = dl.sample(mix.denoiser(path), path, x=x1.float(), sampler=sampler, steps=1000, grid=grid, generator=gen(7))
            assert x.dtype == torch.float32 and torch.isfinite(x).all(), (sampler, grid)
            if sampler in deterministic and grid != "karras":
                exact = dl.sample(mix.denoiser(path), path, x=x1, sampler=sampler, steps=1000, grid=grid)
                assert float((x.double() - exact).abs().max()) < 1e-3, (sampler, grid)
    for p in (dl.paths.Cosine(), dl.paths.VE(), dl.paths.Linear()):  # and at 10 steps on other paths
        for sampler in sorted(deterministic):
            x1 = p.prior_sample((64, 2), gen(8), dtype=torch.float64)
            exact = dl.sample(mix.denoiser(p), p, x=x1, sampler=sampler, steps=10, grid="karras")
            x = dl.sample(mix.denoiser(p), p, x=x1.float(), sampler=sampler, steps=10, grid="karras")
            assert float((x.double() - exact).abs().max()) < 1e-3, (p, sampler)


def test_langevin_with_a_fixed_score_samples_the_notes_two_gaussians():
    """The notes' demo: Langevin on the exact score of a 1-D two-Gaussian mixture, from a uniform start."""
    mix = dl.oracles.GaussianMixture([-1.5, 1.5], [0.8, 0.8], [0.3, 0.7])
    x = 8 * torch.rand(20000, 1, dtype=torch.float64, generator=gen(8)) - 4
    x = dl.samplers.langevin(mix.score, x, step_size=0.01, n_steps=2000, generator=gen(9))
    assert_matches_mixture(x, mix, z_max=6, p_min=1e-6)


# --- the exact diffusers cross-check -------------------------------------------------------------

def _trajectories(ours, theirs_scheduler, path, den, ts, steps, x):
    mine = []
    ours(den, path, x, ts, callback=lambda d: mine.append(d["x"]))
    theirs = []
    dl.interop.diffusers_sample(theirs_scheduler, den, path, x, steps, callback=lambda d: theirs.append(d["x"]))
    return torch.stack(mine), torch.stack(theirs)


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_follows_diffusers_ddim_scheduler(steps):
    from diffusers import DDIMScheduler

    path = dl.paths.DiscreteVP.linear(1000)
    mix = dl.oracles.GaussianMixture([[-0.5, 0.2], [0.6, -0.4]], [0.2, 0.3])
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    ts = torch.cat([(sched.timesteps.double() + 1) / 1000, torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(ts, G.leading(path, steps))  # diffusers' default spacing is difflab's 'leading'
    x = torch.randn(64, 2, dtype=torch.float64, generator=gen(10))
    mine, theirs = _trajectories(dl.samplers.ddim, sched, path, mix.denoiser(path), ts, steps, x)
    assert float((mine - theirs).abs().max()) < 1e-5


@pytest.mark.parametrize("steps, algorithm", [(10, "dpmsolver++"), (20, "dpmsolver++"), (50, "dpmsolver++"),
                                             (10, "sde-dpmsolver++"), (25, "sde-dpmsolver++")])
def test_dpmpp_2m_follows_diffusers_dpm_solver(steps, algorithm):
    """The ODE solver step by step; the SDE one too, with the same generator (the same noise draws)."""
    from diffusers import DPMSolverMultistepScheduler

    path = dl.paths.DiscreteVP.linear(1000)
    mix = dl.oracles.GaussianMixture([[-0.5, 0.2], [0.6, -0.4]], [0.2, 0.3])
    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", algorithm_type=algorithm,
                                        solver_order=2)
    sched.set_timesteps(steps)
    ts = torch.cat([(sched.timesteps.double() + 1) / 1000, torch.zeros(1, dtype=torch.float64)])
    sde = algorithm.startswith("sde")
    x = torch.randn(64, 2, dtype=torch.float32 if sde else torch.float64, generator=gen(11))  # diffusers' noise is float32
    ours = dl.samplers.dpmpp_2m_sde if sde else dl.samplers.dpmpp_2m
    mine, theirs = [], []
    ours(mix.denoiser(path), path, x, ts, generator=gen(13), callback=lambda d: mine.append(d["x"]))
    dl.interop.diffusers_sample(sched, mix.denoiser(path), path, x, steps, generator=gen(13),
                                callback=lambda d: theirs.append(d["x"]))
    assert float((torch.stack(mine) - torch.stack(theirs)).abs().max()) < 1e-4


@pytest.mark.parametrize("steps, order, variant, corrector", [
    (10, 2, "bh2", True), (20, 2, "bh2", True), (10, 3, "bh2", True), (50, 3, "bh1", True), (10, 2, "bh1", False),
    (7, 1, "bh2", True)])
def test_unipc_follows_diffusers_unipc(steps, order, variant, corrector):
    from diffusers import UniPCMultistepScheduler

    path = dl.paths.DiscreteVP.linear(1000)
    mix = dl.oracles.GaussianMixture([[-0.5, 0.2], [0.6, -0.4]], [0.2, 0.3])
    sched = UniPCMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
                                    solver_type=variant, timestep_spacing="trailing",
                                    disable_corrector=[] if corrector else list(range(steps)))
    sched.set_timesteps(steps)
    ts = G.trailing(path, steps)
    torch.testing.assert_close(ts[:-1], (sched.timesteps.double() + 1) / 1000)
    x = torch.randn(64, 2, dtype=torch.float64, generator=gen(12))
    unipc = lambda *a, **k: dl.samplers.unipc(*a, order=order, variant=variant, corrector=corrector, **k)  # noqa: E731
    mine, theirs = _trajectories(unipc, sched, path, mix.denoiser(path), ts, steps, x)
    if variant == "bh1":  # diffusers' bh1 multiplies B(h) = -inf by 0 on the final step to sigma = 0 (NaN)
        mine, theirs = mine[:-1], theirs[:-1]
    assert float((mine - theirs).abs().max()) < 1e-4
    if order > 1 or corrector:  # and it is not DDIM in disguise
        ddim, _ = _trajectories(dl.samplers.ddim, sched, path, mix.denoiser(path), ts, steps, x)
        assert float((mine[-1] - ddim[-1]).abs().max()) > 1e-3


@pytest.mark.parametrize("order, corrector, expected", [(1, False, 1), (1, True, 2), (2, False, 2), (2, True, 3),
                                                       (3, False, 3), (3, True, 4)])
def test_unipc_orders_on_the_gaussian_flow(order, corrector, expected):
    """Halving the step divides the error at t = 1/2 (against the exact Gaussian flow, on VP, where
    alpha(1) > 0) by 2^p for UniP-p and 2^(p+1) with the corrector (the paper's Theorems 3.1 and 3.3).
    Measured mid-way because the last steps are deliberately of lower order (lower_order_final)."""
    path = dl.paths.VP()
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    x1 = torch.randn(200, 2, dtype=torch.float64, generator=gen(2))
    errors = []
    for n in (20, 40, 80):
        seen = {}
        dl.samplers.unipc(gauss.denoiser(path), path, x1, G.uniform(path, n), order=order, corrector=corrector,
                          callback=lambda d: seen.setdefault(d["s"], d["x"]))
        errors.append(float((seen[0.5] - gauss.flow(x1, 1.0, 0.5, path)).abs().max()))
    rates = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(r - expected) < 0.3 for r in rates), f"errors {errors}, observed orders {rates}"


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 10, 50, 999])
def test_discrete_grids_are_diffusers_timesteps(spacing, steps):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
    sched.set_timesteps(steps)
    ours = G.make_grid(spacing, dl.paths.DiscreteVP.linear(1000), steps)
    torch.testing.assert_close(ours[:-1], (sched.timesteps.double() + 1) / 1000)
    assert float(ours[-1]) == 0.0


def test_continuous_grids():
    path = dl.paths.VP()
    k = G.karras(path, 10, rho=7.0)
    ratio = torch.exp(-0.5 * path.log_snr(k[:-1]))  # sigma/alpha along the grid
    s_max, s_min = float(ratio[0]), float(ratio[-1])
    ramp = torch.linspace(0, 1, 10, dtype=torch.float64)
    expected = (s_max ** (1 / 7) + ramp * (s_min ** (1 / 7) - s_max ** (1 / 7))) ** 7
    torch.testing.assert_close(ratio, expected, rtol=1e-9, atol=0)
    assert float(k[0]) == G.noise_end(path) and float(k[-2]) == pytest.approx(path.t_min) and float(k[-1]) == 0.0
    lam = path.log_snr(G.log_snr(path, 12)[:-1])
    torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((11,), float(lam[1] - lam[0]), dtype=torch.float64))
    u = G.uniform(path, 4)
    torch.testing.assert_close(u, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    # Linear reaches alpha = 0 at t = 1: the log-SNR grids still start exactly there
    assert float(G.karras(dl.paths.Linear(), 5)[0]) == 1.0


def test_log_snr_grids_start_where_the_prior_already_holds():
    """karras and log_snr start at log-SNR -2 ln 80 where a path falls below it with sigma already
    sigma(1) (cosine, VP); at t = 1 where sigma still grows (VE, Linear) or on an explicit t_max."""
    start = -2 * math.log(80.0)
    cases = [(dl.paths.DiscreteVP.cosine(1000), True), (dl.paths.Cosine(), True), (dl.paths.VP(), True),
             (dl.paths.DiscreteVP.linear(1000), True), (dl.paths.VE(sigma_max=1000.0), False), (dl.paths.Linear(), False),
             (dl.paths.VE(sigma_max=50.0), False)]
    for path, capped in cases:
        assert float(path.log_snr(torch.tensor(1.0, dtype=torch.float64))) < start or not capped
        for grid in (G.karras, G.log_snr):
            ts = grid(path, 10)
            if capped:
                assert float(path.log_snr(ts[0])) == pytest.approx(start, abs=1e-9), (path, grid)
                assert 1 - float(path.sigma(ts[0])) < 2e-4  # the prior N(0, I) is the marginal there
            else:
                assert float(ts[0]) == 1.0, (path, grid)
            assert float(grid(path, 10, t_max=1.0)[0]) == 1.0
    # from the prior, over the shortened grid of the cosine schedule, to the right distribution
    mix, path = test_mixture(), dl.paths.DiscreteVP.cosine(1000)
    x = dl.sample(mix.denoiser(path), path, (20000, 2), sampler="dpmpp_2m", steps=25, grid="karras", generator=gen(11),
                  dtype=torch.float64)
    assert_matches_mixture(x, mix)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sampler": "dpm++"}, ValueError, "unknown sampler 'dpm\\+\\+'; valid choices: ddpm, ddim"),
        ({"sampler": "ddim", "steps": 0}, ValueError, "steps must be an integer >= 1"),
        ({"sampler": "ddim", "steps": 10, "grid": "cosine"}, ValueError, "unknown grid 'cosine'"),
        ({"sampler": "ddim", "steps": 10, "etaa": 1.0}, ValueError, "unknown option for sampler 'ddim' 'etaa'.*Did you mean 'eta'"),
        ({"sampler": "ddim", "timesteps": [1.0, 1.2, 0.0]}, ValueError, r"\[0, 1\]"),
        ({"sampler": "ddim", "timesteps": [0.5, 0.7, 0.0]}, ValueError, "strictly decreasing"),
        ({"sampler": "ddim", "steps": 5, "timesteps": [1.0, 0.0]}, ValueError, "either steps= or timesteps="),
        ({"sampler": "ddim"}, ValueError, "needs steps="),
        ({"sampler": "ddim", "steps": 5, "x": torch.tensor([[float("nan"), 0.0]])}, ValueError, "NaN"),
        ({"sampler": "ddim", "steps": 5, "shape": (3, 2), "x": torch.zeros(4, 2)}, ValueError, "does not match"),
        ({"sampler": "ddpm", "steps": 5, "variance": "large"}, ValueError, "valid choices: beta_tilde, beta"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, error, message):
    mix, path = test_mixture(), dl.paths.VP()
    kwargs = dict(kwargs)
    shape = kwargs.pop("shape", None if "x" in kwargs else (3, 2))
    with pytest.raises(error, match=message):
        dl.sample(mix.denoiser(path), path, shape, **kwargs)


def test_discrete_grids_refuse_continuous_paths_and_too_many_steps():
    with pytest.raises(ValueError, match="discrete-time path"):
        G.trailing(dl.paths.VP(), 10)
    with pytest.raises(ValueError, match="at most T=100"):
        G.leading(dl.paths.DiscreteVP.linear(100), 101)


def test_singular_sde_start_is_explained():
    mix, path = test_mixture(), dl.paths.Linear()
    with pytest.raises(ValueError, match="singular at t=1"):
        dl.sample(mix.denoiser(path), path, (3, 2), sampler="euler_maruyama", steps=5)
    x = dl.sample(mix.denoiser(path), path, (3, 2), sampler="euler_maruyama", timesteps=G.uniform(path, 5, t_max=0.999))
    assert torch.isfinite(x).all()


def test_network_output_of_the_wrong_shape_is_explained():
    path = dl.paths.VP()
    den = dl.as_denoiser(lambda x, t: x[:, :1], path, "eps")
    with pytest.raises(ValueError, match="must return a prediction of the input's shape"):
        dl.sample(den, path, (3, 2), sampler="ddim", steps=3)


@pytest.mark.parametrize("budget", [1, 2, 5, 10, 33, 100])
def test_steps_for_nfe_spends_at_most_the_budget(budget):
    mix, path = test_mixture(), dl.paths.VP()
    for sampler in dl.samplers.SAMPLERS:
        if sampler == "ode_rk45":
            with pytest.raises(ValueError, match="adaptive"):
                dl.steps_for_nfe(sampler, budget)
            continue
        least = {"pc": 2, "annealed_langevin": 2, "ode_rk4": 3}.get(sampler, 1)  # the cheapest run possible
        if budget < least:  # a budget below it is refused, never exceeded
            with pytest.raises(ValueError, match=f"cost {least} network evaluations"):
                dl.steps_for_nfe(sampler, budget)
            continue
        _, info = dl.sample(mix.denoiser(path), path, (4, 2), sampler=sampler, generator=gen(12), return_info=True,
                            **dl.steps_for_nfe(sampler, budget))
        assert info.nfe <= budget, (sampler, info.nfe)
        if sampler == "ode_rk4":  # 4 evaluations per step
            assert info.nfe >= budget - 3, (sampler, info.nfe)
        elif sampler not in ("pc", "annealed_langevin"):
            assert info.nfe >= budget - 1, (sampler, info.nfe)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_difflab_ddim_drives_a_diffusers_unet_like_its_own_scheduler(prediction_type):
    """A small randomly initialised UNet2DModel: diffusers' own DDIM loop and difflab's ddim sampler
    through `interop.diffusers_denoiser` give the same trajectory, for each prediction type."""
    from diffusers import DDIMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, prediction_type=prediction_type, clip_sample=False)
    x_T = torch.randn(3, 1, 8, 8, generator=gen(30))
    sched.set_timesteps(10)
    x = x_T.clone()
    with torch.no_grad():
        for k in sched.timesteps:
            x = sched.step(unet(x, k).sample, k, x).prev_sample
    path = dl.interop.path_of_scheduler(sched)
    den = dl.interop.diffusers_denoiser(unet, path, prediction_type)
    ours = dl.sample(den, path, x=x_T, sampler="ddim", steps=10, grid="leading")
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prediction_type"):
        dl.interop.diffusers_denoiser(unet, path, "velocity")


def test_nfe_is_counted_where_the_network_is_called():
    """A denoiser that evaluates the network twice per call (guidance) reports twice the NFE, whether it makes
    two calls or one call on a doubled batch; a plain callable counts once per call."""
    mix, path = test_mixture(), dl.paths.VP()
    net = lambda x, t: torch.zeros_like(x)  # noqa: E731  an eps network
    den = dl.as_denoiser(net, path, "eps")

    def twice(x, t):  # two passes, as classifier-free guidance makes them
        return 0.5 * (den(x, t) + den(x, t))

    def doubled(x, t):  # the same two passes as one batch
        return den(torch.cat([x, x]), torch.cat([t, t])).chunk(2)[0]

    def plain_twice(x, t):  # an oracle called twice through `counted`
        inner = dl.denoisers.counted(mix.denoiser(path))
        return 0.5 * (inner(x, t) + inner(x, t))

    for fn, per_step in ((den, 1), (twice, 2), (doubled, 2), (mix.denoiser(path), 1), (plain_twice, 2)):
        for sampler, steps, expect in (("ddim", 7, 7), ("ode_heun", 5, 9), ("pc", 4, 8)):
            _, info = dl.sample(fn, path, (6, 2), sampler=sampler, steps=steps, generator=gen(0), return_info=True)
            assert info.nfe == per_step * expect, (fn, sampler, info.nfe)
    counter = dl.denoisers.CountingDenoiser(twice)
    counter(torch.zeros(3, 2), torch.full((3,), 0.5))
    assert counter.nfe == 2


@pytest.mark.parametrize("sampler", [s for s, fn in dl.samplers.SAMPLERS.items() if fn.about.batch_invariant])
def test_batched_samples_do_not_depend_on_the_batch_size(sampler):
    mix, path = test_mixture(), dl.paths.DiscreteVP.linear(100)
    kw = dict(sampler=sampler, steps=4, seed=3, dtype=torch.float64)
    whole = dl.sampling.sample_batched(mix.denoiser(path), path, 50, (2,), batch_size=50, **kw)
    for b in (1, 7, 16):
        torch.testing.assert_close(dl.sampling.sample_batched(mix.denoiser(path), path, 50, (2,), batch_size=b, **kw), whole,
                                   rtol=0, atol=0)
    assert not torch.equal(whole, dl.sampling.sample_batched(mix.denoiser(path), path, 50, (2,), batch_size=50,
                                                             **{**kw, "seed": 4}))
    # example i is the same whatever n: the first 20 of 50 are the 20 of n = 20
    torch.testing.assert_close(dl.sampling.sample_batched(mix.denoiser(path), path, 20, (2,), batch_size=8, **kw), whole[:20],
                               rtol=0, atol=0)


def test_a_list_of_generators_draws_each_row_from_its_own():
    gens = [gen(i) for i in range(4)]
    x = dl._random.randn((4, 3), generator=gens)
    for i in range(4):
        torch.testing.assert_close(x[i], torch.randn(3, generator=gen(i)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="one per example"):
        dl._random.randn((3, 3), generator=[gen(0)] * 4)


def test_grid_options_go_through_sample_and_are_checked():
    mix, path = test_mixture(), dl.paths.VP()
    g = lambda: gen(1)  # noqa: E731
    a = dl.sample(mix.denoiser(path), path, (5, 2), sampler="dpmpp_2m", steps=6, grid="karras", grid_options={"rho": 3.0},
                  generator=g())
    b = dl.sample(mix.denoiser(path), path, (5, 2), sampler="dpmpp_2m", timesteps=G.karras(path, 6, rho=3.0), generator=g())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown option of the 'karras' grid 'rh'"):
        dl.sample(mix.denoiser(path), path, (5, 2), sampler="ddim", steps=6, grid="karras", grid_options={"rh": 3.0})
    with pytest.raises(ValueError, match="rho must be a number > 0"):
        dl.sample(mix.denoiser(path), path, (5, 2), sampler="ddim", steps=6, grid="karras", grid_options={"rho": -1.0})


def test_every_sampler_states_what_it_is(monkeypatch):
    """NFE per grid, noise and options are stated beside each sampler, and they are what a run spends and takes."""
    import importlib

    mix, path = test_mixture(), dl.paths.VP()
    draws = []
    for name in ("ancestral", "dpm_solver", "langevin", "sde"):  # count the noise the samplers draw
        module = importlib.import_module(f"difflab.samplers.{name}")
        monkeypatch.setattr(module, "randn", lambda *a, _orig=module.randn, **k: draws.append(1) or _orig(*a, **k))
    for name, fn in dl.samplers.SAMPLERS.items():
        about = fn.about
        assert set(about.options) == set(dl.sampling.sampler_options(name))
        if about.adaptive:
            continue
        for steps in (1, 3, 8):
            opts = {"steps_per_level": 2} if name == "annealed_langevin" else {}
            calls = []
            den = lambda x, t: calls.append(1) or mix.denoiser(path)(x, t)  # noqa: E731
            draws.clear()
            dl.sample(den, path, x=path.prior_sample((4, 2), gen(2)), sampler=name, steps=steps, generator=gen(3), **opts)
            assert len(calls) == about.nfe(steps, opts), (name, steps)
            assert bool(draws) == about.draws_noise(opts) or steps == 1, (name, steps, len(draws))
    assert dl.samplers.SAMPLERS["ddim"].about.draws_noise({"eta": 0.3}) and not dl.samplers.SAMPLERS["ddim"].about.draws_noise()
