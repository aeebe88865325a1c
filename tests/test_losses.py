"""Losses and weightings against their defining formulas: the ELBO's Gaussian KL terms, published
weightings, and the notes' denoising score-matching objective."""

import math

import pytest
import torch

import difflab as dl
from conftest import gen

L = dl.losses


def _kl_gauss(m1, v1, m2, v2):
    """KL(N(m1, v1 I) || N(m2, v2 I)) summed over the last dimension."""
    d = m1.shape[-1]
    return ((m1 - m2) ** 2).sum(-1) / (2 * v2) + 0.5 * d * (v1 / v2 - 1 - math.log(v1 / v2))


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_elbo_weight_is_the_kl_between_posterior_and_model(variance):
    """lambda_i ||eps - eps_hat||^2 = KL(q(x_{i-1}|x_i,x0) || p(x_{i-1}|x_i)) minus its eps-free part (notes, L_{t-1})."""
    T = 100
    path = dl.paths.DiscreteVP.linear(T, 1e-3, 0.05)
    g = gen(0)
    x0, eps, eps_hat = (torch.randn(6, 5, dtype=torch.float64, generator=g) for _ in range(3))
    for i in [2, 10, 57, 100]:
        t = torch.full((6,), i / T, dtype=torch.float64)
        x_t = path.perturb(x0, t, eps)
        beta, abar = float(path.betas[i - 1]), float(path.alphas_cumprod[i - 1])
        var_q = float(path.beta_tilde[i - 1])
        var_p = beta if variance == "beta" else var_q
        mu_q = float(path.posterior_mean_coef_x0[i - 1]) * x0 + float(path.posterior_mean_coef_xt[i - 1]) * x_t
        mu_p = (x_t - beta / math.sqrt(1 - abar) * eps_hat) / math.sqrt(1 - beta)  # Algorithm 25.2's mean
        kl = _kl_gauss(mu_q, var_q, mu_p, var_p) - _kl_gauss(mu_q, var_q, mu_q, var_p)
        w = L.eps_weight("elbo", path, t, variance=variance)
        torch.testing.assert_close(w / T * ((eps - eps_hat) ** 2).sum(-1), kl, rtol=1e-9, atol=1e-12)


def test_continuous_elbo_weight_is_the_limit_of_the_discrete_one():
    """T lambda_i of DDPM's linear schedule -> -1/2 dlogSNR/dt of its continuous VP limit (beta(t)/2sigma^2)."""
    T = 10000
    disc, cont = dl.paths.DiscreteVP.linear(T, 0.1 / T, 20.0 / T), dl.paths.VP(0.1, 20.0)
    t = torch.tensor([0.05, 0.3, 0.7, 1.0], dtype=torch.float64)
    w_c = L.eps_weight("elbo", cont, t)
    torch.testing.assert_close(w_c, cont.beta(t) / (2 * cont.sigma(t) ** 2))
    torch.testing.assert_close(L.eps_weight("elbo", disc, t), w_c, rtol=3 * 20.0 / T, atol=0)  # O(beta_i) apart


