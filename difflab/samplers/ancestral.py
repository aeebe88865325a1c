r"""Ancestral samplers: DDPM (Ho et al. 2020), DDIM (Song, Meng & Ermon 2021) and multistep consistency sampling
(Song et al. 2023).

Both step from time t to an earlier time s of the grid using the denoiser's x0_hat = D(x_t, t)
and eps_hat = (x_t - alpha_t x0_hat) / sigma_t, on any affine path and any grid.

DDPM (the notes' Algorithm 25.2): x_s ~ N(mu, sigma_step^2 I) with mu the posterior mean of
q(x_s | x_t, x0 = x0_hat) (see `paths`); for one step of the discrete chain this is

    mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(1 - beta_t),

and sigma_step^2 is either beta-tilde (the posterior variance, `variance="beta_tilde"`) or beta
(the one-step forward variance sigma_{t|s}^2, `variance="beta"`). As in Ho et al.'s Algorithm 2
no noise is added on the final step to t = 0.

DDIM (eq. 12 of Song et al.): with c^2 = eta^2 Var[q(x_s | x_t, x0)],

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,

deterministic at eta = 0 and, at eta = 1, the DDPM step with beta-tilde (same law).

Consistency sampling takes a consistency function (`distillation.ConsistencyDenoiser`: x_t -> the start of its
trajectory, a sample) and at each step noises its output afresh to the next time: x_s = alpha_s f(x_t, t) + sigma_s z.
With E[x0 | x_t] in its place it would collapse to means: it is the few-step sampler of consistency models only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import choose
from .._random import randn
from ..targets import eps_of
from ._common import Step, describe, finish, start, steps_of, times_for


def ddim_step(x: Tensor, x0: Tensor, st: Step, eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """One DDIM step t -> s given x0_hat (noise needed when eta > 0)."""
    eps = eps_of(x, x0, st.alpha_t, st.sigma_t)  # eps_hat
    c2 = eta**2 * st.post_var  # c^2 = eta^2 Var[q(x_s | x_t, x0)]
    x_s = st.alpha_s * x0 + math.sqrt(max(st.sigma_s**2 - c2, 0.0)) * eps
    return x_s + math.sqrt(c2) * noise if c2 > 0 else x_s


def ddpm_step(x: Tensor, x0: Tensor, st: Step, variance: str = "beta_tilde", noise: Tensor | None = None) -> Tensor:
    """One ancestral step t -> s: the posterior mean given x0_hat plus noise (none when s = 0)."""
    mean = st.post_x0 * x0 + st.post_xt * x
    if st.s == 0:
        return mean
    var = st.post_var if variance == "beta_tilde" else st.trans_var
    return mean + math.sqrt(var) * noise


@describe(stochastic=True)
@torch.no_grad()
def ddpm(denoiser, path, x: Tensor, ts, *, variance: str = "beta_tilde", generator: torch.Generator | None = None,
         callback=None, return_info: bool = False, **cond):
    """Ancestral sampling (Algorithm 25.2) over the grid `ts`; sigma^2 = beta-tilde or beta."""
    choose(variance, ("beta_tilde", "beta"), "DDPM variance")
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)  # x0_hat = E[x0 | x_t]
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if st.s > 0 else None
        x = ddpm_step(x, x0, st, variance, noise)  # x_s ~ N(posterior mean, sigma_step^2)
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


@describe(stochastic=lambda o: o["eta"] > 0)
@torch.no_grad()
def ddim(denoiser, path, x: Tensor, ts, *, eta: float = 0.0, generator: torch.Generator | None = None,
         callback=None, return_info: bool = False, **cond):
    """DDIM over the grid `ts` (eta = 0: deterministic; eta = 1: DDPM with beta-tilde)."""
    if not 0 <= eta <= 1:
        raise ValueError(f"DDIM's eta lies in [0, 1] (0: deterministic, 1: DDPM's posterior variance), got {eta}")
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta > 0 else None
        x = ddim_step(x, x0, st, eta, noise)
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


@describe(stochastic=True)
@torch.no_grad()
def consistency(denoiser, path, x: Tensor, ts, *, generator: torch.Generator | None = None, callback=None,
                return_info: bool = False, **cond):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) over the grid `ts`: at each time the denoiser (a
    consistency function: a sample, not a mean) gives x0, then fresh noise takes it to the next time,
    x_s = alpha_s x0 + sigma_s z (none on the final step to t = 0). One step is t = 1 -> 0."""
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        if st.s > 0:  # a new point of the next trajectory, at s
            x = st.alpha_s * x0 + st.sigma_s * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        else:
            x = x0
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)
