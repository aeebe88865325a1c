"""A residual MLP for vector data (toy 2-D sets, tabular data), conditioned on time (and labels)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .embeddings import ClassEmbedding, time_embedding


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.net(h + emb)


class MLP(nn.Module):
    """net(x_t, t, label=None) -> prediction of x's shape, for x of shape (B, dim) (or `out_dim` outputs:
    the logits of a noise-conditional classifier)."""

    def __init__(self, dim: int, width: int = 256, depth: int = 3, time_embedding_kind: str = "sinusoidal",
                 num_classes: int | None = None, out_dim: int | None = None):
        super().__init__()
        self.dim = dim
        self.time = nn.Sequential(time_embedding(time_embedding_kind, width), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, width))
        self.classes = ClassEmbedding(num_classes, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, out_dim or dim))

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLP expects inputs of shape (batch, {self.dim}); got {tuple(x.shape)}")
        emb = self.time(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)
        if self.classes is not None:
            emb = emb + self.classes(label, x.shape[0], x.device)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
