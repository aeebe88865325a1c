r"""Likelihoods: the probability-flow ODE's exact log-density, and the DDPM evidence lower bound.

**Probability flow** (Song et al. 2021, sec. 4.3 and app. D.2; Chen et al. 2018 for the
instantaneous change of variables). Along a solution of dx/dt = v(x, t) the density obeys
d log p_t(x_t) / dt = -div v(x_t, t), so for x = x_{t0}

    log p_{t0}(x) = log p_1(x_1) + int_{t0}^{1} div v(x_t, t) dt,

with p_1 replaced by the prior N(0, sigma(1)^2 I). On an affine path with denoiser D and
eps_hat = (x - alpha D) / sigma (= -sigma grad log p_t),

    v = (alpha'/alpha) x + (sigma' - alpha' sigma / alpha) eps_hat = (sigma'/sigma) x + (alpha' - sigma' alpha / sigma) D,

and only the divergence of eps_hat (used while alpha >= sigma) or of D (after) needs autograd: exactly (one backward pass per dimension) or by Hutchinson's
estimator with K probes held fixed along the trajectory (FFJORD); the K integrals give an estimate
and its standard error. The integral runs from `t_start` (1e-5 by default for continuous paths, the
first grid time 1/T for discrete ones, where x is read as x_{t0}) with torchdiffeq's adaptive
solver.

**Bits per dimension** of 8-bit images scaled to [low, high] (Theis et al. 2016; Ho et al. 2020):
uniform dequantization y = low + (high - low)(k + u)/256, u ~ U[0, 1)^D, gives
-log P(k) <= E_u[-log p(y)] - D log((high - low)/256), so bits/dim = that / (D ln 2)
(+7 bits for [-1, 1]).

**DDPM ELBO** (Ho et al. 2020, eq. 5) on a grid 1 = t_N > ... > t_1 > t_0 = 0:

    log p(x0) >= -KL(q(x_1 | x0) || N(0, sigma(1)^2)) - sum_{i=2}^{N} E_q KL(q(x_{t_{i-1}} | x_{t_i}, x0) || p(x_{t_{i-1}} | x_{t_i}))
                 + E_q log p(x0 | x_{t_1}),

where p(x_s | x_t) = N(coef_x0 D(x_t, t) + coef_xt x_t, var): the Gaussian posterior with x0 replaced
by D, and var the posterior's beta-tilde or the transition's beta. The decoder is Gaussian, or
for 8-bit data the discretized Gaussian of Ho et al. (bins of width 2/255 on [-1, 1], open at the ends).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import append_dims, check_finite, choose
from ._random import rand, randn
from .denoisers import CountingDenoiser
from .divergence import exact_divergence, hutchinson_divergence, probes as draw_probes
from .samplers._common import check_grid, steps_of, times_for
from .samplers.ode import _ADAPTIVE

__all__ = ["log_likelihood", "LikelihoodInfo", "elbo", "ElboInfo", "dequantize", "bits_per_dim",
           "discretized_gaussian_log_prob"]

METHODS = ("exact", "hutchinson")


@dataclass
class LikelihoodInfo:
    """What a probability-flow likelihood computation gave and cost."""

    nfe: int  # denoiser evaluations made by the ODE solver
    stderr: Tensor | None  # Hutchinson with K > 1 probes: standard error of each example's estimate
    prior_log_prob: Tensor  # log p_1(x_1): the path's N(0, sigma(1)^2 I) or the given prior
    delta: Tensor  # int div v dt (the change of log-density along the flow)
    latent: Tensor  # x_1, the flow's image of x
    t_start: float


def _t_start(path, t_start) -> float:
    if t_start is None:
        t_start = path.t_min if path.discrete else 1e-5
    t_start = float(t_start)
    if not 0 < t_start < 1:
        raise ValueError(f"t_start must lie in (0, 1) (where the flow starts from the data); got {t_start}")
    return t_start


def log_likelihood(denoiser, path, x: Tensor, *, method: str = "exact", probes: int = 1, probe: str = "rademacher",
                   rtol: float = 1e-5, atol: float = 1e-5, solver: str = "dopri5", t_start: float | None = None,
                   generator: torch.Generator | None = None, prior=None, return_info: bool = False, **cond):
    """log p_{t_start}(x) in nats per example, shape (B,), by the probability-flow ODE (see the module doc).

    `prior`: the log-density of the t = 1 end, a function x -> (B,) (e.g. the `log_prob` of a flow's
    non-Gaussian source, summed over dimensions); by default the path's N(0, sigma(1)^2 I).

    method: "exact" divergence or "hutchinson" with `probes` probe vectors of kind `probe`
    ("rademacher" or "gaussian") drawn from `generator`. rtol, atol, solver: torchdiffeq's. With
    `return_info=True` returns (log_prob, LikelihoodInfo) with the NFE and, for Hutchinson with
    probes > 1, each example's standard error.
    """
    from torchdiffeq import odeint

    check_finite(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have shape (batch, ...) with at least one data dimension; got {tuple(x.shape)}")
    choose(method, METHODS, "likelihood method")
    t0 = _t_start(path, t_start)
    den = CountingDenoiser(denoiser)
    dims = x[0].numel()
    eps = draw_probes(probe, probes, x, generator) if method == "hutchinson" else None

    def field(t: Tensor, state):
        y, _ = state
        tf = float(t)
        tt = torch.tensor(tf, dtype=torch.float64)
        a, s, da, ds = (float(f(tt)) for f in (path.alpha, path.sigma, path.d_alpha, path.d_sigma))
        # v = c_x x + c_g g(x) with g whichever of eps_hat and D has the small Jacobian: eps_hat
        # (-sigma grad^2 log p_t) while alpha >= sigma, D (alpha Cov[x0 | x_t] / sigma^2) after. Hutchinson's
        # noise then stays small; the other choice adds a huge identity term and cancels it.
        if a >= s:
            c_x, c_g = da / a, ds - da * s / a
            fn = lambda z: (z - a * den(z, times_for(z, tf), **cond)) / s  # noqa: E731
        else:
            c_x, c_g = ds / s, da - ds * a / s
            fn = lambda z: den(z, times_for(z, tf), **cond)  # noqa: E731
        if eps is None:
            g, div_g = exact_divergence(fn, y)
            div_g = div_g[None]
        else:
            g, div_g = hutchinson_divergence(fn, y, eps)
        return c_x * y + c_g * g, c_x * dims + c_g * div_g

    delta0 = torch.zeros(1 if eps is None else eps.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    span = torch.tensor([t0, 1.0], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
    # steps end exactly at t = 1 (no stage beyond it), and the first step is given so that the initial-step
    # heuristic never probes outside [t_start, 1]
    options = {"step_t": span[1:], "first_step": 1e-3 * (1 - t0)} if solver in _ADAPTIVE else None
    with torch.no_grad():
        xs, deltas = odeint(field, (x, delta0), span, rtol=rtol, atol=atol, method=solver, options=options)
    latent, delta = xs[-1], deltas[-1]
    prior = path.prior_log_prob(latent) if prior is None else prior(latent)
    logp = prior + delta.mean(0)
    if not return_info:
        return logp
    stderr = delta.std(0) / math.sqrt(delta.shape[0]) if delta.shape[0] > 1 else None
    return logp, LikelihoodInfo(nfe=den.nfe, stderr=stderr, prior_log_prob=prior, delta=delta.mean(0),
                                latent=latent, t_start=t0)


# -- 8-bit data ---------------------------------------------------------------------------------

def _levels(x: Tensor, value_range, bins: int) -> Tensor:
    low, high = value_range
    k = torch.round((x - low) / (high - low) * (bins - 1))
    if bool(((k < 0) | (k > bins - 1)).any()):
        raise ValueError(f"x must lie in the data range {tuple(value_range)}; got values in "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")
    return k


def dequantize(x: Tensor, generator: torch.Generator | None = None, *, value_range=(-1.0, 1.0), bins: int = 256
               ) -> Tensor:
    """Uniform dequantization of data on the `bins`-level grid of `value_range` (k -> k/(bins-1), as stored):
    y = low + (high - low) (k + u) / bins with u ~ U[0, 1)."""
    check_finite(x, "x")
    low, high = value_range
    k = _levels(x, value_range, bins)
    u = rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return low + (high - low) * (k + u) / bins


def bits_per_dim(nll: Tensor, dims: int, *, value_range=(-1.0, 1.0), bins: int | None = 256) -> Tensor:
    """Convert a continuous NLL (nats per example) of dequantized data into discrete bits per dimension.

    `bins=None`: no dequantization offset (plain nats -> bits per dimension of continuous data).
    """
    if bins is None:
        return nll / (dims * math.log(2))
    width = (value_range[1] - value_range[0]) / bins
    return (nll - dims * math.log(width)) / (dims * math.log(2))


# -- the DDPM ELBO ------------------------------------------------------------------------------

@dataclass
class ElboInfo:
    """The ELBO's terms in nats per example (prior and diffusion are KLs, decoder a log-likelihood)."""

    prior_kl: Tensor
    diffusion_kl: Tensor  # the sum over steps (estimated from `terms` of them when subsampled)
    decoder_log_prob: Tensor
    nfe: int
    steps: int


