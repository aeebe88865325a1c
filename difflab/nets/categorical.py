"""Image networks over categorical pixels, for discrete diffusion of images: each pixel's level (one of
`num_states`) enters one-hot, and `num_outputs` logits per pixel and channel come out.
net(x (B, C, H, W) long, t, label=None) -> (B, C, H, W, num_outputs). The body is the U-Net or the DiT."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .dit import DiT
from .unet import UNet

__all__ = ["CategoricalUNet", "CategoricalDiT"]


class _OneHotImages(nn.Module):
    body_name = ""

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, body: nn.Module):
        super().__init__()
        self.in_channels, self.num_states, self.num_outputs = int(in_channels), int(num_states), int(num_outputs)
        setattr(self, self.body_name, body)  # the attribute keeps the checkpoints' parameter names

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected tokens of shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        onehot = F.one_hot(x.long(), self.num_states).permute(0, 1, 4, 2, 3).reshape(B, C * self.num_states, H, W)
        out = getattr(self, self.body_name)(onehot.float(), t, label=label)
        return out.reshape(B, C, self.num_outputs, H, W).permute(0, 1, 3, 4, 2)


class CategoricalUNet(_OneHotImages):
    """The U-Net over one-hot images (module doc); keywords as `UNet`'s."""

    body_name = "unet"

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, **unet):
        super().__init__(in_channels, num_states, num_outputs,
                         UNet(in_channels * num_states, out_channels=in_channels * num_outputs, **unet))


class CategoricalDiT(_OneHotImages):
    """The DiT over one-hot images (module doc); keywords as `DiT`'s."""

    body_name = "dit"

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, **dit):
        super().__init__(in_channels, num_states, num_outputs,
                         DiT(in_channels * num_states, out_channels=in_channels * num_outputs, **dit))
