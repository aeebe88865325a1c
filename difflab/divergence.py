r"""Divergences (Jacobian traces) of vector fields, exactly or by Hutchinson's estimator.

For a field `fn` acting on a batch of examples x of shape (B, ...), each example independent,

    div fn(x) = tr(d fn / d x) = sum_i d fn_i / d x_i                        (exact: D backward passes)
    div fn(x) ~ eps^T (d fn / d x) eps,   E[eps eps^T] = I                   (Hutchinson 1989: one pass per probe)

Hutchinson's estimate is unbiased for any probe law with identity covariance; Rademacher probes
(entries +-1) have the smallest variance, 2 sum_{i != j} J_ij^2 (zero when the Jacobian is
diagonal), Gaussian probes have 2 ||J_sym||_F^2. Both the likelihood (`difflab.likelihood`) and
explicit score matching (`difflab.losses`) take their traces from here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import choose
from ._random import randn

__all__ = ["PROBES", "probes", "exact_divergence", "hutchinson_divergence"]

PROBES = ("rademacher", "gaussian")


def probes(kind: str, num: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """`num` probe vectors shaped like `like`, stacked: shape (num, *like.shape), identity covariance."""
    choose(kind, PROBES, "probe kind")
    if int(num) != num or num < 1:
        raise ValueError(f"the number of probes must be a positive integer, got {num!r}")
    eps = randn((int(num), *like.shape), generator=generator, device=like.device, dtype=like.dtype)
    return eps.sign() if kind == "rademacher" else eps


def _with_grad(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    y = fn(x)
    if y.shape != x.shape:
        raise ValueError(f"a divergence needs a field with the shape of its input; got {tuple(y.shape)} "
                         f"for an input of shape {tuple(x.shape)}")
    return x, y


def exact_divergence(fn: Callable[[Tensor], Tensor], x: Tensor, *, create_graph: bool = False
                     ) -> tuple[Tensor, Tensor]:
    """(fn(x), div fn(x)) with the exact trace, one backward pass per dimension; div has shape (B,).

    `create_graph=True` keeps the graph so the trace can be differentiated (training).
    """
    with torch.enable_grad():
        x, y = _with_grad(fn, x)
        flat_y = y.flatten(1)
        d = flat_y.shape[1]
        div = torch.zeros(x.shape[0], dtype=y.dtype, device=y.device)
        for i in range(d):  # row i of each example's Jacobian, summed over the (independent) batch
            (g,) = torch.autograd.grad(flat_y[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
            div = div + g.flatten(1)[:, i]
    return (y, div) if create_graph else (y.detach(), div.detach())


def hutchinson_divergence(fn: Callable[[Tensor], Tensor], x: Tensor, eps: Tensor, *, create_graph: bool = False
                          ) -> tuple[Tensor, Tensor]:
    """(fn(x), eps_k^T (d fn/dx) eps_k for each probe k): the second has shape (K, B) for eps of shape (K, *x.shape)."""
    if eps.shape[1:] != x.shape:
        raise ValueError(f"probes must have shape (K, *x.shape) = (K, {tuple(x.shape)}); got {tuple(eps.shape)}")
    with torch.enable_grad():
        x, y = _with_grad(fn, x)
        out = []
        for k in range(eps.shape[0]):  # eps^T J = grad of <fn(x), eps> (a vector-Jacobian product)
            (g,) = torch.autograd.grad(y, x, eps[k], create_graph=create_graph, retain_graph=True)
            out.append((g * eps[k]).flatten(1).sum(1))
        est = torch.stack(out)
    return (y, est) if create_graph else (y.detach(), est.detach())
