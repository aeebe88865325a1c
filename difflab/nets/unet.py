r"""A U-Net for images (Ronneberger et al. 2015, as used by Ho et al. 2020 and Dhariwal & Nichol 2021).

Residual blocks whose GroupNorm scale and shift come from the time (+ class) embedding (adaptive
group norm, "FiLM"), self-attention at the chosen low resolutions and in the middle, skip
connections from every block on the way down to the matching block on the way up, and zero-
initialised output layers so every residual branch starts as the identity. The network knows
nothing about diffusion: net(x_t, t, label=None) -> a tensor of x's shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import CrossAttention, check_context
from .embeddings import ClassEmbedding, LowResConditioning, VectorEmbedding, time_embedding


def _groups(channels: int, max_groups: int = 32) -> int:
    return math.gcd(channels, max_groups)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)  # scale and shift of the second norm
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class SpatialCrossAttention(nn.Module):
    """Cross-attention from every pixel of a feature map to a context sequence (nets.attention), residual;
    the U-Net's attention levels get one after their self-attention (Stable Diffusion's placement)."""

    def __init__(self, channels: int, context_dim: int, head_dim: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = CrossAttention(channels, context_dim, max(1, channels // head_dim))

    def forward(self, x: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
        B, C, H, W = x.shape
        h = self.attn(self.norm(x).flatten(2).transpose(1, 2), context, mask)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


def attention_layers(c: int, context_dim: int | None) -> list:
    return [Attention(c)] + ([SpatialCrossAttention(c, context_dim)] if context_dim else [])


def down_path(channels: int, channel_mult, num_res_blocks: int, attn: set, emb_dim: int, dropout: float,
              context_dim: int | None = None):
    """The encoding half of a U-Net: residual blocks (with attention at the levels in `attn`, and
    cross-attention to a context there when `context_dim` is given) and strided downsampling between levels;
    returns (blocks, the channels of every skip, the last width)."""
    down, skips, c = nn.ModuleList(), [channels], channels
    for lv, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            block = nn.ModuleList([ResBlock(c, channels * mult, emb_dim, dropout)])
            c = channels * mult
            if lv in attn:
                block.extend(attention_layers(c, context_dim))
            down.append(block)
            skips.append(c)
        if lv < len(channel_mult) - 1:
            down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
            skips.append(c)
    return down, skips, c


def run_block(block, h: Tensor, emb: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    for layer in block:
        if isinstance(layer, ResBlock):
            h = layer(h, emb)
        elif isinstance(layer, SpatialCrossAttention):
            h = layer(h, context, mask)
        else:
            h = layer(h)
    return h


class UNet(nn.Module):
    """U-Net over `len(channel_mult)` resolution levels.

    channels: base width; channel_mult: width multiplier per level; num_res_blocks: residual blocks
    per level; attention_levels: levels (0 = full resolution) with self-attention (the middle block
    always has it); num_classes: adds a class embedding with a learned null class (label -1);
    context_dim: cross-attention to a context sequence (B, L, context_dim) after every self-attention
    (`context=`, `context_mask=`); pooled_dim: a conditioning vector (B, pooled_dim) added to the time
    embedding (`pooled=`); low_res_channels: a super-resolution network, given the low-resolution image
    (`low_res=`, upsampled and concatenated to x_t) and its noise-augmentation level (`low_res_level=`)
    (`embeddings.LowResConditioning`).
    patch_size p > 1 folds each p x p patch into channels before the first layer (pixel unshuffle)
    and unfolds the output the same way, so the whole network runs at 1/p of the resolution: on
    small CPUs most of a U-Net's time is its full-resolution convolutions (Hoogeboom et al. 2023's
    "simple diffusion" downsamples first for the same reason). Input sizes must be divisible by
    p * 2^(levels - 1).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, channel_mult=(1, 2, 2), num_res_blocks: int = 2,
                 attention_levels=(-1,), dropout: float = 0.0, num_classes: int | None = None,
                 time_embedding_kind: str = "sinusoidal", out_channels: int | None = None, patch_size: int = 1,
                 context_dim: int | None = None, pooled_dim: int | None = None, low_res_channels: int = 0):
        super().__init__()
        levels = len(channel_mult)
        if levels < 1 or num_res_blocks < 1:
            raise ValueError("need at least one level and one residual block per level")
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        self.patch = p = int(patch_size)
        attn = {lv % levels for lv in attention_levels}
        self.in_channels, self.levels = in_channels, levels
        emb_dim = 4 * channels
        self.time = nn.Sequential(time_embedding(time_embedding_kind, channels), nn.Linear(channels, emb_dim), nn.SiLU(),
                                  nn.Linear(emb_dim, emb_dim))
        self.classes = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.context_dim = int(context_dim) if context_dim else None
        self.pooled = VectorEmbedding(pooled_dim, emb_dim) if pooled_dim else None
        self.low_res = LowResConditioning(low_res_channels, emb_dim, channels, time_embedding_kind) if low_res_channels else None
        self.conv_in = nn.Conv2d((in_channels + low_res_channels) * p * p, channels, 3, padding=1)

        self.down, skips, c = down_path(channels, channel_mult, num_res_blocks, attn, emb_dim, dropout, self.context_dim)

        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout), *attention_layers(c, self.context_dim),
                                  ResBlock(c, c, emb_dim, dropout)])

        self.up = nn.ModuleList()
        for lv, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(c + skips.pop(), channels * mult, emb_dim, dropout)])
                c = channels * mult
                if lv in attn:
                    block.extend(attention_layers(c, self.context_dim))
                if lv > 0 and i == num_res_blocks:
                    block.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    block.append(nn.Conv2d(c, c, 3, padding=1))
                self.up.append(block)
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), _zero(nn.Conv2d(c, (out_channels or in_channels) * p * p, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None, pooled: Tensor | None = None, low_res: Tensor | None = None,
                low_res_level: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape if x.ndim == 4 else (None,) * 4
        if x.ndim != 4 or C != self.in_channels:
            raise ValueError(f"UNet expects images of shape (batch, {self.in_channels}, H, W); got {tuple(x.shape)}")
        f = self.patch * 2 ** (self.levels - 1)
        if H % f or W % f:
            raise ValueError(f"image size {H}x{W} must be divisible by {f} for a U-Net with {self.levels} levels"
                             + (f" and patch size {self.patch}" if self.patch > 1 else ""))
        context, context_mask = check_context(context, context_mask, B, self.context_dim)
        if pooled is not None and self.pooled is None:
            raise ValueError("this network takes no pooled conditioning vector: drop pooled=, or build it with pooled_dim")
        emb = self.time(t.reshape(-1).expand(B) if t.numel() == 1 else t)
        if self.classes is not None:
            emb = emb + self.classes(label, B, x.device)
        if self.pooled is not None:
            emb = emb + self.pooled(pooled, B)
        if self.low_res is not None:
            x = self.low_res.concat(x, low_res)
            emb = emb + self.low_res.embed(low_res_level, B, x.device)
        elif low_res is not None:
            raise ValueError("this network takes no low-resolution image: drop low_res=, or build it with low_res_channels")
        h = self.conv_in(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        hs = [h]
        for block in self.down:
            h = run_block(block, h, emb, context, context_mask)
            hs.append(h)
        h = run_block(self.mid, h, emb, context, context_mask)
        for block in self.up:
            h = run_block(block, torch.cat([h, hs.pop()], dim=1), emb, context, context_mask)
        out = self.out(h)
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


class NoisyClassifier(nn.Module):
    """A noise-conditional classifier for images (Dhariwal & Nichol 2021's "half U-Net"): the U-Net's time
    embedding, encoder and middle block, then GroupNorm, SiLU, global average pooling and a linear layer to
    class logits. net(x_t, t) -> logits (B, num_classes)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 32, channel_mult=(1, 2, 2), num_res_blocks: int = 1,
                 attention_levels=(-1,), dropout: float = 0.0, time_embedding_kind: str = "sinusoidal", patch_size: int = 1):
        super().__init__()
        levels = len(channel_mult)
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        self.patch, self.in_channels, self.levels = int(patch_size), in_channels, levels
        emb_dim = 4 * channels
        self.time = nn.Sequential(time_embedding(time_embedding_kind, channels), nn.Linear(channels, emb_dim), nn.SiLU(),
                                  nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels * self.patch**2, channels, 3, padding=1)
        self.down, _, c = down_path(channels, channel_mult, num_res_blocks, {lv % levels for lv in attention_levels}, emb_dim,
                                    dropout)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout), Attention(c), ResBlock(c, c, emb_dim, dropout)])
        self.head = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c, num_classes))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"the classifier expects images of shape (batch, {self.in_channels}, H, W); got {tuple(x.shape)}")
        f = self.patch * 2 ** (self.levels - 1)
        if x.shape[2] % f or x.shape[3] % f:
            raise ValueError(f"image size {x.shape[2]}x{x.shape[3]} must be divisible by {f}")
        emb = self.time(t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)
        h = self.conv_in(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        for block in self.down:
            h = run_block(block, h, emb)
        return self.head(run_block(self.mid, h, emb))
