r"""Diffusion posterior sampling as Chung, Kim, McCann, Klasky & Ye (2023) wrote it: Algorithm 1 of the paper and
the official code's `PosteriorSampling`, a reference beside difflab's `dps` transform (`inverse.transforms`).

Each DDPM ancestral step from x0_hat = D(x_i) is followed by a gradient step on the residual's norm, taken through
the denoiser::

    x'_{i-1} = mu(x_i, x0_hat) + sqrt(beta-tilde_i) z
    x_{i-1}  = x'_{i-1} - zeta grad_{x_i} norm(y - A(x0_hat(x_i)))

which is the paper's zeta_i grad norm(y - A(x0_hat))^2 with zeta_i = zeta / (2 norm(y - A(x0_hat))). zeta is a
step of the grid's sampler: unlike the transform's scale, its best value depends on the number of steps (on an
8x8 digit mixture against its exact posterior: about 0.3 at 1,000 steps, 3 at 20; benchmarks/dps.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import batch_times
from .._random import randn

__all__ = ["chung_dps"]


def chung_dps(denoiser, path, x: Tensor, ts, *, A, y: Tensor, zeta: float = 1.0, generator=None, callback=None,
              return_info: bool = False, **cond) -> Tensor:
    """Algorithm 1 of Chung et al. (module doc) from x at ts[0] over the decreasing grid `ts`, in the samplers' form
    (so `sampling.sample_batched` can run it, slicing `y` per batch): `A` any differentiable callable
    (N, *shape) -> (N, ...), `y` one observation per example, `zeta` the step. Noise comes from `generator` (one,
    or one per example). Returns the samples (and the `SampleInfo` with `return_info`)."""
    from ..samplers._common import finish, start, steps_of
    from ..samplers.ancestral import ddpm_step

    if not (math.isfinite(zeta) and zeta >= 0):
        raise ValueError(f"zeta must be >= 0 and finite, got {zeta}")
    den, ts = start(denoiser, x, ts)
    y = torch.as_tensor(y).to(x)
    for i, st in enumerate(steps_of(path, ts)):
        with torch.enable_grad():
            xt = x.detach().requires_grad_(True)
            x0 = den(xt, batch_times(st.t, x), **cond)
            norm = (y.reshape(x.shape[0], -1) - A(x0).reshape(x.shape[0], -1)).norm(dim=1)  # per example
            grad, = torch.autograd.grad(norm.sum(), xt)
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if st.s > 0 else None
        x = ddpm_step(x.detach(), x0.detach(), st, noise=noise) - zeta * grad
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0.detach()})
    return finish(x.detach(), den, ts, return_info)
