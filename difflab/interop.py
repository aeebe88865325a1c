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

from .denoisers import CountingDenoiser

__all__ = ["diffusers_sample", "time_of_timestep"]


def time_of_timestep(path, k) -> Tensor:
    """The difflab times of (possibly fractional) diffusers timesteps k on a DiscreteVP path."""
    T = getattr(path, "T", None)
    if T is None:
        raise ValueError("diffusers timesteps belong to a discrete-time path (DiscreteVP)")
    abar = path.alphas_cumprod.numpy()
    sig = np.interp(np.asarray(k, dtype=np.float64), np.arange(T), np.sqrt((1 - abar) / abar))
    return path.t_from_log_snr(torch.as_tensor(-2 * np.log(sig), dtype=torch.float64))


@torch.no_grad()
def diffusers_sample(scheduler, denoiser, path, x: Tensor, steps: int, *, generator: torch.Generator | None = None,
                     callback=None, return_nfe: bool = False):
    """Run a diffusers scheduler for `steps` steps from the prior draw `x` (unit variance), with
    `denoiser` as its epsilon model. Returns the final sample (and the NFE when asked)."""
    den = CountingDenoiser(denoiser)
    scheduler.set_timesteps(steps)
    sample = x * scheduler.init_noise_sigma
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    times = time_of_timestep(path, scheduler.timesteps.double().numpy())  # all at once, before the loop
    coefs = [(float(a), float(s)) for a, s in zip(path.alpha(times), path.sigma(times))]
    for i, k in enumerate(scheduler.timesteps):
        model_in = scheduler.scale_model_input(sample, k)
        a, s = coefs[i]
        x0 = den(model_in, torch.full((x.shape[0],), float(times[i]), dtype=x.dtype, device=x.device))
        eps = (model_in - a * x0) / s
        sample = scheduler.step(eps, k, sample, **extra).prev_sample
        if callback is not None:
            callback({"t": float(times[i]), "x": sample})
    return (sample, den.nfe) if return_nfe else sample
