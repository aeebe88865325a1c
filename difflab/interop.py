"""difflab and diffusers both ways (diffusers is an optional dependency, imported only when used).

`diffusers_denoiser` makes a diffusers model (a `UNet2DModel` or anything called as
`model(x, timestep, class_labels=...)` returning `.sample`) a difflab denoiser, so every difflab
sampler drives it: its epsilon / sample / v prediction at diffusers timestep k = t T - 1 (the
time t of difflab's `DiscreteVP` built from the scheduler's own betas by `path_of_scheduler`;
continuous samplers ask for fractional k in between, which the sinusoidal embedding accepts).

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
from .targets import eps_of

__all__ = ["diffusers_sample", "time_of_timestep", "diffusers_denoiser", "path_of_scheduler"]

# diffusers' prediction_type -> difflab's prediction kind (both define v = alpha eps - sigma x0)
_KINDS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


def path_of_scheduler(scheduler):
    """The `DiscreteVP` of a diffusers scheduler's training schedule (its own betas)."""
    from .paths import DiscreteVP

    betas = getattr(scheduler, "betas", None)
    if betas is None:
        raise ValueError(f"{type(scheduler).__name__} has no discrete betas; difflab maps DDPM-type schedules only")
    return DiscreteVP(torch.as_tensor(betas, dtype=torch.float64))


def diffusers_denoiser(model, path, prediction_type: str = "epsilon"):
    """A difflab denoiser D(x_t, t, label=None) from a diffusers model trained on `path` (module doc)."""
    from ._checks import choose
    from .denoisers import as_denoiser

    kind = _KINDS[choose(prediction_type, _KINDS, "diffusers prediction_type")]
    if not path.discrete:
        raise ValueError("a diffusers model belongs to a discrete-time path: use path_of_scheduler(scheduler)")
    T = path.T

    def net(x, t, label=None):
        k = t.to(torch.float32) * T - 1  # difflab time t_k = (k + 1) / T
        extra = {"class_labels": label} if label is not None else {}
        return model(x, k, **extra).sample.to(x.dtype)

    return as_denoiser(net, path, kind)


def time_of_timestep(path, k) -> Tensor:
    """The difflab times of (possibly fractional) diffusers timesteps k on a DiscreteVP path."""
    if not path.discrete:
        raise ValueError("diffusers timesteps belong to a discrete-time path (DiscreteVP)")
    abar = path.alphas_cumprod.numpy()
    sig = np.interp(np.asarray(k, dtype=np.float64), np.arange(path.T), np.sqrt((1 - abar) / abar))
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
        eps = eps_of(model_in, x0, a, s)
        sample = scheduler.step(eps, k, sample, **extra).prev_sample
        if callback is not None:
            callback({"t": float(times[i]), "x": sample})
    return (sample, den.nfe) if return_nfe else sample