def test_published_weightings():
    path, gamma = dl.paths.VP(), 5.0
    t = torch.tensor([0.01, 0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    snr = torch.exp(path.log_snr(t))
    # min-SNR-gamma (Hang et al. 2023, eqs. 9-11): x0: min(snr, g); eps: min(snr, g)/snr; v: min(snr, g)/(snr + 1)
    torch.testing.assert_close(L.loss_weight("min_snr", "x0", path, t, gamma=gamma), snr.clamp(max=gamma))
    torch.testing.assert_close(L.loss_weight("min_snr", "eps", path, t, gamma=gamma), snr.clamp(max=gamma) / snr)
    torch.testing.assert_close(L.loss_weight("min_snr", "v", path, t, gamma=gamma), snr.clamp(max=gamma) / (snr + 1))
    # likelihood weighting (Song et al. 2021b): g(t)^2 on the score error
    torch.testing.assert_close(L.loss_weight("likelihood", "score", path, t), path.beta(t))
    # lambda = sigma^2 on the score error
    torch.testing.assert_close(L.loss_weight("sigma2", "score", path, t), path.sigma(t) ** 2)
    assert torch.equal(L.loss_weight("simple", "v", path, t), torch.ones(5, dtype=torch.float64))


def test_the_objective_caps_the_snr_at_its_gamma():
    """A min_snr objective's loss is the simple loss times min(SNR, gamma) / (SNR + 1) per example (v-prediction), for
    the gamma it was given, from the configuration too; gamma must be positive and finite."""
    path = dl.paths.Cosine()
    x = torch.randn(8, 1, 4, 4, generator=gen(0))
    zero = lambda x_t, t: torch.zeros_like(x_t)  # noqa: E731  the error is the target itself
    simple = dl.objectives.DiffusionObjective(path, prediction="v")(zero, {"x": x}, gen(5))
    t = dl.objectives.DiffusionObjective(path).time_sampler(8, generator=gen(5)).to(torch.float64)  # drawn first
    snr = torch.exp(path.log_snr(t))
    for gamma in (0.5, 5.0):
        capped = dl.objectives.DiffusionObjective(path, prediction="v", weighting="min_snr", snr_gamma=gamma)(zero, {"x": x}, gen(5))
        torch.testing.assert_close(capped, simple * (snr.clamp(max=gamma) / (snr + 1)).float())
    cfg = dl.config.load_config("fashion_mnist", ["diffusion.weighting=min_snr", "diffusion.snr_gamma=2"])
    assert cfg.diffusion.snr_gamma == 2
    assert dl.runs.KINDS["diffusion"].build(cfg, dl.data.digits("test"), None).snr_gamma == 2
    for bad in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="snr_gamma"):
            dl.config.load_config("fashion_mnist", [f"diffusion.snr_gamma={bad}"])
        with pytest.raises(ValueError, match="snr_gamma"):
            dl.objectives.DiffusionObjective(path, weighting="min_snr", snr_gamma=bad)


def test_denoising_score_matching_is_the_notes_objective():
    """sigma^2 weighting on a score network: lambda/sigma^2 ||sigma s + Z||^2 with lambda = sigma^2 (notes)."""
    path = dl.paths.VE()
    x0 = torch.randn(7, 3, dtype=torch.float64, generator=gen(1))
    t = torch.rand(7, dtype=torch.float64, generator=gen(2)) * 0.9 + 0.05
    z = torch.randn(7, 3, dtype=torch.float64, generator=gen(3))
    net = lambda x, t: torch.sin(x) * t[:, None]  # noqa: E731 - any score model
    loss = L.diffusion_loss(net, path, x0, prediction="score", weighting="sigma2", t=t, noise=z, reduction="sum")
    x_t = x0 + path.sigma(t)[:, None] * z
    expected = ((path.sigma(t)[:, None] * net(x_t, t) + z) ** 2).sum(1)
    torch.testing.assert_close(loss, expected)


def test_losses_of_all_kinds_agree_on_the_eps_scale():
    """With the same weighting, eps-, x0-, v-, score- and velocity-networks that make the same error
    in x0 get the same loss."""
    path = dl.paths.Cosine()
    x0 = torch.randn(9, 4, dtype=torch.float64, generator=gen(4))
    t = torch.rand(9, dtype=torch.float64, generator=gen(5)) * 0.9 + 0.05
    z = torch.randn(9, 4, dtype=torch.float64, generator=gen(6))
    x_t = path.perturb(x0, t, z)
    x0_hat = x0 + 0.1 * torch.randn(9, 4, dtype=torch.float64, generator=gen(7))
    losses = []
    for kind in dl.targets.KINDS:
        _, eps_hat = dl.targets.to_x0_eps("x0", x0_hat, x_t, path, t)
        pred = dl.targets.from_x0_eps(kind, x0_hat, eps_hat, path, t)
        net = lambda x, tt, pred=pred: pred  # noqa: E731
        losses.append(L.diffusion_loss(net, path, x0, prediction=kind, weighting="elbo", t=t, noise=z))
    for other in losses[1:]:
        torch.testing.assert_close(other, losses[0])


def test_randomness_is_injectable():
    path = dl.paths.DiscreteVP.linear(1000)
    x0 = torch.randn(16, 2)
    net = lambda x, t: x * 0.5  # noqa: E731
    a = L.diffusion_loss(net, path, x0, generator=gen(8))
    b = L.diffusion_loss(net, path, x0, generator=gen(8))
    assert torch.equal(a, b) and a.shape == (16,)
    t, z = torch.full((16,), 0.3), torch.randn(16, 2)
    manual = ((net(path.perturb(x0, t, z), t) - z) ** 2).mean(1)
    torch.testing.assert_close(L.diffusion_loss(net, path, x0, t=t, noise=z), manual)


def test_time_samplers():
    t = L.UniformDiscrete(10)(100_000, generator=gen(9))
    assert set((t * 10).round().int().tolist()) == set(range(1, 11))
    assert float(t.mean()) == pytest.approx(0.55, abs=0.005)
    u = L.Uniform(0.2, 0.6)(100_000, generator=gen(10))
    assert 0.2 <= float(u.min()) and float(u.max()) <= 0.6 and float(u.mean()) == pytest.approx(0.4, abs=0.005)
    path = dl.paths.VE(0.002, 80.0)
    tl = L.LogNormal(path, -1.2, 1.2)(100_000, generator=gen(11)).double()
    log_ratio = torch.log(path.sigma(tl) / path.alpha(tl))
    inside = (tl > path.t_min) & (tl < 1.0)  # away from the clamps
    assert float(log_ratio[inside].mean()) == pytest.approx(-1.2, abs=0.05)
    assert float(log_ratio.median()) == pytest.approx(-1.2, abs=0.03)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weighting": "snr"}, "unknown loss weighting 'snr'"),
        ({"prediction": "noise"}, "unknown prediction kind 'noise'"),
        ({"t": torch.full((4,), 1.5)}, r"\[0, 1\]"),
        ({"noise": torch.zeros(4, 3)}, "noise has shape"),
        ({"reduction": "max"}, "unknown reduction"),
    ],
)
def test_bad_loss_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.diffusion_loss(lambda x, t: x, dl.paths.VP(), torch.zeros(4, 2), **kwargs)


