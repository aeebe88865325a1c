r"""Exact models of categorical data: their p(x0 | x_t) per position is known, so they drive the samplers
and losses in place of a network and give answers to test against.

`Factorised(probs)`: independent positions with known probabilities (any number of positions);
p(x0^j | x_t) is proportional to probs[j, x0] Q_bar(t)[x0, x_t^j].

`Joint(table)`: any distribution over a few positions (K^D states, enumerated), correlated or not;
p(x0^j | x_t) = sum over the states with that symbol at j of p(x0) prod_i Q_bar(t)[x0^i, x_t^i],
normalised. With `labels`, one table per class: the denoiser takes `label=` (-1: the mixture over
classes), as the guidance of `difflab.discrete.guidance` needs.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from .._random import Generators
from .paths import CategoricalPath, _columns, _per_example, categorical

__all__ = ["Factorised", "Joint"]


def _likelihoods(path: CategoricalPath, x_t: Tensor, t) -> Tensor:
    """Q_bar(t)[x0, x_t^j] for every position j and symbol x0: (B, N, K)."""
    B = x_t.shape[0]
    return _columns(path.q_bar(_per_example(t, B, x_t.device)), x_t.reshape(B, -1).long())[..., : path.num_classes]


class Factorised:
    """Independent positions: `probs` of shape (*positions, K), rows summing to one."""

    def __init__(self, probs):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.dim() < 2 or (probs < 0).any() or not torch.allclose(probs.sum(-1), torch.ones((), dtype=torch.float64)):
            raise ValueError("probs must have shape (*positions, K) with non-negative rows summing to one")
        self.probs = probs

    @property
    def num_classes(self) -> int:
        return self.probs.shape[-1]

    def entropy(self) -> float:
        """Entropy of the data in nats (a sum over positions)."""
        p = self.probs
        return float(-(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum())

    def sample(self, n: int, generator: Generators = None) -> Tensor:
        return categorical(self.probs.expand(n, *self.probs.shape), generator)

    def log_prob(self, x: Tensor) -> Tensor:
        lp = torch.gather(self.probs.log().expand(x.shape[0], *self.probs.shape), -1, x.long()[..., None])[..., 0]
        return lp.reshape(x.shape[0], -1).sum(1)

    def denoiser(self, path: CategoricalPath):
        def exact(x_t: Tensor, t, **cond) -> Tensor:
            w = _likelihoods(path, x_t, t).reshape(*x_t.shape, self.num_classes) * self.probs.to(x_t.device)
            return w / w.sum(-1, keepdim=True)
        return exact


class Joint:
    """A distribution over D positions of K symbols given as a table of shape (K,) * D, or (C, K, ..., K)
    with `labels=True` (one table per class) and `class_weights` (C,) (uniform by default)."""

    def __init__(self, table, *, labels: bool = False, class_weights=None):
        table = torch.as_tensor(table, dtype=torch.float64)
        tables = table if labels else table[None]
        K = tables.shape[1]
        if tables.dim() < 2 or any(n != K for n in tables.shape[1:]) or (tables < 0).any():
            raise ValueError("the table must have shape (K,) * D (or (C,) + (K,) * D with labels), non-negative")
        sums = tables.reshape(len(tables), -1).sum(1)
        if not torch.allclose(sums, torch.ones_like(sums)):
            raise ValueError("each table must sum to one")
        if tables[0].numel() > 2_000_000:
            raise ValueError(f"{tables[0].numel()} states are too many to enumerate")
        self.tables = tables.reshape(len(tables), -1)  # (C, K^D)
        self.labelled = labels
        self.num_classes, self.positions = K, tables.dim() - 1
        cw = torch.full((len(tables),), 1.0 / len(tables), dtype=torch.float64) if class_weights is None else \
            torch.as_tensor(class_weights, dtype=torch.float64)
        self.class_weights = cw / cw.sum()
        self.states = torch.tensor(list(itertools.product(range(K), repeat=self.positions)), dtype=torch.long)

    @property
    def table(self) -> Tensor:
        """The (unconditional) probability of each state, (K^D,) in `states` order."""
        return self.class_weights @ self.tables

    def entropy(self, label: int | None = None) -> float:
        p = self.table if label is None else self.tables[label]
        return float(-(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum())

    def index(self, x: Tensor) -> Tensor:
        """The state index of each row of tokens x (B, D)."""
        weights = self.num_classes ** torch.arange(self.positions - 1, -1, -1)
        return (x.long().reshape(x.shape[0], -1) * weights.to(x.device)).sum(1)

    def sample(self, n: int, generator: Generators = None, label: int | None = None) -> Tensor:
        p = self.table if label is None else self.tables[label]
        return self.states[categorical(p.expand(n, len(p)), generator)]

    def log_prob(self, x: Tensor) -> Tensor:
        return self.table.log()[self.index(x)]

    def denoiser(self, path: CategoricalPath):
        states = self.states

        def exact(x_t: Tensor, t, label: Tensor | None = None, **cond) -> Tensor:
            A = _likelihoods(path, x_t, t)  # (B, D, K)
            B, D = A.shape[:2]
            lik = A[:, torch.arange(D)[None, :], states.to(x_t.device)].prod(-1)  # (B, K^D)
            prior = self.table.to(x_t.device).expand(B, -1)
            if label is not None:
                label = torch.as_tensor(label, device=x_t.device).long().reshape(-1).expand(B)
                own = self.tables.to(x_t.device)[label.clamp_min(0)]
                prior = torch.where((label >= 0)[:, None], own, prior)
            w = lik * prior
            w = w / w.sum(1, keepdim=True)
            onehot = torch.nn.functional.one_hot(states.to(x_t.device), self.num_classes).double()
            return torch.einsum("bm,mdk->bdk", w, onehot).reshape(*x_t.shape, self.num_classes)
        return exact

    def __repr__(self) -> str:
        return f"Joint(K={self.num_classes}, D={self.positions}, classes={len(self.tables)}, H={self.entropy() / math.log(2):.3f} bits)"
