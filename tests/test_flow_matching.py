"""Flow matching: couplings reach the loss, a learned flow approaches the closed-form Gaussian flow,
and a flow's likelihood with a non-Gaussian-standard source matches the closed form."""

import json
import math

import pytest

import torch

import difflab as dl
from difflab.couplings import couple, pair_cost
from difflab.losses import flow_matching_loss

D64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class DiagGaussianFlow:
    """Data N(mu, diag c), source N(m, diag s), independent: on Linear every x_t is Gaussian with mean
    (1-t) mu + t m and variance (1-t)^2 c + t^2 s per coordinate, and the marginal velocity is linear."""

    def __init__(self, mu, c, m, s):
        self.mu, self.c, self.m, self.s = (torch.as_tensor(v, dtype=D64) for v in (mu, c, m, s))

    def moments(self, t):
        t = torch.as_tensor(t, dtype=D64).reshape(-1, 1)
        return (1 - t) * self.mu + t * self.m, ((1 - t) ** 2 * self.c + t**2 * self.s).sqrt()

    def velocity(self, x, t, **_):  # d/dt of the monotone map x_t = m_t + std_t (z-score)
        t = t.reshape(-1, 1).to(D64)
        mean, std = self.moments(t)
        d_mean = self.m - self.mu
        d_std = (-(1 - t) * self.c + t * self.s) / std
        return d_mean + d_std * (x - mean) / std

    def flow(self, x, t, s):
        (m_t, sd_t), (m_s, sd_s) = self.moments(t), self.moments(s)
        return m_s + sd_s * (x - m_t) / sd_t

    def source(self):
        return torch.distributions.Independent(torch.distributions.Normal(self.m, self.s.sqrt()), 1)

    def data(self):
        return torch.distributions.Independent(torch.distributions.Normal(self.mu, self.c.sqrt()), 1)


def test_flow_likelihood_with_a_gaussian_source_matches_the_closed_form():
    f = DiagGaussianFlow([1.0, -2.0], [0.5, 0.2], [0.5, 0.3], [2.0, 0.7])
    path = dl.paths.Linear()
    den = dl.as_denoiser(f.velocity, path, "velocity")
    x = f.data().sample((200,))
    logp, info = dl.log_likelihood(den, path, x, prior=f.source().log_prob, t_start=1e-6, return_info=True)
    assert (logp - f.data().log_prob(x)).abs().max() < 1e-3
    assert (info.latent - f.flow(x, 0.0, 1.0)).abs().max() < 1e-3


def test_couplings_reach_the_loss():
    x0 = torch.randn(64, 2, generator=gen(1)) + 3
    z = torch.randn(64, 2, generator=gen(2))
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731  a network predicting 0: the loss is E||z_j - x0||^2 / D
    for method in ("independent", "exact"):
        loss = flow_matching_loss(zero, dl.paths.Linear(), x0, z, coupling=method, generator=gen(3))
        j = couple(x0, z, method)
        torch.testing.assert_close(loss, pair_cost(x0, z)[torch.arange(64), j].float() / 2)


