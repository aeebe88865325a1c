"""Flow matching: couplings reach the loss, a learned flow approaches the closed-form Gaussian flow,
and a flow's likelihood with a non-Gaussian-standard source matches the closed form."""

import math

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
