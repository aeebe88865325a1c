"""A network's logits as a categorical denoiser: `(x_t, t, **cond) -> p(x0 | x_t)`, softmax over the last
axis in float64 (whatever precision the network ran in). Not float32: a probability the network drives into
float32's denormals (a logit 100 below the others) makes the bound's gradient -q / p overflow to inf, and the
softmax's backward turns that into NaN; in float64 the same gradient stays finite."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_denoiser"]


class CategoricalDenoiser:
    def __init__(self, net):
        self.net = net

    def __call__(self, x_t: Tensor, t, **cond) -> Tensor:
        return torch.softmax(self.net(x_t, t, **cond).double(), dim=-1)

    def __repr__(self) -> str:
        return f"CategoricalDenoiser({type(self.net).__name__})"


def as_denoiser(net) -> CategoricalDenoiser:
    """p(x0 | x_t) = softmax(net(x_t, t, **cond)) per position."""
    return CategoricalDenoiser(net)
