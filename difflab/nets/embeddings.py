r"""Time and class embeddings.

- Sinusoidal (Vaswani et al. 2017; DDPM): for t in [0, 1] scaled by `scale` (1000, a DDPM step index),
  e_i = sin(scale t w_i), cos(scale t w_i) with w_i = max_period^(-i / (dim/2)).
- Random Fourier features (Tancik et al. 2020; Song et al. 2021's NCSN++): fixed w ~ N(0, s^2),
  e = [sin(2 pi w t), cos(2 pi w t)].
- Class embedding with a learned null class (index `num_classes`): label -1 (or no labels at all)
  means "unconditional", which classifier-free guidance trains by dropping labels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._checks import choose


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        self.scale = float(scale)
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        arg = (self.scale * t.to(self.freqs.dtype))[:, None] * self.freqs[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class FourierEmbedding(nn.Module):
    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        w = torch.randn(dim // 2, generator=torch.Generator().manual_seed(seed)) * scale
        self.register_buffer("w", w)  # fixed, but saved so a checkpoint carries its frequencies

    def forward(self, t: Tensor) -> Tensor:
        arg = 2 * math.pi * t.to(self.w.dtype)[:, None] * self.w[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


TIME_EMBEDDINGS = {"sinusoidal": SinusoidalEmbedding, "fourier": FourierEmbedding}


def time_embedding(kind: str, dim: int) -> nn.Module:
    return TIME_EMBEDDINGS[choose(kind, TIME_EMBEDDINGS, "time embedding")](dim)


class ClassEmbedding(nn.Module):
    """Labels 0..num_classes-1, and -1 for the learned null class (also used when labels are None)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = int(num_classes)
        self.table = nn.Embedding(self.num_classes + 1, dim)

    def forward(self, labels: Tensor | None, batch: int, device) -> Tensor:
        if labels is None:
            labels = torch.full((batch,), -1, dtype=torch.long, device=device)
        labels = labels.long()
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if bool(((labels < -1) | (labels >= self.num_classes)).any()):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1} (or -1 for unconditional)")
        return self.table(torch.where(labels < 0, self.num_classes, labels))


class VectorEmbedding(nn.Module):
    """A conditioning vector (B, in_dim) — e.g. a sentence encoder's pooled embedding of a caption — projected
    to the width of the time embedding and added to it (Imagen adds its pooled text embedding so). None
    (no vector) adds nothing: the unconditional network."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.in_dim = int(in_dim)
        self.proj = nn.Sequential(nn.Linear(self.in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, v: Tensor | None, batch: int) -> Tensor | float:
        if v is None:
            return 0.0
        if v.shape != (batch, self.in_dim):
            raise ValueError(f"the pooled conditioning vector must have shape ({batch}, {self.in_dim}), got {tuple(v.shape)}")
        return self.proj(v.to(self.proj[0].weight.dtype))
