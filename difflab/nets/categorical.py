r"""Image networks over categorical pixels, for discrete diffusion of images: each pixel's level (one of
`num_states`) enters one-hot, and `num_outputs` logits per pixel and channel come out.
net(x (B, C, H, W) long, t, label=None) -> (B, C, H, W, num_outputs). The body is the U-Net or the DiT.

`output="logits"`: the body gives the K = num_outputs logits of each pixel freely. `output="logistic"`
(D3PM's truncated discretized logistic, for ordinal levels): the body gives two numbers (l, s) per pixel,
the levels k sit at c_k = -1 + 2k / (K - 1) with bins of width w = 2 / (K - 1), and

    mu = tanh(l + x_t),   1 / scale = exp(2 - s),
    p(x0 = k | x_t) proportional to sigmoid((c_k - mu + w/2) / scale) - sigmoid((c_k - mu - w/2) / scale),

renormalised over the K levels (the truncation), with x_t the pixel's own level on that scale (0 for a
[MASK] state): at the zero start the prediction is a bump around the noisy level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dit import DiT
from .unet import UNet

__all__ = ["CategoricalUNet", "CategoricalDiT", "OUTPUTS", "logistic_logits"]

OUTPUTS = ("logits", "logistic")


def logistic_logits(loc: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """Log-probabilities (up to a constant) of the K = `levels` bins under the logistic of centre `loc` (on
    [-1, 1]) and log-scale `log_scale` (module doc), shape (*loc.shape, K)."""
    centres = torch.linspace(-1.0, 1.0, levels, device=loc.device, dtype=loc.dtype) - loc[..., None]
    inv_scale = torch.exp(2.0 - log_scale)[..., None]
    half = 1.0 / (levels - 1)
    upper = F.logsigmoid(inv_scale * (centres + half))
    lower = F.logsigmoid(inv_scale * (centres - half))
    # log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log(1 - exp(log sigmoid(b) - log sigmoid(a)))
    return upper + torch.log(torch.clamp(-torch.expm1(lower - upper), min=1e-30))


class _OneHotImages(nn.Module):
    body_name = ""

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, body: nn.Module, output: str = "logits"):
        super().__init__()
        self.in_channels, self.num_states, self.num_outputs = int(in_channels), int(num_states), int(num_outputs)
        self.output = output
        setattr(self, self.body_name, body)  # the attribute keeps the checkpoints' parameter names

    @staticmethod
    def body_outputs(num_outputs: int, output: str) -> int:
        """Numbers per pixel and channel the body must give (module doc)."""
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        if output == "logistic" and num_outputs < 2:
            raise ValueError("the logistic output needs at least 2 levels")
        return 2 if output == "logistic" else int(num_outputs)

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected tokens of shape (batch, {self.in_channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        onehot = F.one_hot(x.long(), self.num_states).permute(0, 1, 4, 2, 3).reshape(B, C * self.num_states, H, W)
        out = getattr(self, self.body_name)(onehot.float(), t, label=label)
        if self.output == "logits":
            return out.reshape(B, C, self.num_outputs, H, W).permute(0, 1, 3, 4, 2)
        out = out.float().reshape(B, C, 2, H, W)
        K = self.num_outputs
        level = torch.where(x < K, x.float() * (2.0 / (K - 1)) - 1.0, torch.zeros_like(x, dtype=torch.float32))
        return logistic_logits(torch.tanh(out[:, :, 0] + level), out[:, :, 1], K)


class CategoricalUNet(_OneHotImages):
    """The U-Net over one-hot images (module doc); keywords as `UNet`'s."""

    body_name = "unet"

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, output: str = "logits", **unet):
        out = self.body_outputs(num_outputs, output)
        super().__init__(in_channels, num_states, num_outputs, UNet(in_channels * num_states, out_channels=in_channels * out, **unet),
                         output)


class CategoricalDiT(_OneHotImages):
    """The DiT over one-hot images (module doc); keywords as `DiT`'s."""

    body_name = "dit"

    def __init__(self, in_channels: int, num_states: int, num_outputs: int, output: str = "logits", **dit):
        out = self.body_outputs(num_outputs, output)
        super().__init__(in_channels, num_states, num_outputs, DiT(in_channels * num_states, out_channels=in_channels * out, **dit),
                         output)
