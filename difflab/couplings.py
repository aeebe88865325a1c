r"""Couplings of a data batch with a source batch, for flow matching (Tong et al. 2023; Pooladian et al. 2023).

Conditional flow matching regresses the velocity of x_t = alpha(t) x0 + sigma(t) z on pairs (x0, z).
Drawn independently (I-CFM) the pairs cross and the learned marginal paths curve; paired by a
minibatch optimal-transport plan for the cost ||x0 - z||^2 (OT-CFM) they hardly cross, the paths
straighten and few ODE steps suffice. A coupling here is a reordering of the source batch:
`couple(x0, z, ...)` returns indices `j` so that (x0[i], z[j[i]]) are the pairs.

- `independent`: j = identity (the batches are already independent draws).
- `exact`: the optimal permutation of the assignment problem min_j sum_i ||x0_i - z_j(i)||^2. POT's
  network simplex (`ot.emd`, 2x faster than SciPy's `linear_sum_assignment` at batch 256) returns a
  vertex of the transport polytope, which for equal uniform weights is a permutation matrix
  (Birkhoff-von Neumann). Unlike torchcfm, which draws B pairs from the plan with replacement, every
  example and every source point is used exactly once.
- `sinkhorn`: the entropic plan P (POT's log-domain Sinkhorn, regulariser `reg` times the mean
  cost), then for each x0_i a partner j ~ P[i, :] / P[i, :].sum() (every data point used once).
- With `labels` (and `source_labels` for a labelled source; by default each source slot keeps the
  label of the data example it was drawn for), pairs are formed only within a class, so a
  class-conditional model never learns a path from one class to another.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, choose

__all__ = ["COUPLINGS", "couple", "pair_cost"]

COUPLINGS = ("independent", "exact", "sinkhorn")


def pair_cost(x0: Tensor, z: Tensor) -> Tensor:
    """The squared-distance cost matrix C[i, j] = ||x0_i - z_j||^2 (float64)."""
    a, b = x0.flatten(1).double(), z.flatten(1).double()
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def _exact(cost: Tensor) -> Tensor:
    import numpy as np
    import ot

    c = cost.cpu().numpy()
    n = c.shape[0]
    plan = ot.emd(np.full(n, 1.0 / n), np.full(n, 1.0 / n), c)  # a vertex of the Birkhoff polytope: a permutation
    j = plan.argmax(1)
    if len(np.unique(j)) != n:  # never seen; the assignment solver is exact too, only slower
        from scipy.optimize import linear_sum_assignment

        j = linear_sum_assignment(c)[1]
    return torch.as_tensor(j, dtype=torch.long)


def _sinkhorn(cost: Tensor, reg: float, generator) -> Tensor:
    import ot

    n, m = cost.shape
    c = cost / cost.mean().clamp_min(1e-12)  # reg is relative to the typical cost
    plan = torch.as_tensor(ot.sinkhorn(torch.full((n,), 1.0 / n, dtype=torch.float64), torch.full((m,), 1.0 / m, dtype=torch.float64),
                                       c.cpu(), reg, method="sinkhorn_log", numItermax=2000, warn=False))
    return torch.multinomial(plan / plan.sum(1, keepdim=True), 1, generator=generator).squeeze(1)


def couple(x0: Tensor, z: Tensor, method: str = "exact", *, labels: Tensor | None = None,
           source_labels: Tensor | None = None, reg: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """Indices j (shape (B,)) pairing x0[i] with z[j[i]] by `method` (see the module doc)."""
    choose(method, COUPLINGS, "coupling")
    check_finite(x0, "x0 (the data batch)")
    check_finite(z, "z (the source batch)")
    if x0.shape[0] != z.shape[0]:
        raise ValueError(f"a coupling pairs batches of equal size; got {x0.shape[0]} data and {z.shape[0]} source examples")
    if x0.shape[1:] != z.shape[1:]:
        raise ValueError(f"data and source must have the same shape per example; got {tuple(x0.shape[1:])} and {tuple(z.shape[1:])}")
    if method == "sinkhorn" and not reg > 0:
        raise ValueError(f"the Sinkhorn regulariser reg must be > 0, got {reg}")
    n = x0.shape[0]
    if labels is None:
        if source_labels is not None:
            raise ValueError("source_labels need the data's labels too")
        groups = [(torch.arange(n), torch.arange(n))]
    else:
        labels = torch.as_tensor(labels).cpu()
        src = labels if source_labels is None else torch.as_tensor(source_labels).cpu()
        if labels.shape != (n,) or src.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), one per example")
        groups = []
        for c in labels.unique():
            rows, cols = (labels == c).nonzero().squeeze(1), (src == c).nonzero().squeeze(1)
            if len(rows) != len(cols):
                raise ValueError(f"class {int(c)} has {len(rows)} data and {len(cols)} source examples in the batch; "
                                 "class-wise coupling needs equal counts per class")
            groups.append((rows, cols))
        if sum(len(r) for r, _ in groups) != n:
            raise ValueError("every source example's label must occur among the data labels")
    j = torch.empty(n, dtype=torch.long)
    for rows, cols in groups:
        if method == "independent":
            j[rows] = cols
            continue
        cost = pair_cost(x0[rows.to(x0.device)], z[cols.to(z.device)])
        j[rows] = cols[_exact(cost) if method == "exact" else _sinkhorn(cost, reg, generator)]
    return j.to(x0.device)
