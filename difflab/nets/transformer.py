r"""Transformer blocks with adaLN-Zero conditioning (Peebles & Xie 2023, DiT), and the networks built
from them for categorical data.

A block is pre-norm self-attention and an MLP, each modulated by the conditioning vector c (time and
class embeddings): h <- h + g1 * Attn(LN(h) (1 + s1) + b1), h <- h + g2 * MLP(LN(h) (1 + s2) + b2), with
(b1, s1, g1, b2, s2, g2) = Linear(SiLU(c)) initialised to zero, so every block starts as the identity.
(DiT also zeroes the output layer; `TokenTransformer` does not: see the comment there.)

- `TokenTransformer`: tokens (B, *positions) of `num_states` symbols -> logits (B, *positions,
  num_outputs); learned position embeddings and rotary ones in the attention (without the rotary ones a
  bidirectional model sat at the unigram entropy for thousands of steps: it could not find its neighbours); optional time and class conditioning; `causal=True` for an
  autoregressive model (each position sees itself and those before it).

(The networks over one-hot images are in `nets.categorical`; the DiT for images is `nets.dit`.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .attention import CrossAttention
from .embeddings import ClassEmbedding, time_embedding

__all__ = ["TransformerBlock", "TokenTransformer", "rotary_angles"]


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def rotary_angles(positions: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary position angles p * base^(-2i / head_dim), each (positions, head_dim / 2)
    (Su et al. 2021, RoFormer)."""
    if head_dim % 2:
        raise ValueError(f"rotary position embeddings need an even head width, got {head_dim}")
    freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * freqs[None]
    return angles.cos().float(), angles.sin().float()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs of features of q or k (B, heads, L, d) by their positions' angles: q.k then depends on
    the offset between positions, so attending to a neighbour is easy to learn."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).to(x.dtype)


# On a CPU, PyTorch's fused (flash) attention kernel is slower than plain matrix products for short sequences:
# a training step of the same network, math kernel against the fused one (2 cores, bf16, measured 2026-11-29):
# 16 tokens 11.7 / 7.9 steps/s, 49 tokens 5.0 / 2.9, 128 tokens 3.4 / 2.8, but 196 tokens 0.9 / 1.0.
SHORT_ON_CPU = 128


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, dropout: float = 0.0) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over (B, heads, L, d), causal or not; the faster kernel for the length."""
    if q.device.type == "cpu" and q.shape[-2] <= SHORT_ON_CPU:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)


class TransformerBlock(nn.Module):
    """Self-attention and MLP with adaLN-Zero modulation from a conditioning vector (module doc)."""

    def __init__(self, width: int, heads: int, cond_dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 causal: bool = False, zero_init: bool = True, context_dim: int | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"the width ({width}) must be divisible by the number of heads ({heads})")
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        # cross-attention to a context sequence (DiT's cross-attention variant, PixArt's placement: after
        # self-attention, not modulated, its output projection zero so the block still starts as the identity)
        self.cross = CrossAttention(width, context_dim, heads) if context_dim else None
        self.norm_cross = nn.LayerNorm(width, eps=1e-6) if context_dim else None
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.ada = nn.Linear(cond_dim, 6 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        if not zero_init:  # gates open at 1: a plain pre-norm block at the start
            with torch.no_grad():
                self.ada.bias[2 * width:3 * width] = 1.0
                self.ada.bias[5 * width:] = 1.0

    def forward(self, h: Tensor, c: Tensor, rotary: tuple[Tensor, Tensor] | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        B, L, W = h.shape
        b1, s1, g1, b2, s2, g2 = self.ada(F.silu(c))[:, None, :].chunk(6, dim=-1)
        q, k, v = self.qkv(_modulate(self.norm1(h), b1, s1)).reshape(B, L, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            q, k = _rotate(q, *rotary), _rotate(k, *rotary)
        a = attention(q, k, v, causal=self.causal, dropout=self.dropout if self.training else 0.0)
        h = h + g1 * self.proj(a.transpose(1, 2).reshape(B, L, W))
        if self.cross is not None:
            h = h + self.cross(self.norm_cross(h), context, context_mask)
        return h + g2 * self.mlp(_modulate(self.norm2(h), b2, s2))


class TokenTransformer(nn.Module):
    """Tokens -> logits per position (module doc). net(x, t=None, label=None)."""

    def __init__(self, num_states: int, num_outputs: int, positions: int, width: int = 256, depth: int = 6, heads: int = 4,
                 num_classes: int | None = None, time_conditioning: bool = True, causal: bool = False, dropout: float = 0.0,
                 time_embedding_kind: str = "sinusoidal"):
        super().__init__()
        self.num_states, self.num_outputs, self.positions = int(num_states), int(num_outputs), int(positions)
        # tokens and positions on the same scale (GPT-2's 0.02): with PyTorch's N(0, 1) token embedding the
        # positions are lost after the first LayerNorm and attention sees a bag of tokens
        self.token = nn.Embedding(self.num_states, width)
        nn.init.normal_(self.token.weight, std=0.02)
        self.position = nn.Parameter(torch.randn(self.positions, width) * 0.02)
        # each position also sees its neighbours' tokens from the start (left only when causal): without it a
        # masked position holds nothing about its target, and bidirectional training sat at the unigram
        # entropy for thousands of steps (measured: 4.11 bits/char after 3,400) before attention found the
        # neighbours; a PyTorch nn.TransformerEncoder does the same
        self.causal = causal
        self.neighbours = nn.Conv1d(width, width, 2 if causal else 3, padding=0 if causal else 1)
        self.time = nn.Sequential(time_embedding(time_embedding_kind, width), nn.Linear(width, width), nn.SiLU(),
                                  nn.Linear(width, width)) if time_conditioning else None
        self.classes = ClassEmbedding(num_classes, width) if num_classes else None
        self.null = nn.Parameter(torch.zeros(width))  # the conditioning vector of a network with neither
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, width, dropout=dropout, causal=causal, zero_init=False)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, self.num_outputs)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        # not zero, unlike DiT's: at a masked position the input says nothing about the target, so with a zero
        # output layer and identity blocks the gradient reaching the attention is zero too (a saddle that
        # masked diffusion never leaves, measured: 4.11 bits/char, the unigram entropy, after 3,400 steps)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)
        cos, sin = rotary_angles(self.positions, width // heads)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)

    def forward(self, x: Tensor, t: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        tokens = x.reshape(B, -1).long()
        if tokens.shape[1] != self.positions:
            raise ValueError(f"this network takes {self.positions} tokens per example, got {tokens.shape[1]} (shape {tuple(x.shape)})")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.num_states):
            raise ValueError(f"tokens must lie in 0..{self.num_states - 1}")
        e = self.token(tokens)
        near = F.pad(e.transpose(1, 2), (1, 0)) if self.causal else e.transpose(1, 2)
        h = e + self.position + self.neighbours(near).transpose(1, 2)
        c = self.null.expand(B, -1)
        if self.time is not None:
            if t is None:
                raise ValueError("this network is conditioned on time: give t")
            t = torch.as_tensor(t, device=x.device, dtype=torch.float32)
            c = c + self.time(t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(B))
        if self.classes is not None:
            c = c + self.classes(label, B, x.device)
        for block in self.blocks:
            h = block(h, c, (self.rotary_cos, self.rotary_sin))
        shift, scale = self.ada(F.silu(c))[:, None, :].chunk(2, dim=-1)
        return self.out(_modulate(self.norm(h), shift, scale)).reshape(*x.shape, self.num_outputs)
