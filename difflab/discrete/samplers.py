r"""Samplers of categorical diffusion: plain functions of a denoiser `(x_t, t, **cond) -> p(x0 | x_t)`.

Both start from tokens x_1 drawn from the path's prior and walk a decreasing grid 1 = t_N > ... > t_0 = 0
(the path's T steps, or fewer evenly skipped: D3PM Table 2; any grid in continuous time):

    p = denoiser(x_t, t)                        # p(x0 | x_t) per position
    x_s ~ p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0 | x_t)     # `path.reverse` (paths module doc)

`ancestral` does exactly that. `masked` is the same walk on an absorbing path, reusing the network's
output while no token has been unmasked since it was computed (Sahoo et al. 2024, MDLM's cache): on an
absorbing path the exact p(x0 | x_t) depends on which tokens are masked, not on t, so the reuse is exact
for an exact denoiser (and for MDLM's networks, which take no time); with many steps most steps unmask
nothing and cost no evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._random import Generators, example_generators
from ..denoisers import record_evaluation
from .paths import CategoricalPath, categorical

__all__ = ["ancestral", "masked", "sample", "sample_batched", "in_batches", "SAMPLERS"]


def _walk(denoiser, path: CategoricalPath, x: Tensor, ts: Tensor, generator, callback, cache: bool, cond) -> tuple[Tensor, int]:
    ts = torch.as_tensor(ts, dtype=torch.float64)
    if ts.dim() != 1 or len(ts) < 2 or not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("the time grid must be a decreasing 1-D sequence of at least two times")
    probs, calls = None, 0
    for k in range(len(ts) - 1):
        t, s = ts[k], ts[k + 1]
        if probs is None or not cache:
            probs = denoiser(x, torch.full((x.shape[0],), float(t), dtype=torch.get_default_dtype(), device=x.device), **cond)
            record_evaluation(x.shape[0])
            calls += 1
        new = categorical(path.reverse(x, s, t, probs), generator)
        if not cache or bool((new != x).any()):
            probs = None  # with the cache, kept only while nothing is unmasked (module doc)
        x = new
        if callback is not None:
            callback({"i": k, "t": float(t), "s": float(s), "x": x})
    return x, calls


def ancestral(denoiser, path: CategoricalPath, x: Tensor, ts, *, generator: Generators = None, callback=None,
              return_info: bool = False, **cond):
    """Ancestral sampling over the grid `ts` from tokens `x` at ts[0] (module doc)."""
    out, calls = _walk(denoiser, path, x, ts, generator, callback, False, cond)
    return (out, {"nfe": calls}) if return_info else out


def masked(denoiser, path: CategoricalPath, x: Tensor, ts, *, generator: Generators = None, callback=None,
           return_info: bool = False, **cond):
    """Ancestral sampling on an absorbing path with MDLM's cache (module doc)."""
    if path.mask is None:
        raise ValueError(f"the masked sampler needs an absorbing path (a [MASK] state); {path!r} has none: use 'ancestral'")
    out, calls = _walk(denoiser, path, x, ts, generator, callback, True, cond)
    return (out, {"nfe": calls}) if return_info else out


SAMPLERS = {"ancestral": ancestral, "masked": masked}


def sample(denoiser, path: CategoricalPath, shape, *, steps: int | None = None, sampler: str = "ancestral",
           generator: Generators = None, device=None, return_info: bool = False, callback=None, **cond):
    """Integer tokens of `shape` (batch first) drawn by `sampler` ("ancestral", "masked") in `steps`
    steps (default: the path's T) from the path's prior."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown discrete sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    x = path.prior_sample(tuple(shape), generator, device=device)
    return SAMPLERS[sampler](denoiser, path, x, path.times(steps), generator=generator, callback=callback,
                             return_info=return_info, **cond)


def in_batches(draw, n: int, *, seed: int = 0, batch_size: int = 500, cond: dict | None = None, device=None,
               progress: bool = False) -> tuple[Tensor, dict]:
    """n examples drawn by `draw(m, generators, **cond) -> (tokens, info)` in batches of `batch_size`, example i
    from its own generator (`_random.example_generators(seed, n)`), so the examples do not depend on the batch
    size (the masked sampler's cache with a time-conditioned network aside: module doc). Tokens on the CPU."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    gens = example_generators(seed, int(n))
    starts = range(0, int(n), int(batch_size))
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"sampling {n}", unit="batch")
    outs, info = [], {}
    for i in starts:
        j = min(i + int(batch_size), int(n))
        cb = {k: (v[i:j].to(device) if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in (cond or {}).items()}
        xb, info = draw(j - i, gens[i:j], **cb)
        outs.append(xb.cpu())
    return torch.cat(outs), info


def sample_batched(denoiser, path: CategoricalPath, n: int, shape, *, seed: int = 0, batch_size: int = 500,
                   cond: dict | None = None, device=None, progress: bool = False, **kwargs) -> tuple[Tensor, dict]:
    """n token arrays of per-example `shape` by `sample` (kwargs: steps, sampler) in batches (`in_batches`)."""
    def draw(m, gens, **cb):
        return sample(denoiser, path, (m, *shape), generator=gens, device=device, return_info=True, **kwargs, **cb)
    return in_batches(draw, n, seed=seed, batch_size=batch_size, cond=cond, device=device, progress=progress)
