"""Small helpers shared by every module: broadcasting over batch dimensions and input checks.

Every public entry point validates its inputs here so that a user gets one clear message naming
what was wrong and how to fix it, instead of a shape error three calls deep.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions to `v` until it has `ndim` dimensions.

    A per-example coefficient of shape `(B,)` then broadcasts against data of any shape `(B, ...)`
    (vectors, images, sequences) without assuming images.
    """
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a tensor of shape {tuple(v.shape)} to {ndim} dimensions")
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


def choose(name: str, choices: Iterable[str], what: str) -> str:
    """Return `name` if it is one of `choices`, else raise a ValueError listing the valid ones."""
    choices = list(choices)
    if name in choices:
        return name
    hint = difflib.get_close_matches(str(name), choices, n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ValueError(f"unknown {what} {name!r}; valid choices: {', '.join(choices)}.{did_you_mean}")


def is_finite_number(value) -> bool:
    """Whether `value` is a finite int or float (a bool is not a number here: JSON's true is no count)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise if `x` holds NaN or infinite values (they would silently poison every later step)."""
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); check the data or the model that produced it")
    return x


def check_times(t: Tensor, name: str = "t") -> Tensor:
    """Raise unless every time lies in [0, 1] (t = 0 is data, t = 1 is noise)."""
    check_finite(t, name)
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError(
            f"{name} must lie in [0, 1] (0 = data, 1 = noise); got values in "
            f"[{float(t.min()):.6g}, {float(t.max()):.6g}]"
        )
    return t


def batch_times(t: Tensor | float, x: Tensor) -> Tensor:
    """Turn a scalar or per-example time into a `(B,)` tensor on `x`'s device, checking the batch size."""
    if not torch.is_tensor(t):  # a Python number takes the data's precision
        t = torch.tensor(t, dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype())
    t = t.to(x.device)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"t must be a scalar or have shape ({x.shape[0]},) to match a batch of shape {tuple(x.shape)}; "
            f"got shape {tuple(t.shape)}"
        )
    return t


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match")
