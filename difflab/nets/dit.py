r"""The Diffusion Transformer (Peebles & Xie 2023, DiT): an image denoiser made of transformer blocks.

An image (B, C, H, W) is cut into p x p patches, each linearly embedded (a stride-p convolution) to a
token of `width` features, plus fixed 2-D sine-cosine position embeddings (DiT's, so any H, W divisible
by p works); `depth` blocks of `TransformerBlock` (self-attention and MLP, adaLN-Zero modulation by the
conditioning vector c = time embedding + class embedding (+ a pooled conditioning vector)); a final
adaLN-modulated LayerNorm and a linear layer to p * p * C values per token, unpatchified to (B, C, H, W).

adaLN-Zero: every modulation and the output layer start at zero, so a fresh DiT outputs exactly zero and
each block is the identity (DiT's Table 4: the best of its conditioning schemes). With `context_dim` each
block also cross-attends to a context sequence (B, L, context_dim), e.g. a caption's token embeddings.

net(x_t, t, label=None, context=None, context_mask=None, pooled=None) -> a tensor of x_t's shape. The
network predicts whatever the objective asks of it (eps, x0, v, velocity); guidance acts on the denoiser
built from it, so on every output channel (DiT's reference `forward_with_cfg` guides only the first three).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import check_context
from .embeddings import ClassEmbedding, LowResConditioning, VectorEmbedding, time_embedding
from .transformer import TransformerBlock, _modulate

__all__ = ["DiT", "sincos_2d"]


@functools.lru_cache(maxsize=16)  # the same few grids every forward pass; callers add it, never change it
def sincos_2d(width: int, h: int, w: int) -> Tensor:
    """Fixed 2-D position embeddings (h * w, width): half the features the sine-cosine embedding of the row,
    half of the column, frequencies 10000^(-i / (width / 4)) (DiT's get_2d_sincos_pos_embed)."""
    if width % 4:
        raise ValueError(f"2-D sine-cosine position embeddings need a width divisible by 4, got {width}")
    freqs = 10000.0 ** (-torch.arange(width // 4, dtype=torch.float64) / (width / 4))

    def one(pos: Tensor) -> Tensor:
        a = pos[:, None] * freqs[None]
        return torch.cat([a.sin(), a.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.cat([one(rows.reshape(-1)), one(cols.reshape(-1))], dim=1).float()


class DiT(nn.Module):
    """A Diffusion Transformer over images (module doc)."""

    def __init__(self, in_channels: int = 1, patch_size: int = 2, width: int = 192, depth: int = 6, heads: int = 3,
                 num_classes: int | None = None, time_embedding_kind: str = "sinusoidal", out_channels: int | None = None,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, context_dim: int | None = None, pooled_dim: int | None = None,
                 low_res_channels: int = 0):
        super().__init__()
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if width % heads:
            raise ValueError(f"the width ({width}) must be divisible by the number of heads ({heads})")
        self.in_channels, self.patch, self.width = int(in_channels), int(patch_size), int(width)
        self.out_channels = int(out_channels or in_channels)
        self.context_dim = int(context_dim) if context_dim else None
        p = self.patch
        self.embed = nn.Conv2d(self.in_channels + low_res_channels, width, p, stride=p)
        self.time = nn.Sequential(time_embedding(time_embedding_kind, width), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, width))
        self.classes = ClassEmbedding(num_classes, width) if num_classes else None
        self.pooled = VectorEmbedding(pooled_dim, width) if pooled_dim else None
        self.low_res = LowResConditioning(low_res_channels, width, width, time_embedding_kind) if low_res_channels else None
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, width, mlp_ratio, dropout, zero_init=True,
                                                     context_dim=self.context_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, p * p * self.out_channels)
        self._init()

    def _init(self) -> None:
        # DiT's initialisation: Xavier-uniform linear layers (the patch embedding as one), N(0, 0.02) class and
        # time embeddings, and zero for every adaLN modulation, every cross-attention output and the output layer
        zero = {id(m) for b in self.blocks for m in (b.ada, *([b.cross.proj] if b.cross is not None else []))}
        zero |= {id(self.ada), id(self.out)} | ({id(self.low_res.level[3])} if self.low_res is not None else set())
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if id(m) in zero:
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.embed.bias)
        nn.init.normal_(self.time[1].weight, std=0.02)
        nn.init.normal_(self.time[3].weight, std=0.02)
        if self.classes is not None:
            nn.init.normal_(self.classes.table.weight, std=0.02)

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None, pooled: Tensor | None = None, low_res: Tensor | None = None,
                low_res_level: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DiT expects images of shape (batch, {self.in_channels}, H, W); got {tuple(x.shape)}")
        B, _, H, W = x.shape
        p = self.patch
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} must be divisible by the patch size {p}")
        context, context_mask = check_context(context, context_mask, B, self.context_dim)
        if pooled is not None and self.pooled is None:
            raise ValueError("this network takes no pooled conditioning vector: drop pooled=, or build it with pooled_dim")
        h, w = H // p, W // p
        if self.low_res is None and low_res is not None:
            raise ValueError("this network takes no low-resolution image: drop low_res=, or build it with low_res_channels")
        tokens = self.embed(x if self.low_res is None else self.low_res.concat(x, low_res)).flatten(2).transpose(1, 2) + sincos_2d(self.width, h, w).to(x.device)
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
        c = self.time(t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(B))
        if self.classes is not None:
            c = c + self.classes(label, B, x.device)
        if self.pooled is not None:
            c = c + self.pooled(pooled, B)
        if self.low_res is not None:
            c = c + self.low_res.embed(low_res_level, B, x.device)
        for block in self.blocks:
            tokens = block(tokens, c, None, context, context_mask)
        shift, scale = self.ada(F.silu(c))[:, None, :].chunk(2, dim=-1)
        out = self.out(_modulate(self.norm(tokens), shift, scale))  # (B, h * w, p * p * C)
        out = out.reshape(B, h, w, p, p, self.out_channels).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(B, self.out_channels, H, W)
