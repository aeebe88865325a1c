r"""Cascaded diffusion (Ho et al. 2021, "Cascaded Diffusion Models for High Fidelity Image Generation"; Imagen).

Two denoisers: a base model over low-resolution images y (C, H/f, W/f) and a super-resolution model over
full-resolution images x whose network also receives y (upsampled and concatenated: `nets.embeddings.
LowResConditioning`). Sampling draws y from the base, then x given y. The second stage is trained on real
low-resolution images (`data.downsample` of the data); to keep it from trusting a perfect y that the first stage
never draws, training noises y on the path to a random level s ~ U[0, s_max] and tells the network s
(noise-conditioning augmentation, `objectives.DiffusionObjective(low_res_noise=)`). At sampling the base's y
is noised to one chosen level s (0.1-0.3 of the way in Ho et al.) by `low_res_condition`:

    low_res = alpha(s) y + sigma(s) eps,   low_res_level = s.

Exact check (`tests/test_cascade.py`): for Gaussian images both stages have closed-form denoisers
(`oracles.GaussianSuperResolution`); the cascade must reproduce N(mu, Sigma), and at s = 0 every sample's block
average must be its y.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._random import derive_seed, example_generators, randn
from .sampling import sample_batched

__all__ = ["low_res_condition", "sample", "Cascade"]


def low_res_condition(y: Tensor, path, level: float = 0.0, generator=None) -> dict:
    """The second stage's conditioning for low-resolution images y: {"low_res", "low_res_level"} (module doc);
    `generator` one or one per example (the augmentation's noise)."""
    level = float(level)
    if not 0 <= level <= 1:
        raise ValueError(f"the augmentation level is a time on the path in [0, 1], got {level}")
    n = y.shape[0]
    s = torch.full((n,), level, device=y.device)
    if level == 0:
        return {"low_res": y, "low_res_level": s}
    eps = randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    return {"low_res": path.perturb(y, s, eps), "low_res_level": s}


def sample(base, base_path, sr, sr_path, n: int, low_res_shape, shape, *, level: float = 0.0, seed: int = 0,
           batch_size: int = 500, cond: dict | None = None, base_settings: dict | None = None,
           sr_settings: dict | None = None, device=None, dtype=None, progress: bool = False, return_low_res: bool = False):
    """n full-resolution samples of a cascade (module doc): the base's n low-resolution samples (settings
    `base_settings`: sampler, steps, ... for `sample_batched`), each noised to `level`, then the
    super-resolution stage's (`sr_settings`). `cond` (e.g. labels) goes to both stages. Example i draws
    from its own generators in each stage, so samples do not depend on `batch_size`. Returns x (and y with
    `return_low_res`)."""
    stages = Cascade(base, base_path, sr, sr_path, low_res_shape, shape, level=level, base_settings=base_settings,
                     sr_settings=sr_settings)
    x, y = stages.sample(n, seed=seed, batch_size=batch_size, base_cond=cond, sr_cond=cond, device=device, dtype=dtype,
                         progress=progress)
    return (x, y) if return_low_res else x


class Cascade:
    """A cascade's two stages as `dl.load` gives them for a cascade run: each a (denoiser, path) with its sampling
    settings; `decode_base` turns the base's samples into low-resolution images (a latent base's decoder, else
    None); `clip` a range the low-resolution images are clipped to before the second stage (images: (-1, 1)).
    `sample(n, ...)` draws full-resolution images (module doc)."""

    def __init__(self, base, base_path, sr, sr_path, low_res_shape, shape, *, level: float = 0.0, base_settings=None,
                 sr_settings=None, base_shape=None, decode_base=None, clip=None):
        self.base, self.base_path, self.sr, self.sr_path = base, base_path, sr, sr_path
        self.low_res_shape, self.shape, self.level = tuple(low_res_shape), tuple(shape), float(level)
        self.base_settings, self.sr_settings = dict(base_settings or {}), dict(sr_settings or {})
        self.base_shape, self.decode_base, self.clip = tuple(base_shape or low_res_shape), decode_base, clip
        if not 0 <= self.level <= 1:
            raise ValueError(f"the augmentation level is a time on the path in [0, 1], got {level}")

    def sample(self, n: int, *, seed: int = 0, batch_size: int = 500, base_cond: dict | None = None,
               sr_cond: dict | None = None, device=None, dtype=None, progress: bool = False) -> tuple[Tensor, Tensor]:
        """(x, y): n full-resolution samples and the low-resolution images they were drawn from."""
        y = sample_batched(self.base, self.base_path, n, self.base_shape, seed=derive_seed(seed, "cascade", "base"),
                           batch_size=batch_size, cond=base_cond, device=device, dtype=dtype, progress=progress,
                           **self.base_settings)
        if self.decode_base is not None:
            from .latent import decode_images

            y = decode_images(self.decode_base, y, batch_size=batch_size, device=device or "cpu")
        if self.clip is not None:
            y = y.clamp(*self.clip)
        low = low_res_condition(y, self.sr_path, self.level, example_generators(derive_seed(seed, "cascade", "low_res"), n))
        x = sample_batched(self.sr, self.sr_path, n, self.shape, seed=derive_seed(seed, "cascade", "super_resolution"),
                           batch_size=batch_size, cond={**(sr_cond or {}), **low}, device=device, dtype=dtype,
                           progress=progress, **self.sr_settings)
        return x, y
