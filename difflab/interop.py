"""Driving diffusers' schedulers with a difflab denoiser (diffusers is an optional, test-only dependency).

A diffusers scheduler on a discrete schedule asks a model for its epsilon at (sample, timestep k).
difflab answers with the denoiser at the time t whose noise level is the scheduler's own for k:
the schedulers that interpolate (Euler, Heun) use sigma(k) = sqrt((1 - abar) / abar) interpolated
linearly in k, so t is found from that sigma's log-SNR; at integer k this is exactly t = (k + 1) / T.
Schedulers working on x / alpha (Euler, Heun) scale the model input back with `scale_model_input`.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import Tensor

from ._checks import append_dims
from .denoisers import CountingDenoiser

__all__ = ["diffusers_sample", "time_of_timestep"]


def time_of_timestep(path, k) -> Tensor:
    """The difflab time of a (possibly fractional) diffusers timestep k on a DiscreteVP path."""
    T = getattr(path, "T", None)
    if T is None:
        raise ValueError("diffusers timesteps belong to a discrete-time path (DiscreteVP)")
    abar = path.alphas_cumprod.numpy()
    sig = np.interp(float(k), np.arange(T), np.sqrt((1 - abar) / abar))
    return path.t_from_log_snr(torch.tensor(-2 * np.log(sig), dtype=torch.float64))


@torch.no_grad()
def diffusers_sample(scheduler, denoiser, path, x: Tensor, steps: int, *, generator: torch.Generator | None = None,
                     callback=None, return_nfe: bool = False):
    """Run a diffusers scheduler for `steps` steps from the prior draw `x` (unit variance), with
    `denoiser` as its epsilon model. Returns the final sample (and the NFE when asked)."""
    den = CountingDenoiser(denoiser)
    scheduler.set_timesteps(steps)
    sample = x * scheduler.init_noise_sigma
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for k in scheduler.timesteps:
        model_in = scheduler.scale_model_input(sample, k)
        t_k = float(time_of_timestep(path, float(k)))
        t = torch.full((x.shape[0],), t_k, dtype=x.dtype, device=x.device)
        a, s = (append_dims(f(t), x.ndim).to(x.dtype) for f in (path.alpha, path.sigma))
        x0 = den(model_in, t)
        eps = (model_in - a * x0) / s
        sample = scheduler.step(eps, k, sample, **extra).prev_sample
        if callback is not None:
            callback({"t": t_k, "x": sample})
    return (sample, den.nfe) if return_nfe else sample
