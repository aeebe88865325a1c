"""What every sampler shares: grid validation, the per-step coefficient table, NFE counting, callbacks.

All path coefficients a sampler needs are computed once per grid, vectorised in float64, and handed
to the step kernels as Python floats (`Step`), so the loop itself does no path arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_finite
from ..denoisers import CountingDenoiser


@dataclass
class SampleInfo:
    """What a sampling run cost: network evaluations (NFE), steps taken and the time grid used."""

    nfe: int
    steps: int
    timesteps: Tensor


@dataclass(frozen=True)
class Step:
    """Everything about one step t -> s (< t) of a path: alpha, sigma and their derivatives at both
    ends, the SDE (f, g^2) at t, half log-SNRs, and the posterior q(x_s | x_t, x0) and transition
    x_t | x_s variances."""

    t: float
    s: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    d_alpha_t: float
    d_sigma_t: float
    d_alpha_s: float
    d_sigma_s: float
    f_t: float
    g2_t: float
    lambda_t: float  # log(alpha_t / sigma_t)
    lambda_s: float
    post_x0: float
    post_xt: float
    post_var: float
    trans_var: float  # sigma_{t|s}^2


def steps_of(path, ts: Tensor) -> list[Step]:
    """The `Step` table of a grid, computed in one vectorised pass."""
    ts = ts.to(torch.float64)
    with torch.no_grad():
        a, s = path.alpha(ts), path.sigma(ts)
        da, ds = path.d_alpha(ts), path.d_sigma(ts)
        f, g2 = path.drift_diffusion(ts)
        lam = 0.5 * path.log_snr(ts)
        t_, s_ = ts[:-1], ts[1:]
        post_x0, post_xt, post_var = path.posterior(t_, s_)
        trans_var = path.transition(t_, s_)[1]
    cols = [v.tolist() for v in (a, s, da, ds, f, g2, lam)]
    pair = [v.tolist() for v in (post_x0, post_xt, post_var, trans_var)]
    a, s, da, ds, f, g2, lam = cols
    return [
        Step(ts[i].item(), ts[i + 1].item(), a[i], s[i], a[i + 1], s[i + 1], da[i], ds[i], da[i + 1], ds[i + 1],
             f[i], g2[i], lam[i], lam[i + 1], *(p[i] for p in pair))
        for i in range(ts.numel() - 1)
    ]


def step_of(path, t: float, s: float) -> Step:
    """The `Step` from t to s, for using one kernel alone."""
    return steps_of(path, torch.tensor([float(t), float(s)], dtype=torch.float64))[0]


def check_grid(ts) -> Tensor:
    """A grid is a strictly decreasing 1-D sequence of at least two times in [0, 1], as float64."""
    ts = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"a time grid needs at least 2 times (start and end) in a 1-D sequence; got shape {tuple(ts.shape)}")
    check_finite(ts, "timesteps")
    if bool(((ts < 0) | (ts > 1)).any()):
        raise ValueError(f"timesteps must lie in [0, 1] (0 = data, 1 = noise); got {ts.tolist()}")
    if bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("timesteps must be strictly decreasing (from noise towards data), with no repeats")
    return ts


def start(denoiser, x: Tensor, ts) -> tuple[CountingDenoiser, Tensor]:
    """Validate the inputs of a sampler and wrap the denoiser to count its evaluations."""
    check_finite(x, "x (the starting sample)")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a batch dimension; got shape {tuple(x.shape)}")
    return CountingDenoiser(denoiser), check_grid(ts)


def times_for(x: Tensor, t: float) -> Tensor:
    """The (B,) time tensor handed to the denoiser."""
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def finish(x: Tensor, den: CountingDenoiser, ts: Tensor, return_info: bool):
    if return_info:
        return x, SampleInfo(nfe=den.nfe, steps=ts.numel() - 1, timesteps=ts)
    return x
