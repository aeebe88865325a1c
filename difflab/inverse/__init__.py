"""Inverse problems and editing with any denoiser: an observation y = A x0 + n of an unknown example x0.

- `operators`: linear measurements on examples of any shape (`Mask`, `Downsample`, `Blur`, `Identity`,
  `Matrix`; `Upsample` and `Composed` to observe a low-resolution image through them), each with its adjoint
  and the solve pseudo-inverse guidance needs;
- `transforms`: denoiser -> denoiser transforms towards E[x0 | x_t, y], so every sampler and path gets them
  (`pgdm`: pseudo-inverse guidance; `dps`: diffusion posterior sampling);
- `repaint`: inpainting by replacement with resampling, over any sampler;
- `chung`: Chung et al.'s DPS written as their Algorithm 1 (DDPM steps, each followed by a gradient step), the
  reference `dps` is measured against.

SDEdit (editing: start from a noised image) is `dl.sample(..., x_start=image, t_start=0.5)`. The exact answers
are in `oracles`: `GaussianMixture.posterior(A, y, noise_std)` is p(x0 | y) of a mixture prior, again a mixture,
so its denoiser is the exact E[x0 | x_t, y].
"""

from .operators import (Blur, Composed, Downsample, Identity, Mask, Matrix, Operator, Upsample, as_operator, conjugate_gradients,
                        gaussian_kernel)
from .chung import chung_dps
from .repaint import repaint
from .transforms import PosteriorSampling, PseudoInverseGuided, dps, pgdm

__all__ = ["Operator", "Identity", "Mask", "Downsample", "Upsample", "Blur", "Matrix", "Composed", "as_operator", "conjugate_gradients",
           "gaussian_kernel", "pgdm", "dps", "PseudoInverseGuided", "PosteriorSampling", "repaint",
           "chung_dps"]