def _normal_kl(mean1, var1, mean2, var2) -> Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element (variances broadcast)."""
    return 0.5 * (var1 / var2 - 1 - torch.log(var1 / var2) + (mean1 - mean2) ** 2 / var2)


def _std_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, std, *, bins: int = 256) -> Tensor:
    """log P(x) per element for x on the `bins`-level grid of [-1, 1], under N(mean, std^2) integrated over
    x's bin (half-width 1/(bins - 1)), the end bins stretched to -inf and +inf (Ho et al. 2020, eq. 13)."""
    half = 1.0 / (bins - 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    upper = _std_normal_cdf((x - mean + half) / std)
    lower = _std_normal_cdf((x - mean - half) / std)
    first, last = x < -1 + half, x > 1 - half
    log_cdf_up = torch.log(upper.clamp_min(1e-12))
    log_one_minus_low = torch.log((1 - lower).clamp_min(1e-12))
    mid = torch.log((upper - lower).clamp_min(1e-12))
    return torch.where(first, log_cdf_up, torch.where(last, log_one_minus_low, mid))


def _elbo_grid(path, steps, timesteps) -> Tensor:
    if timesteps is not None:
        ts = check_grid(timesteps)
    elif steps is not None:
        ts = torch.linspace(1, 0, int(steps) + 1, dtype=torch.float64)
    elif path.discrete:
        ts = torch.arange(path.T, -1, -1, dtype=torch.float64) / path.T
    else:
        raise ValueError("a continuous path needs `steps=` or `timesteps=` to define the ELBO's chain")
    if float(ts[0]) != 1.0 or float(ts[-1]) != 0.0 or ts.numel() < 2:
        raise ValueError("the ELBO's grid must run from t = 1 to t = 0")
    if float(path.sigma(torch.tensor(0.0, dtype=torch.float64))) > 1e-6:
        raise ValueError(f"the ELBO needs a path with sigma(0) = 0 (x_0 is the data); {path!r} has not")
    return ts


def elbo(denoiser, path, x0: Tensor, *, steps: int | None = None, timesteps=None, variance: str = "beta_tilde",
         decoder: str = "discretized", terms: int | None = None, generator: torch.Generator | None = None,
         return_info: bool = False, **cond):
    """The DDPM evidence lower bound on log p(x0), nats per example (see the module doc).

    The chain is the path's own grid for a discrete-time path (t_i = i/T), else `steps` uniform steps
    or an explicit decreasing `timesteps` grid from 1 to 0. variance: "beta_tilde" (the posterior's; at
    the last step, where it is 0, the previous step's, as Ho et al.'s clipped log-variance) or "beta"
    (the transition's). decoder: "discretized" (8-bit data in [-1, 1]) or "gaussian" (continuous data).
    `terms`: estimate the sum of the N - 1 KL terms from `terms` steps drawn uniformly for each example
    (unbiased, one NFE each; the batch mean then averages over many steps) instead of all of them.
    """
    check_finite(x0, "x0")
    choose(variance, ("beta_tilde", "beta"), "ELBO variance")
    choose(decoder, ("discretized", "gaussian"), "ELBO decoder")
    if decoder == "discretized":
        _levels(x0, (-1.0, 1.0), 256)
    ts = _elbo_grid(path, steps, timesteps)
    table = steps_of(path, ts)  # step i: t = ts[i] -> s = ts[i + 1]; the last step (i = n - 1) ends at 0
    den = CountingDenoiser(denoiser)
    n = len(table)
    opts = {"dtype": x0.dtype, "device": x0.device}
    col = lambda name: torch.tensor([getattr(st, name) for st in table], **opts)  # noqa: E731
    t, alpha, sigma, c0, cx, post_var = (col(k) for k in ("t", "alpha_t", "sigma_t", "post_x0", "post_xt", "post_var"))
    if variance == "beta":
        var_p = col("trans_var")
    else:  # beta-tilde, and at the step to t = 0 (where it is 0) the previous step's
        var_p = post_var.clone()
        var_p[-1] = post_var[-2] if n > 1 else table[-1].trans_var
    sum_dims = lambda v: v.flatten(1).sum(1)  # noqa: E731
    per = lambda v, i: append_dims(v[i], x0.ndim)  # noqa: E731  per-example coefficient at steps i

    def reverse_mean(i: Tensor):
        """x_t ~ q(x_t | x0) at steps i, and the means of q(x_s | x_t, x0) and p(x_s | x_t)."""
        xt = per(alpha, i) * x0 + per(sigma, i) * randn(x0.shape, generator=generator, **opts)
        d = den(xt, t[i], **cond)
        return per(c0, i) * x0 + per(cx, i) * xt, per(c0, i) * d + per(cx, i) * xt

    # prior: KL(q(x_1 | x0) || N(0, sigma(1)^2 I))
    prior_kl = sum_dims(0.5 * (alpha[0] * x0) ** 2 / sigma[0] ** 2)
    B = x0.shape[0]
    with torch.no_grad():
        diffusion_kl = torch.zeros(B, **opts)
        if terms is None:  # every step but the last (the decoder's)
            draws = [torch.full((B,), i, dtype=torch.long, device=x0.device) for i in range(n - 1)]
        elif n > 1:
            if int(terms) != terms or terms < 1:
                raise ValueError(f"terms must be a positive integer (steps drawn per example), got {terms!r}")
            # each example draws its own steps, uniformly: an unbiased estimate of the sum
            draws = [torch.randint(0, n - 1, (B,), generator=generator).to(x0.device) for _ in range(int(terms))]
        else:
            draws = []
        for i in draws:
            mean_q, mean_p = reverse_mean(i)
            diffusion_kl += sum_dims(_normal_kl(mean_q, per(post_var, i), mean_p, per(var_p, i)))
        if terms is not None and draws:
            diffusion_kl *= (n - 1) / len(draws)
        last = torch.full((B,), n - 1, dtype=torch.long, device=x0.device)
        _, mean = reverse_mean(last)
        var = float(var_p[-1])
        if decoder == "discretized":
            dec = sum_dims(discretized_gaussian_log_prob(x0, mean, math.sqrt(var)))
        else:
            dec = sum_dims(-0.5 * ((x0 - mean) ** 2 / var + math.log(2 * math.pi * var)))
    value = dec - prior_kl - diffusion_kl
    if not return_info:
        return value
    return value, ElboInfo(prior_kl=prior_kl, diffusion_kl=diffusion_kl, decoder_log_prob=dec, nfe=den.nfe, steps=n)
