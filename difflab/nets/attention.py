r"""Cross-attention to a sequence of conditioning vectors (Rombach et al. 2022, Stable Diffusion; the notes'
"Guidance from text": a caption's token embeddings condition the denoiser through attention).

Queries come from the network's features (image tokens, or the pixels of a U-Net level), keys and values
from the context (B, L, D) — e.g. a sentence encoder's token embeddings — with a padding mask (B, L)
(True where a context position is real). A learned null key and value join every sequence (as
`nn.MultiheadAttention(add_bias_kv=True)`), so a query may attend to nothing, a row that is all padding is
still defined, and `context=None` means "no context": attention to the null alone. The output projection
starts at zero, so a fresh cross-attention layer adds nothing and the network it sits in starts as it would
without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossAttention", "check_context"]


def check_context(context: Tensor | None, mask: Tensor | None, batch: int, dim: int | None) -> tuple[Tensor | None, Tensor | None]:
    """Validate a context (B, L, dim) and its mask (B, L) for a network of context width `dim` (None: the
    network takes no context); returns them with the mask as booleans."""
    if dim is None:
        if context is not None:
            raise ValueError("this network takes no context (built without a context width): drop context=, or build it "
                             "with one for cross-attention")
        return None, None
    if context is None:
        if mask is not None:
            raise ValueError("context_mask was given without context=")
        return None, None
    if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != dim:
        raise ValueError(f"context must have shape ({batch}, length, {dim}), got {tuple(context.shape)}")
    if mask is not None:
        if mask.shape != context.shape[:2]:
            raise ValueError(f"context_mask must have shape {tuple(context.shape[:2])} (one flag per context position), "
                             f"got {tuple(mask.shape)}")
        mask = mask.bool()
    return context, mask


class CrossAttention(nn.Module):
    """Multi-head attention from queries x (B, N, width) to a context (B, L, context_dim) (module doc)."""

    def __init__(self, width: int, context_dim: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"the width ({width}) must be divisible by the number of heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_dim, 2 * width)
        self.null = nn.Parameter(torch.randn(2, width) * 0.02)  # the null key and value
        self.proj = nn.Linear(width, width)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, context: Tensor | None, mask: Tensor | None = None) -> Tensor:
        B, N, W = x.shape
        d = W // self.heads
        q = self.q(x).reshape(B, N, self.heads, d).transpose(1, 2)
        if context is None:
            kv = self.null.to(q.dtype).expand(B, 1, 2, W)
        else:
            kv = self.kv(context).reshape(B, -1, 2, W)
            kv = torch.cat([self.null.to(kv.dtype).expand(B, 1, 2, W), kv], dim=1)
        k, v = kv.to(q.dtype).reshape(B, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if mask is not None and context is not None:
            keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
            attn_mask = keep[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(a.transpose(1, 2).reshape(B, N, W))
