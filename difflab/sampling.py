"""`difflab.sample`: one call from a denoiser and a path to samples, with any sampler and grid."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from ._checks import check_finite, choose
from .samplers import SAMPLERS, check_grid
from .samplers.grids import make_grid

__all__ = ["sample", "default_grid", "steps_for_nfe", "sampler_options"]

_RESERVED = {"denoiser", "path", "x", "ts", "generator", "callback", "return_info"}


def sampler_options(sampler: str) -> list[str]:
    """The keywords a sampler takes beyond the common ones (`eta`, `variance`, `steps_per_level`, ...)."""
    fn = SAMPLERS[choose(sampler, SAMPLERS, "sampler")]
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _RESERVED]


def default_grid(path) -> str:
    """'trailing' on a discrete-time path (its own timesteps, starting at the last), 'uniform' otherwise."""
    return "trailing" if getattr(path, "T", None) is not None else "uniform"


def steps_for_nfe(sampler: str, nfe: int) -> dict:
    """Grid steps (and options) with which `sampler` spends about `nfe` network evaluations (at most nfe)."""
    choose(sampler, SAMPLERS, "sampler")
    if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if sampler == "pc":  # one predictor and one corrector evaluation per step
        return {"steps": max(1, nfe // 2)}
    if sampler == "ode_heun":  # N steps cost 2N - 1 (Euler on the final step to 0)
        return {"steps": max(1, (nfe + 1) // 2)}
    if sampler == "ode_rk4":  # N steps cost 4N - 1 (three stages on the final step to 0)
        return {"steps": max(1, (nfe + 1) // 4)}
    if sampler == "annealed_langevin":
        # ~30 Langevin steps relax one level at the default step 0.1 sigma^2 ((1 - 0.1)^30 = 4%),
        # so a budget buys (nfe - 1) / 30 levels, plus the final denoising evaluation.
        per = max(1, min(30, nfe - 1))
        return {"steps": max(1, (nfe - 1) // per), "steps_per_level": per}
    if sampler == "ode_rk45":
        raise ValueError("ode_rk45 is adaptive: set its tolerances (rtol, atol) instead of an NFE budget")
    return {"steps": int(nfe)}


def sample(denoiser, path, shape=None, *, sampler: str = "ddim", steps: int | None = None, timesteps=None,
           grid: str | None = None, x: Tensor | None = None, generator: torch.Generator | None = None,
           device=None, dtype=None, cond: dict | None = None, callback=None, return_info: bool = False, **options):
    """Draw samples: start from the prior (or from `x`) at the grid's first time and run `sampler` over it.

    The first time is t = 1, except on the karras and log_snr grids of a VP-type schedule that goes
    below log-SNR -2 ln 80 (cosine; linear betas by a little), which start where the prior already
    holds (`samplers.grids.noise_end`).

    Give either `steps` (a grid named `grid`: see `samplers.grids.GRIDS`) or `timesteps` (an
    explicit decreasing grid of times in [0, 1]). `ode_rk45` is adaptive and needs neither.
    `options` are the sampler's own keywords (`eta`, `variance`, `snr`, `rtol`, ...), checked by name;
    `cond` holds conditioning passed on to the denoiser. Returns the samples, and a `SampleInfo`
    (NFE, grid) with `return_info=True`.
    """
    fn = SAMPLERS[choose(sampler, SAMPLERS, "sampler")]
    accepted = sampler_options(sampler)
    for key in options:
        choose(key, accepted, f"option for sampler {sampler!r}")

    if timesteps is not None and steps is not None:
        raise ValueError("give either steps= or timesteps=, not both")
    if timesteps is not None:
        if grid is not None:
            raise ValueError("grid= names a grid built from steps=; it cannot be combined with explicit timesteps=")
        ts = check_grid(timesteps)
    elif steps is None and sampler == "ode_rk45":
        ts = torch.tensor([1.0, path.t_min, 0.0], dtype=torch.float64)  # adaptive: start, stop, denoise
    elif steps is None:
        raise ValueError(f"sampler {sampler!r} needs steps= (number of steps) or timesteps= (an explicit grid)")
    else:
        ts = make_grid(grid or default_grid(path), path, steps)

    if x is None:
        if shape is None:
            raise ValueError("give shape= (for example (n, 2)) or a starting sample x=")
        x = path.prior_sample(shape, generator, device=device, dtype=dtype)
    else:
        check_finite(x, "x (the starting sample)")
        if shape is not None and tuple(shape) != tuple(x.shape):
            raise ValueError(f"shape={tuple(shape)} does not match the starting sample's shape {tuple(x.shape)}")
        x = x.to(device=device or x.device, dtype=dtype or x.dtype)
    return fn(denoiser, path, x, ts, generator=generator, callback=callback, return_info=return_info,
              **options, **(cond or {}))
