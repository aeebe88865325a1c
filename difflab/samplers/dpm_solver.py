r"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction multistep, and its
stochastic variant SDE-DPM-Solver++(2M) (same paper, Section 5 and Appendix; k-diffusion's
`sample_dpmpp_2m_sde`, diffusers' `algorithm_type="sde-dpmsolver++"`).

With lambda(t) = log(alpha_t / sigma_t) (half the log-SNR) and h = lambda_s - lambda_t > 0, the
exponential integrator in data prediction gives the step t -> s

    x_s = (sigma_s / sigma_t) e^{-eta h} x_t + alpha_s (1 - e^{-(1 + eta) h}) d + sigma_s sqrt(1 - e^{-2 eta h}) z.

At eta = 0 it solves the probability-flow ODE and, since alpha_s e^{-h} = sigma_s alpha_t / sigma_t,

    x_s = (sigma_s / sigma_t) x_t + (alpha_s - sigma_s alpha_t / sigma_t) d     (no logarithms: safe at sigma_s = 0).

At eta = 1 it solves the reverse SDE; with d = x0_hat the step is then exactly the DDPM step with
beta-tilde, because e^{-2h} = (alpha_t sigma_s)^2 / (alpha_s sigma_t)^2 = 1 - Var[q(x_s | x_t, x0)] / sigma_s^2.
d = x0_hat on the first step and, afterwards, the second-order multistep combination

    d = (1 + 1 / (2 r)) x0_hat_t - 1 / (2 r) x0_hat_prev,    r = h_prev / h

("midpoint" in k-diffusion and diffusers for the SDE variant). On a final step to t = 0, h is
infinite and r = 0, so the second-order term has no limit; the step falls back to first order there,
which lands exactly on x0_hat (Lu et al.'s `lower_order_final`, k-diffusion's `sample_dpmpp_2m`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._random import randn
from ._common import Step, describe, finish, start, steps_of, times_for


def dpmpp_2m_step(x: Tensor, d: Tensor, st: Step, eta: float = 0.0, noise: Tensor | None = None) -> Tensor:
    """The exponential-integrator step t -> s with data estimate d (noise needed when eta > 0 and s > 0)."""
    if eta == 0:
        return (st.sigma_s / st.sigma_t) * x + (st.alpha_s - st.sigma_s * st.alpha_t / st.sigma_t) * d
    h = st.lambda_s - st.lambda_t  # +inf on a step to t = 0 or from alpha = 0: exp and expm1 take the limits
    x_s = (st.sigma_s / st.sigma_t * math.exp(-eta * h)) * x - st.alpha_s * math.expm1(-(1 + eta) * h) * d
    std = st.sigma_s * math.sqrt(-math.expm1(-2 * eta * h))
    if std > 0 and noise is None:
        raise ValueError(f"a step with eta={eta} to s={st.s:.6g} > 0 adds noise: pass noise= (standard normal, x's shape)")
    return x_s + std * noise if std > 0 else x_s


def _multistep(den, path, x: Tensor, ts: Tensor, eta: float, generator, callback, cond) -> Tensor:
    x0_prev, h_prev = None, None
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        h = st.lambda_s - st.lambda_t
        if x0_prev is None or st.s == 0 or not math.isfinite(h) or not math.isfinite(h_prev):
            d = x0  # first order: first step, final step to t = 0, or a step from alpha = 0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if eta > 0 and st.s > 0 else None
        x = dpmpp_2m_step(x, d, st, eta, noise)
        x0_prev, h_prev = x0, h
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return x


@describe()
@torch.no_grad()
def dpmpp_2m(denoiser, path, x: Tensor, ts, *, callback=None, return_info: bool = False, generator=None, **cond):
    """DPM-Solver++(2M) on the probability-flow ODE over the grid `ts` (one NFE per step)."""
    den, ts = start(denoiser, x, ts)
    return finish(_multistep(den, path, x, ts, 0.0, generator, callback, cond), den, ts, return_info)


@describe(stochastic=lambda o: o["eta"] > 0)
@torch.no_grad()
def dpmpp_2m_sde(denoiser, path, x: Tensor, ts, *, eta: float = 1.0, generator: torch.Generator | None = None,
                 callback=None, return_info: bool = False, **cond):
    """SDE-DPM-Solver++(2M) over the grid `ts` (one NFE per step); eta = 1 is the reverse SDE, eta = 0 the ODE."""
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    den, ts = start(denoiser, x, ts)
    return finish(_multistep(den, path, x, ts, float(eta), generator, callback, cond), den, ts, return_info)
