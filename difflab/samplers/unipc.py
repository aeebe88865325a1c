r"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models", Algorithms 1-3), data prediction, B(h) variants bh1 and bh2.

In the half log-SNR lambda = log(alpha / sigma), a step t -> s has h = lambda_s - lambda_t > 0. With
x0_hat values m_0 (at t) and m_k at earlier grid times (lambda_k), r_k = (lambda_k - lambda_t) / h < 0
and D_k = (m_k - m_0) / r_k, the predictor UniP-p is

    x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) m_0 - alpha_s B(h) sum_{k<p} rho_k D_k,

with B(h) = -h (bh1) or e^{-h} - 1 (bh2), and rho solving the first p - 1 rows of R rho = g with
R_{ik} = r_k^{i-1} and g_i = i! psi_i / B(h), where psi_1 = (e^{-h} - 1) / (-h) - 1 and
psi_{i+1} = psi_i / (-h) - 1 / (i+1)! (the phi-function recursion of the paper's Algorithm 1). For
p = 2 the paper takes rho = 1/2.

The corrector UniC-p reuses the network's value m_new at the freshly predicted x_s (evaluated anyway
for the next step, so it costs no NFE) as one more point with r = 1:

    x_s^c = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) m_0
            - alpha_s B(h) (sum_{k<p} rho_k D_k + rho_p (m_new - m_0)),

with rho solving the full system (rho = 1/2 for p = 1). The corrected x_s feeds the next predictor,
whose network value was taken at the uncorrected x_s: that is the method. The order rises by one per
step from 1 (multistep warm-up) and falls to the number of steps left at the end (diffusers'
`lower_order_final`), so the last step, to t = 0 where h is infinite, is first order and lands on
x0_hat; it is never corrected (that would need one more evaluation). History points at alpha = 0
(lambda = -inf, e.g. t = 1 on a Linear path) carry no information about the derivative and are left
out, lowering the order there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import Step, describe, finish, start, steps_of, times_for
from .dpm_solver import dpmpp_2m_step

VARIANTS = ("bh1", "bh2")


def unipc_coefficients(h: float, order: int, variant: str = "bh2") -> tuple[float, float, Tensor]:
    """(e^{-h} - 1, B(h), g) for a step of half log-SNR length h, with g the right-hand side of R rho = g."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {VARIANTS}")
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else h_phi_1
    g, psi, fact = [], h_phi_1 / hh - 1, 1
    for i in range(1, order + 1):
        g.append(psi * fact / b_h)
        fact *= i + 1
        psi = psi / hh - 1 / fact
    return h_phi_1, b_h, torch.tensor(g, dtype=torch.float64)


def _vandermonde(rks: list[float], order: int) -> Tensor:
    r = torch.tensor(rks, dtype=torch.float64)
    return torch.stack([r ** i for i in range(order)])


def unipc_predict(x: Tensor, m0: Tensor, prev: list[tuple[float, Tensor]], st: Step, order: int, variant: str = "bh2") -> Tensor:
    """UniP-`order` for the step t -> s; `prev` holds (lambda_k, x0_hat_k) of earlier times, newest first."""
    h = st.lambda_s - st.lambda_t
    x_s = (st.sigma_s / st.sigma_t) * x
    if not math.isfinite(h):  # a step to t = 0 or from alpha = 0: first order (DDIM) is all there is
        return dpmpp_2m_step(x, m0, st)
    rks = [(lam - st.lambda_t) / h for lam, _ in prev[:order - 1]]
    h_phi_1, b_h, g = unipc_coefficients(h, order, variant)
    x_s = x_s - st.alpha_s * h_phi_1 * m0
    if order > 1:
        rho = [0.5] if order == 2 else torch.linalg.solve(_vandermonde(rks, order - 1), g[:-1]).tolist()
        x_s = x_s - st.alpha_s * b_h * sum(p * (m - m0) / r for p, r, (_, m) in zip(rho, rks, prev))
    return x_s


def unipc_correct(x: Tensor, m0: Tensor, prev: list[tuple[float, Tensor]], m_new: Tensor, st: Step, order: int,
                  variant: str = "bh2") -> Tensor:
    """UniC-`order` for the step t -> s just taken from x (at t), with m_new the network's x0_hat at s."""
    h = st.lambda_s - st.lambda_t
    rks = [(lam - st.lambda_t) / h for lam, _ in prev[:order - 1]]
    h_phi_1, b_h, g = unipc_coefficients(h, order, variant)
    rho = [0.5] if order == 1 else torch.linalg.solve(_vandermonde(rks + [1.0], order), g).tolist()
    res = rho[-1] * (m_new - m0)
    for p, r, (_, m) in zip(rho[:-1], rks, prev):
        res = res + p * (m - m0) / r
    return (st.sigma_s / st.sigma_t) * x - st.alpha_s * h_phi_1 * m0 - st.alpha_s * b_h * res


@describe()
@torch.no_grad()
def unipc(denoiser, path, x: Tensor, ts, *, order: int = 2, variant: str = "bh2", corrector: bool = True,
          callback=None, return_info: bool = False, generator=None, **cond):
    """UniPC-`order` over the grid `ts` (one NFE per step; `corrector=False` gives UniP alone)."""
    if isinstance(order, bool) or order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3; got {order!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {VARIANTS}")
    den, ts = start(denoiser, x, ts)
    steps = steps_of(path, ts)
    hist: list[tuple[float, Tensor]] = []  # (lambda, x0_hat) at the times visited, newest first, finite lambda only
    x_last, last = None, None  # the previous step's start, its Step and order, for the corrector
    for i, st in enumerate(steps):
        x0 = den(x, times_for(x, st.t), **cond)
        if corrector and last is not None and math.isfinite(last[0].lambda_s - last[0].lambda_t):
            x = unipc_correct(x_last, hist[0][1], hist[1:], x0, *last, variant)
        if math.isfinite(st.lambda_t):
            hist.insert(0, (st.lambda_t, x0))
        else:
            hist.clear()  # nothing before alpha = 0 can enter a derivative estimate
        k = max(1, min(order, len(hist), len(steps) - i))
        x_last, last = x, (st, k)
        x = unipc_predict(x, x0, hist[1:], st, k, variant)
        del hist[order:]
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)