def test_nan_data_and_bad_network_output_are_explained():
    with pytest.raises(ValueError, match="x0 .*NaN"):
        L.diffusion_loss(lambda x, t: x, dl.paths.VP(), torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="network's output has shape"):
        L.diffusion_loss(lambda x, t: x[:, :1], dl.paths.VP(), torch.zeros(4, 2))


# -- explicit score matching -----------------------------------------------------------------------

def _linear_score(A, m):
    return lambda x: -(x - m) @ A.T


def test_explicit_score_matching_equals_the_fisher_divergence_up_to_a_constant():
    """For Gaussian data N(mu, C) and linear scores s(x) = -A (x - m), in closed form:
    J(s) = tr(A (C + dd^T) A^T) - 2 tr A with d = mu - m, and J(s) - J(s*) = E||s - s*||^2."""
    from difflab.losses import explicit_score_matching

    D64 = torch.float64
    mu = torch.tensor([0.5, -1.0], dtype=D64)
    C = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=D64)
    x = mu + torch.randn(20000, 2, generator=torch.Generator().manual_seed(0), dtype=D64) @ torch.linalg.cholesky(C).T
    A = torch.tensor([[0.8, 0.1], [-0.3, 1.5]], dtype=D64)
    m = torch.tensor([0.2, 0.1], dtype=D64)
    d = mu - m
    closed = torch.trace(A @ (C + torch.outer(d, d)) @ A.T) - 2 * torch.trace(A)
    loss = explicit_score_matching(_linear_score(A, m), x).detach()
    assert abs(float(loss.mean() - closed)) < 4 * float(loss.std()) / len(x) ** 0.5
    P = torch.linalg.inv(C)  # the true score is -P (x - mu)
    fisher = ((_linear_score(A, m)(x) - _linear_score(P, mu)(x)) ** 2).sum(1)
    gap = loss - explicit_score_matching(_linear_score(P, mu), x).detach()
    torch.testing.assert_close(gap.mean(), fisher.mean(), rtol=0.02, atol=0.0)


def test_hutchinson_and_sliced_score_matching_are_unbiased():
    from difflab.losses import explicit_score_matching

    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    score = lambda v: torch.tanh(v @ torch.tensor([[0.3, -1.2, 0.5], [0.7, 0.1, -0.4], [-0.2, 0.9, 0.6]],  # noqa: E731
                                                   dtype=v.dtype)) * v.sum(1, keepdim=True) - v
    exact = explicit_score_matching(score, x).detach()
    for method in ("hutchinson", "sliced"):
        est = torch.stack([explicit_score_matching(score, x, method=method, probes=500, probe="gaussian",
                                                   generator=torch.Generator().manual_seed(s)).detach() for s in range(20)])
        se = est.std(0) / len(est) ** 0.5
        assert bool(((est.mean(0) - exact).abs() < 5 * se + 1e-9).all()), method


def test_explicit_score_matching_trains_a_score_model():
    """Gradients reach the parameters: a linear score model fitted on Gaussian data recovers -C^{-1}(x - mu)."""
    from difflab.losses import explicit_score_matching

    g = torch.Generator().manual_seed(2)
    C = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
    mu = torch.tensor([1.0, -0.5])
    lin = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    for _ in range(400):
        x = mu + torch.randn(256, 2, generator=g) @ torch.linalg.cholesky(C).T
        loss = explicit_score_matching(lin, x, method="sliced", generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    P = torch.linalg.inv(C)
    torch.testing.assert_close(lin.weight.detach(), -P, atol=0.25, rtol=0.1)
    torch.testing.assert_close(lin.bias.detach(), P @ mu, atol=0.25, rtol=0.1)
