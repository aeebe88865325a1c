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
import torch.nn.functional as F
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


class LowResConditioning(nn.Module):
    """Super-resolution conditioning (Ho et al. 2021, "Cascaded Diffusion Models"; Saharia et al. 2022): the
    low-resolution image (B, C, h, w) is upsampled (nearest) to x_t's size and concatenated to it as `channels`
    extra input channels (`concat`), and its noise-conditioning augmentation level (a time on the path, 0 for
    a clean image) is embedded like the time and added to the time embedding (`embed`; its last layer starts
    at zero, so the level is ignored until training makes use of it)."""

    def __init__(self, channels: int, emb_dim: int, base: int, kind: str = "sinusoidal"):
        super().__init__()
        self.channels = int(channels)
        self.level = nn.Sequential(time_embedding(kind, base), nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        nn.init.zeros_(self.level[3].weight)
        nn.init.zeros_(self.level[3].bias)

    def concat(self, x: Tensor, low_res: Tensor | None) -> Tensor:
        B, _, H, W = x.shape
        if low_res is None:
            raise ValueError("this is a super-resolution network: give the low-resolution image as low_res= (B, "
                             f"{self.channels}, h, w)")
        if low_res.ndim != 4 or low_res.shape[0] not in (1, B) or low_res.shape[1] != self.channels or H % low_res.shape[2] \
                or W % low_res.shape[3] or H // low_res.shape[2] != W // low_res.shape[3]:
            raise ValueError(f"low_res must be (batch, {self.channels}, h, w) with h, w dividing {H}, {W} by the same factor; "
                             f"got {tuple(low_res.shape)}")
        up = F.interpolate(low_res.to(x.dtype), size=(H, W), mode="nearest").expand(B, -1, -1, -1)
        return torch.cat([x, up], dim=1)

    def embed(self, level: Tensor | None, batch: int, device) -> Tensor:
        level = torch.zeros((), device=device) if level is None else torch.as_tensor(level, device=device, dtype=torch.float32)
        return self.level(level.reshape(-1).expand(batch) if level.numel() == 1 else level.reshape(batch))