def test_learned_flow_approaches_the_closed_form_gaussian_flow():
    f = DiagGaussianFlow([2.0, -1.0], [0.3, 0.6], [0.0, 0.0], [1.0, 1.0])
    path = dl.paths.Linear()
    torch.manual_seed(0)
    net = dl.nets.MLP(2, 64, 2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = gen(4)
    for _ in range(1500):
        x0 = f.data().sample((256,)).float()
        loss = flow_matching_loss(net, path, x0, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    den = dl.as_denoiser(net.eval(), path, "velocity")
    z = torch.randn(500, 2, generator=gen(5))
    x = dl.sample(den, path, x=z, sampler="ode_heun", steps=50)
    exact = f.flow(z.double(), 1.0, 0.0)
    err = float((x.double() - exact).norm(dim=1).mean())
    assert err < 0.1, err  # the flow map itself, point by point, not only the distribution
    with torch.no_grad():
        untrained = float((dl.sample(dl.as_denoiser(dl.nets.MLP(2, 64, 2), path, "velocity"), path, x=z,
                                     sampler="ode_heun", steps=50).double() - exact).norm(dim=1).mean())
    assert untrained > 5 * err


class StraightGaussianFlow:
    """Source N(0, I) and data N(mu, s^2 I) paired by their OT map x0 = mu + s z: on Linear every path
    x_t = (1 - t)(mu + s z) + t z is a straight line at constant speed, so Euler is exact at any step
    count and the path energy is E||z - x0||^2 = |mu|^2 + d (1 - s)^2 = W2^2 exactly."""

    def __init__(self, mu, s):
        self.mu, self.s = torch.as_tensor(mu, dtype=D64), float(s)

    def velocity(self, x, t, **_):  # v = z - x0 with z recovered from x_t = (1 - t) mu + ((1 - t) s + t) z
        t = t.reshape(-1, 1).to(D64)
        z = (x - (1 - t) * self.mu) / ((1 - t) * self.s + t)
        return z - (self.mu + self.s * z)

    def w2_squared(self):
        return float(self.mu @ self.mu) + len(self.mu) * (1 - self.s) ** 2


def _trajectory(den, path, z, steps):
    states, times = [z], [1.0]

    def keep(d):
        states.append(d["x"])
        times.append(d["s"])

    x = dl.sample(den, path, x=z, sampler="ode_euler", steps=steps, callback=keep)
    return x, states, times


def test_path_energy_of_the_ot_flow_is_w2_squared_and_of_the_independent_flow_more():
    path = dl.paths.Linear()
    straight = StraightGaussianFlow([1.5, -0.5], 0.5)
    z = torch.randn(4000, 2, dtype=D64, generator=gen(6))
    x, states, times = _trajectory(dl.as_denoiser(straight.velocity, path, "velocity"), path, z, 7)
    torch.testing.assert_close(x, straight.mu + straight.s * z)  # Euler is exact on straight paths
    energy = dl.metrics.path_energy(states, times)
    assert energy == pytest.approx(float(((z - x) ** 2).sum(1).mean()), rel=1e-10)
    assert dl.metrics.normalized_path_energy(energy, straight.w2_squared() ** 0.5) < 0.05  # sampling error only
    # independent coupling between the same Gaussians: x_t = (1 - t) mu + sqrt((1 - t)^2 s^2 + t^2) zeta,
    # a curved schedule along each line, energy |mu|^2 + d int (d/dt sd_t)^2 dt = 2.5 + 2 * 0.465 > W2^2 = 3
    curved = DiagGaussianFlow([1.5, -0.5], [0.25, 0.25], [0.0, 0.0], [1.0, 1.0])
    x, states, times = _trajectory(dl.as_denoiser(curved.velocity, path, "velocity"), path, z, 400)
    tt = torch.linspace(0, 1, 200_001, dtype=D64)
    d_sd = (-(1 - tt) * 0.25 + tt) / ((1 - tt) ** 2 * 0.25 + tt**2).sqrt()
    exact = 2.5 + 2 * float(torch.trapezoid(d_sd**2, tt))
    # the sample's own energy (zeta = z): the straight-line part is the same on every path, the radial part scales with |z|^2
    assert dl.metrics.path_energy(states, times) == pytest.approx(2.5 + (exact - 2.5) * float((z**2).sum(1).mean()) / 2,
                                                                  rel=5e-3)
    assert exact > 1.1 * straight.w2_squared()


def _flow_run(tmp_path, coupling, steps=600):
    from difflab.config import load_config

    cfg = load_config("flow2d", [f"train.steps={steps}", "train.checkpoint_every=10000", "data.toy_size=8000",
                                 f'diffusion.coupling="{coupling}"', "model.width=64"])
    dl.training.train(cfg, tmp_path / coupling, progress=False)
    return tmp_path / coupling


def test_flow_preset_ot_coupling_straightens_the_learned_flow(tmp_path):
    """The flow2d preset end to end (eight Gaussians -> moons): the config's source and coupling reach
    training; with exact OT one Euler step already lands near the data and the paths are nearly
    straight, with independent pairs it does not."""
    ref = dl.data.toy("cfm_moons", 1000, gen(7))
    out = {}
    for coupling in ("exact", "independent"):
        run = _flow_run(tmp_path, coupling)
        den, path, cfg = dl.load(run)
        z = dl.runs.source_sample(cfg, 1000, gen(8))
        one = dl.sample(den, path, x=z, sampler="ode_euler", steps=1)
        x, states, times = _trajectory(den, path, z, 50)
        w2_source = dl.metrics.wasserstein2(z, ref)
        out[coupling] = (dl.metrics.wasserstein2(one, ref), dl.metrics.wasserstein2(x, ref),
                         dl.metrics.normalized_path_energy(dl.metrics.path_energy(states, times), w2_source))
    (ot_1, ot_50, ot_npe), (i_1, i_50, i_npe) = out["exact"], out["independent"]
    assert ot_1 < 0.5 * i_1, out  # one step: straight paths pay off
    assert ot_50 < 1.0 and i_50 < 1.5, out  # many steps: both reach the moons (W2 of the source itself is ~6)
    assert ot_npe < 0.5 * i_npe, out


def test_flow_likelihood_needs_a_source_density(tmp_path):
    from difflab.evaluate import run_nll

    run = _flow_run(tmp_path, "exact", steps=20)
    res = run_nll(run, n=50, batch_size=50, progress=False)  # cfm_8gaussians has a density
    assert res["nll_nats"] > 0 and "kl_gap_nats" not in res  # cfm_moons has none: no true entropy to compare
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["source"] = "cfm_moons"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no density in closed form"):
        run_nll(run, n=10, progress=False)


def test_linear_path_with_sigma_min_has_lipmans_conditional_velocity():
    """Lipman et al. (2023, eq. 21) in their time s = 1 - t with data x1: u_s(x | x1) = (x1 - (1 - sigma_min) x) /
    (1 - (1 - sigma_min) s). Ours is dx/dt = -u (time runs the other way)."""
    sm = 0.1
    path = dl.paths.Linear(sm)
    x0, z = torch.randn(50, 3, dtype=D64, generator=gen(9)), torch.randn(50, 3, dtype=D64, generator=gen(10))
    t = torch.rand(50, dtype=D64, generator=gen(11))
    x = path.perturb(x0, t, z)
    target = dl.targets.from_x0_eps("velocity", x0, z, path, t)
    s = (1 - t)[:, None]
    torch.testing.assert_close(target, -(x0 - (1 - sm) * x) / (1 - (1 - sm) * s))
    torch.testing.assert_close(path.perturb(x0, 0.0, z), x0 + sm * z)  # the tube around the data
