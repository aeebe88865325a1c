r"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), data-prediction multistep.

With lambda(t) = log(alpha_t / sigma_t) (half the log-SNR) and h = lambda_s - lambda_t > 0, the
exponential integrator of the probability-flow ODE in data prediction gives the step t -> s

    x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) d,
        = (sigma_s / sigma_t) x_t + (alpha_s - sigma_s alpha_t / sigma_t) d,     (no logarithms: safe at sigma_s = 0)

with d = x0_hat on the first step (DDIM) and, afterwards, the second-order multistep combination

    d = (1 + 1 / (2 r)) x0_hat_t - 1 / (2 r) x0_hat_prev,    r = h_prev / h.

On a final step to t = 0, h is infinite and r = 0, so the second-order term has no limit; the
step falls back to first order there, which lands exactly on x0_hat (Lu et al.'s `lower_order_final`,
k-diffusion's `sample_dpmpp_2m`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import Step, finish, start, steps_of, times_for


def dpmpp_2m_step(x: Tensor, d: Tensor, st: Step) -> Tensor:
    """The exponential-integrator step t -> s with data estimate d."""
    return (st.sigma_s / st.sigma_t) * x + (st.alpha_s - st.sigma_s * st.alpha_t / st.sigma_t) * d


@torch.no_grad()
def dpmpp_2m(denoiser, path, x: Tensor, ts, *, callback=None, return_info: bool = False, generator=None, **cond):
    """DPM-Solver++(2M) over the grid `ts` (one NFE per step)."""
    den, ts = start(denoiser, x, ts)
    x0_prev, h_prev = None, None
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        h = st.lambda_s - st.lambda_t
        if x0_prev is None or st.s == 0 or not math.isfinite(h) or not math.isfinite(h_prev):
            d = x0  # first order: first step, final step to t = 0, or a step from alpha = 0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        x = dpmpp_2m_step(x, d, st)
        x0_prev, h_prev = x0, h
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)
