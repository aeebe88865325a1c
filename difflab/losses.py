r"""Denoising regression losses (per example), their weightings, and time samplers.

For x0 from the data, t from a time sampler and z ~ N(0, I), x_t = alpha x0 + sigma z and a
network predicting kind k (`targets.KINDS`) is regressed on the true value of k:

    loss(x0) = w_k(t) * mean_or_sum (net(x_t, t) - k(x0, z, t))^2.

At fixed x_t the error of every kind is a multiple c_k(t) of the eps error (`targets.error_scale`),
so each weighting is defined once, on the eps scale, as w(t) in w(t) ||eps - eps_hat||^2, and
w_k = w / c_k^2. Weightings (Kingma & Gao 2023 collect them in this form):

- `simple`: 1 on the network's own MSE (Ho et al.'s L_simple for eps; plain MSE for x0, v, ...).
- `elbo`: the variational bound. Discrete paths: T * lambda_i with the notes' (Ho et al. eq. 12)
  lambda_i = beta_i^2 / (2 sigma_i^2 (1 - beta_i) (1 - abar_i)), sigma_i^2 = beta_i or beta-tilde_i;
  continuous paths: -1/2 d log_snr/dt (Kingma et al. 2021, eq. 17). With `reduction="sum"`,
  E_t[loss] is then the diffusion part of -ELBO in nats (for the uniform time samplers below).
- `sigma2`: lambda(t) = sigma^2 on the score error (denoising score matching; Song & Ermon's
  lambda = sigma^2): sigma^2 ||s - s_hat||^2 = ||eps - eps_hat||^2.
- `likelihood`: g(t)^2 on the score error (Song et al. 2021b): w = g^2 / sigma^2.
- `min_snr`: min(SNR, gamma) on the x0 error (Hang et al. 2023): w = min(SNR, gamma) / SNR.

Explicit (Hyvarinen 2005) score matching fits a score model s(x) to data without noise, by
integration by parts of the Fisher divergence (up to the constant E||grad log p||^2):

    J(s) = E_x[ ||s(x)||^2 + 2 tr(grad_x s(x)) ] = E||s - grad log p||^2 - E||grad log p||^2,

with the exact trace (small dimensions), Hutchinson's estimate ||s||^2 + 2 v^T (grad s) v, or sliced
score matching (Song et al. 2019) (v^T s)^2 + 2 v^T (grad s) v, for probes v with E[v v^T] = I
(`explicit_score_matching`).

Time samplers draw t for a batch: `UniformDiscrete(T)` (t = i / T, i ~ U{1..T}), `Uniform(t_min, t_max)`
(continuous with a cut-off, Song et al.'s eps = 1e-3) and `LogNormal(path, mean, std)` (Karras et al.
2022: ln(sigma/alpha) ~ N(mean, std^2)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import targets
from ._checks import batch_times, check_finite, check_same_shape, check_times, choose
from ._random import rand, randn
from .divergence import exact_divergence, hutchinson_divergence, probes as draw_probes

__all__ = ["WEIGHTINGS", "check_weighting", "eps_weight", "loss_weight", "diffusion_loss", "UniformDiscrete", "Uniform", "LogNormal",
           "default_time_sampler", "explicit_score_matching", "ESM_METHODS", "flow_matching_loss"]

WEIGHTINGS = ("simple", "elbo", "sigma2", "likelihood", "min_snr")
ESM_METHODS = ("exact", "hutchinson", "sliced")


def _discrete_index(path, t: Tensor) -> Tensor:
    i = torch.round(t.to(torch.float64) * path.T).long()
    if bool(((i < 1) | (i > path.T)).any()) or not torch.allclose(i.to(torch.float64) / path.T, t.to(torch.float64), atol=1e-6):
        raise ValueError(f"on a discrete path with T={path.T} the ELBO weight needs t on the grid i/T, i = 1..T")
    return i - 1


def check_weighting(weighting: str, path, time_sampler=None) -> str:
    """Refuse a weighting that `path` (with times from `time_sampler`) cannot honour, saying what would.

    `elbo` on a discrete-time path is the bound of the DDPM chain: it needs the chain's betas (a
    `DiscreteVP`; NCSN's noise ladder has none) and times on the path's grid i / T (uniform steps,
    not a log-normal time sampler)."""
    choose(weighting, WEIGHTINGS, "loss weighting")
    if weighting == "elbo" and path.discrete:
        if not hasattr(path, "betas"):
            raise ValueError(f"the elbo weighting is the DDPM chain's bound and needs its betas; {path!r} has none "
                             "(NCSN's noise ladder): use sigma2 (Song & Ermon's weighting), or a ddpm path")
        if time_sampler is not None and not isinstance(time_sampler, UniformDiscrete):
            raise ValueError(f"the elbo weighting on a discrete path needs times on its grid i/T; the "
                             f"{type(time_sampler).__name__} time sampler draws others: use the default time sampler")
    return weighting


def eps_weight(weighting: str, path, t: Tensor, *, gamma: float = 5.0, variance: str = "beta") -> Tensor:
    """w(t) such that the weighted loss is w(t) ||eps - eps_hat||^2 (see the module docstring)."""
    check_weighting(weighting, path)
    t = torch.as_tensor(t)
    if weighting in ("simple", "sigma2"):
        return torch.ones_like(t, dtype=torch.float64)
    t64 = t.to(torch.float64)
    if weighting == "elbo":
        if not path.discrete:
            return -0.5 * path.d_log_snr(t64)
        choose(variance, ("beta", "beta_tilde"), "ELBO variance")
        i = _discrete_index(path, t64)
        beta, abar = path.betas[i], path.alphas_cumprod[i]
        var = beta if variance == "beta" else path.beta_tilde[i]
        return path.T * beta**2 / (2 * var * (1 - beta) * (1 - abar))
    if weighting == "likelihood":
        return path.drift_diffusion(t64)[1] / path.sigma(t64) ** 2
    snr = torch.exp(path.log_snr(t64))  # min_snr
    return snr.clamp(max=gamma) / snr


def loss_weight(weighting: str | Callable, prediction: str, path, t: Tensor, **kwargs) -> Tensor:
    """The weight on the MSE of `prediction` (float64, one per time)."""
    t = torch.as_tensor(t)
    if callable(weighting):
        w = torch.as_tensor(weighting(path, t), dtype=torch.float64)
    elif choose(weighting, WEIGHTINGS, "loss weighting") == "simple":
        return torch.ones_like(t, dtype=torch.float64)
    else:
        w = eps_weight(weighting, path, t, **kwargs)
    return w / targets.error_scale(prediction, path, t.to(torch.float64)) ** 2


class UniformDiscrete:
    """t = i / T with i uniform on {1, ..., T} (Algorithm 25.1)."""

    def __init__(self, T: int):
        if int(T) != T or T < 1:
            raise ValueError(f"T must be a positive integer, got {T!r}")
        self.T = int(T)

    def __call__(self, n: int, *, generator=None, device=None) -> Tensor:
        i = torch.randint(1, self.T + 1, (n,), generator=generator,
                          device=generator.device if generator is not None else device)
        return (i.to(torch.get_default_dtype()) / self.T).to(device)


class Uniform:
    """t uniform on [t_min, t_max] (the cut-off t_min avoids sigma = 0, where the score target is infinite)."""

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0):
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1; got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def __call__(self, n: int, *, generator=None, device=None) -> Tensor:
        return self.t_min + (self.t_max - self.t_min) * rand((n,), generator=generator, device=device)


class LogNormal:
    """ln(sigma/alpha) ~ N(mean, std^2) (Karras et al. 2022's P_mean, P_std), mapped to t on `path`."""

    def __init__(self, path, mean: float = -1.2, std: float = 1.2):
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.path, self.mean, self.std = path, float(mean), float(std)

    def __call__(self, n: int, *, generator=None, device=None) -> Tensor:
        log_ratio = self.mean + self.std * randn((n,), generator=generator, dtype=torch.float64)
        t = self.path.t_from_log_snr(-2 * log_ratio).clamp(self.path.t_min, 1.0)
        return t.to(device=device, dtype=torch.get_default_dtype())


def default_time_sampler(path):
    """UniformDiscrete(T) on a discrete path, Uniform(t_min) otherwise."""
    return UniformDiscrete(path.T) if path.discrete else Uniform(path.t_min)


def diffusion_loss(net, path, x0: Tensor, *, prediction: str = "eps", weighting: str | Callable = "simple",
                   t: Tensor | None = None, noise: Tensor | None = None, generator: torch.Generator | None = None,
                   time_sampler=None, reduction: str = "mean", cond: dict | None = None, **weight_kwargs) -> Tensor:
    """Per-example weighted regression loss of `net(x_t, t, **cond)` predicting `prediction`.

    `t`, `noise` and `generator` can be given to pin the randomness; `reduction` is "mean" (over
    each example's dimensions; the usual training loss) or "sum" (nats, for the ELBO).
    """
    choose(prediction, targets.KINDS, "prediction kind")
    choose(reduction, ("mean", "sum"), "reduction")
    check_finite(x0, "x0 (the data batch)")
    if t is None:
        t = (time_sampler or default_time_sampler(path))(x0.shape[0], generator=generator, device=x0.device)
    t = check_times(batch_times(t, x0))
    if noise is None:
        noise = randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    check_same_shape(noise, x0, "noise", "x0")
    x_t = path.perturb(x0, t, noise)
    target = targets.from_x0_eps(prediction, x0, noise, path, t)
    pred = net(x_t, t, **(cond or {}))
    check_same_shape(pred, x0, "the network's output", "x0")
    sq = (pred - target).pow(2).flatten(1)
    err = sq.mean(1) if reduction == "mean" else sq.sum(1)
    return loss_weight(weighting, prediction, path, t, **weight_kwargs).to(err) * err


def explicit_score_matching(score: Callable[[Tensor], Tensor], x: Tensor, *, method: str = "exact", probes: int = 1,
                            probe: str = "rademacher", generator: torch.Generator | None = None) -> Tensor:
    """Per-example Hyvarinen loss ||s(x)||^2 + 2 tr(grad s(x)) of a score model `score(x)` on data `x`
    (see the module doc), differentiable in the model's parameters.

    method: "exact" trace (one backward pass per dimension), "hutchinson" (exact ||s||^2, traced by
    `probes` probes of kind `probe`) or "sliced" ((v^T s)^2 in place of ||s||^2). Its minimiser is the
    data score; it differs from E||s - grad log p||^2 by a constant.
    """
    choose(method, ESM_METHODS, "score matching method")
    check_finite(x, "x (the data batch)")
    if method == "exact":
        s, tr = exact_divergence(score, x, create_graph=True)
        return s.flatten(1).pow(2).sum(1) + 2 * tr
    v = draw_probes(probe, probes, x, generator)
    s, quad = hutchinson_divergence(score, x, v, create_graph=True)
    if method == "hutchinson":
        return s.flatten(1).pow(2).sum(1) + 2 * quad.mean(0)
    return (v * s).flatten(2).sum(2).pow(2).mean(0) + 2 * quad.mean(0)


def flow_matching_loss(net, path, x0: Tensor, z: Tensor | None = None, *, coupling: str = "independent",
                       labels: Tensor | None = None, source_labels: Tensor | None = None, reg: float = 0.05,
                       prediction: str = "velocity", t: Tensor | None = None, generator: torch.Generator | None = None,
                       cond: dict | None = None, **kwargs) -> Tensor:
    r"""Conditional flow matching (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2023), per example.

    On `path` (typically `paths.Linear()`: alpha = 1 - t, sigma = t) the pairs (x0, z) are coupled by
    `coupling` (`difflab.couplings`: independent = I-CFM, exact = OT-CFM, sinkhorn; class-wise with
    `labels`), and the network regresses the conditional velocity d x_t / dt = alpha' x0 + sigma' z
    (= z - x0 on Linear) at x_t = alpha x0 + sigma z. `z` is a batch from the source: N(0, I) when
    None, else any data set or distribution's samples (e.g. eight Gaussians -> moons).

    Time runs as everywhere in difflab: t = 0 is the data, t = 1 the source. The flow-matching papers
    put the source at 0 and the data at 1: their time is 1 - t, their velocity the negative of ours.
    """
    from .couplings import COUPLINGS, couple

    choose(coupling, COUPLINGS, "coupling")
    if z is None:
        z = randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    check_same_shape(z, x0, "z (the source batch)", "x0")
    if coupling != "independent" or labels is not None:  # independent and unlabelled: the pairs are as drawn
        z = z[couple(x0, z, coupling, labels=labels, source_labels=source_labels, reg=reg, generator=generator)]
    return diffusion_loss(net, path, x0, prediction=prediction, noise=z, t=t, generator=generator, cond=cond, **kwargs)
