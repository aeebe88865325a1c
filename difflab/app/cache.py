"""difflab's cache folder (`text_encoder.cache_root()`: `$DIFFLAB_CACHE` or ~/.cache/difflab) for what is costly to
compute and the same for every run that asks for it: the latents of a data set under an autoencoder's weights, a
teacher's reflow pairs. Never a run folder: a run does not write into the folder of a run it uses. Written whole,
then renamed; a damaged or unwritable cache only costs the computation again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .folders import is_main_process, write_atomically

__all__ = ["cache_file", "cached", "intact"]


def cache_file(kind: str, key: str) -> Path:
    """The cache file for `key` among the cached `kind` (a folder of the cache)."""
    from ..text_encoder import cache_root

    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return cache_root() / kind / f"{safe}.safetensors"


def intact(tensors: dict, shapes: dict) -> bool:
    """Whether cached `tensors` are what was asked for: exactly the names of `shapes`, each of its shape, finite."""
    import torch

    if set(tensors) != set(shapes):
        return False
    for name, shape in shapes.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(shape) or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
            return False
    return True


def cached(kind: str, key: str, compute: Callable[[], dict], shapes: dict) -> dict:
    """The tensors `compute()` gives (a dict name -> tensor of the shape `shapes` names), read from the cache when it
    holds them for `key` intact (`intact`: a file damaged or edited by hand is computed again), else computed and
    written there (by the main process)."""
    from safetensors.torch import save_file

    from ..training.checkpoint import CheckpointDamaged, load_tensors

    file = cache_file(kind, key)
    if file.is_file():
        try:
            tensors = load_tensors(file)
            if intact(tensors, shapes):
                return tensors
        except (CheckpointDamaged, ValueError, OSError):
            pass
    tensors = compute()
    if is_main_process():
        try:
            write_atomically(file, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp)))
        except OSError:
            pass
    return tensors
