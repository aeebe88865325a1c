"""Randomness always comes from an explicit `torch.Generator`: same seed, same samples.

A CPU generator may drive tensors on another device (the noise is drawn on the generator's device
and moved), so a seed gives the same samples on CPU and CUDA.

A *list* of generators, one per example (as diffusers' `randn_tensor` takes them, and EDM's
`StackedRandomGenerator`), draws row i of every batch from generator i: an example's noise then
depends only on its own generator, never on the batch it was drawn in. `example_generators(seed, n)`
makes such a list for examples `start .. start + n - 1` of a seed, so sampling n examples in
batches of any size gives the same samples (`sampling.sample_batched`).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

Generators = torch.Generator | list | tuple | None


def _draw(fn, shape, generator, device, dtype) -> Tensor:
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):  # one generator per example (row)
        if not shape or shape[0] != len(generator):
            raise ValueError(f"{len(generator)} generators (one per example) cannot draw a batch of shape {shape}")
        rows = [fn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype) for g in generator]
        return torch.cat(rows).to(device) if rows else torch.empty(shape, dtype=dtype, device=device)
    gen_device = generator.device if generator is not None else device
    return fn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def randn(shape, *, generator: Generators = None, device=None, dtype=None) -> Tensor:
    """Standard normal noise of `shape`, drawn from `generator` (global RNG only when it is None)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, *, generator: Generators = None, device=None, dtype=None) -> Tensor:
    """Uniform [0, 1) noise of `shape`, drawn from `generator`."""
    return _draw(torch.rand, shape, generator, device, dtype)


def derive_seed(seed: int, *names) -> int:
    """A 63-bit seed derived from one seed and names (e.g. 'noise', a rank, an example index)."""
    h = hashlib.sha256(repr((int(seed),) + tuple(names)).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def example_generators(seed: int, n: int, start: int = 0) -> list[torch.Generator]:
    """One CPU generator for each example start .. start + n - 1 of `seed` (independent streams)."""
    return [torch.Generator().manual_seed(derive_seed(seed, "example", i)) for i in range(start, start + n)]


def split_generators(generator: Generators, start: int, stop: int) -> Generators:
    """The generators of rows start:stop of a batch (a single generator is shared by every row)."""
    return generator[start:stop] if isinstance(generator, (list, tuple)) else generator
