r"""The autoregressive reference: p(x) = prod_i p(x_i | x_<i) over the flattened positions, a causal
network fed [BOS, x_1 .. x_{L-1}]. Its negative log-likelihood is exact (not a bound), the yardstick the
diffusion models' bits per symbol are read against; sampling takes one network call per position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._random import Generators
from ..denoisers import record_evaluation
from .paths import categorical

__all__ = ["nll", "sample"]


def _shifted(x: Tensor, bos: int) -> Tensor:
    flat = x.reshape(x.shape[0], -1).long()
    return torch.cat([torch.full_like(flat[:, :1], bos), flat[:, :-1]], 1)


def nll(model, x: Tensor, *, bos: int, **cond) -> Tensor:
    """-log p(x) per example (nats, a sum over positions) under a causal `model(tokens, None, **cond)`."""
    logits = model(_shifted(x, bos), None, **cond).reshape(x.shape[0], -1, model.num_outputs)
    return F.cross_entropy(logits.float().transpose(1, 2), x.reshape(x.shape[0], -1).long(), reduction="none").sum(1)


@torch.no_grad()
def sample(model, shape, *, bos: int, generator: Generators = None, device=None, **cond) -> Tensor:
    """Tokens of `shape` drawn one position at a time."""
    B, L = shape[0], int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    x = torch.zeros(B, L, dtype=torch.long, device=device)
    for i in range(L):
        logits = model(_shifted(x, bos), None, **cond).reshape(B, L, -1)[:, i]
        record_evaluation(B)
        x[:, i] = categorical(torch.softmax(logits.float(), -1), generator)
    return x.reshape(tuple(shape))
