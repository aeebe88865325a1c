r"""RePaint (Lugmayr, Danelljan, Romero, Yu, Timofte & Van Gool 2022): inpainting by replacement, with resampling.

Over a decreasing grid t_0 = 1 > ... > t_N = 0, every step t -> s of any sampler (run on the two-point grid
[t, s]) is followed by replacing the observed entries with the observation noised to s,

    x_s[keep] = alpha_s y + sigma_s eps        (y itself at s = 0),

so the known part always follows the forward process and the rest is generated to agree with it. Because the
replacement ignores what the generated part says about the known one, RePaint harmonises by resampling: after
every `jump` steps down it goes back up `jump` steps with the forward transition,

    x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2) eps,

and down again, `resamples` times in all per block (resamples = 1: plain replacement). The known entries of
the result are y exactly. Noise comes from `generator` (one, or one per example).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._random import randn
from .operators import Mask

__all__ = ["repaint", "schedule"]


def schedule(steps: int, jump: int, resamples: int) -> list[int]:
    """The positions 0 .. steps on the grid RePaint visits: down one at a time, and at every `jump`-th position
    counted from the end (the end included) back up `jump` positions, `resamples - 1` times."""
    if steps < 1 or jump < 1 or resamples < 1:
        raise ValueError(f"RePaint needs steps, jump and resamples >= 1; got {steps}, {jump}, {resamples}")
    left = {p: resamples - 1 for p in range(steps, jump - 1, -jump)}
    p, visits = 0, [0]
    while p < steps:
        p += 1
        visits.append(p)
        if left.get(p, 0) > 0:  # only after a step down: back up, then down again
            left[p] -= 1
            for _ in range(jump):
                p -= 1
                visits.append(p)
    return visits


def repaint(denoiser, path, x: Tensor, ts, *, mask, y: Tensor, sampler: str = "ddpm", jump: int = 10, resamples: int = 10,
            generator=None, callback=None, return_info: bool = False, **options):
    """Inpaint from x at ts[0] (module doc): `mask` a `Mask` (or a boolean tensor of one example's shape),
    `y` the observed entries (N, m), or whole examples whose observed entries count; `sampler` any difflab
    sampler (a stochastic one for RePaint's resampling to mix), run with `options` and `generator` one step at a
    time. Returns the samples (and the `SampleInfo` with `return_info`)."""
    from ..samplers import SAMPLERS, check_grid
    from ..samplers._common import SampleInfo

    mask = mask if isinstance(mask, Mask) else Mask(mask)
    ts = check_grid(ts)
    shape = tuple(x.shape[1:])
    y = torch.as_tensor(y).to(x)
    known = y.reshape(x.shape[0], *shape) if y[0].numel() == math.prod(shape) else mask.adjoint(y, shape)
    keep = mask.keep.to(x.device).expand(x.shape)
    step = SAMPLERS[sampler]
    alpha = lambda t: float(path.alpha(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    sigma = lambda t: float(path.sigma(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    visits, nfe = schedule(len(ts) - 1, jump, resamples), 0
    for i, (p, q) in enumerate(zip(visits[:-1], visits[1:])):
        t, s = float(ts[p]), float(ts[q])
        if q > p:  # down: one sampler step, then the known entries replaced by the observation noised to s
            x, info = step(denoiser, path, x, ts[p:q + 1], generator=generator, return_info=True, **options)
            nfe += info.nfe
            noised = known if s == 0 else alpha(s) * known + sigma(s) * randn(x.shape, generator=generator, device=x.device,
                                                                            dtype=x.dtype)
            x = torch.where(keep, noised, x)
        else:  # up: the forward transition from t back to the earlier s (here s > t)
            ratio = alpha(s) / alpha(t)
            spread = math.sqrt(max(sigma(s) ** 2 - ratio**2 * sigma(t) ** 2, 0.0))
            x = ratio * x + spread * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback({"i": i, "t": t, "s": s, "x": x})
    x = torch.where(keep, known, x)
    return (x, SampleInfo(nfe, len(visits) - 1, ts)) if return_info else x
