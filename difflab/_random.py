"""Randomness always comes from an explicit `torch.Generator`: same seed, same samples.

A CPU generator may drive tensors on another device (the noise is drawn on the generator's device
and moved), so a seed gives the same samples on CPU and CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _draw(fn, shape, generator, device, dtype) -> Tensor:
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    gen_device = generator.device if generator is not None else device
    return fn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def randn(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
    """Standard normal noise of `shape`, drawn from `generator` (global RNG only when it is None)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, *, generator: torch.Generator | None = None, device=None, dtype=None) -> Tensor:
    """Uniform [0, 1) noise of `shape`, drawn from `generator`."""
    return _draw(torch.rand, shape, generator, device, dtype)
