"""What every sampler shares: grid validation, per-time path coefficients, NFE counting, callbacks."""

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


def coefs(path, t: Tensor) -> tuple[float, float]:
    """(alpha(t), sigma(t)) as Python floats computed in float64: shared by the whole batch."""
    t = t.to(torch.float64)
    return float(path.alpha(t)), float(path.sigma(t))


def times_for(x: Tensor, t: Tensor) -> Tensor:
    """The (B,) time tensor handed to the denoiser."""
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def finish(x: Tensor, den: CountingDenoiser, ts: Tensor, return_info: bool):
    if return_info:
        return x, SampleInfo(nfe=den.nfe, steps=ts.numel() - 1, timesteps=ts)
    return x
