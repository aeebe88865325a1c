r"""Autoencoders for latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models": the first stage, a KL-regularised autoencoder).

`VAE` is a small convolutional variational autoencoder. The encoder maps an image x (C, H, W) to the mean
and log-variance of a diagonal Gaussian q(z | x) over latents of `latent_channels` x H/f x W/f, with
f = p * 2^(len(channel_mult) - 1) (p x p pixel patches folded into channels first, as the U-Net's patch stem,
then one stride-2 convolution per level after the first); the decoder mirrors it with nearest-neighbour
upsampling and unfolds the patches at the end. Residual blocks with GroupNorm and SiLU, no attention (the
images here are small). Contract of every autoencoder difflab uses:

    ae.posterior(x) -> (mean, logvar)    q(z | x), for training (`objectives.AutoencoderObjective`)
    ae.encode(x)    -> mean              the latent a diffusion model is trained on (deterministic)
    ae.decode(z)    -> x_hat             back to images
    ae.latent_shape(image_shape) -> (c, h, w)

`IdentityAutoencoder` is the exact check of the latent pipeline: latents are the images themselves.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VAE", "IdentityAutoencoder"]


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(c, 32), c)


class _Res(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
                                  _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class _Up(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VAE(nn.Module):
    """A convolutional KL-regularised autoencoder (module doc): `in_channels` -> `latent_channels` at 1/f of
    the side, f = 2^(len(channel_mult) - 1); `channels * m` features at each level, `num_res_blocks` residual
    blocks per level."""

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, channels: int = 32,
                 channel_mult: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1, patch_size: int = 1):
        super().__init__()
        if not channel_mult:
            raise ValueError("channel_mult needs at least one level")
        self.in_channels, self.latent_channels, self.patch_size = int(in_channels), int(latent_channels), int(patch_size)
        self.factor = self.patch_size * 2 ** (len(channel_mult) - 1)
        widths = [channels * m for m in channel_mult]
        folded = in_channels * self.patch_size ** 2
        enc: list[nn.Module] = [nn.PixelUnshuffle(self.patch_size), nn.Conv2d(folded, widths[0], 3, padding=1)]
        c = widths[0]
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(_Res(c, w))
                c = w
            if i < len(widths) - 1:
                enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        enc += [_Res(c, c), _norm(c), nn.SiLU(), nn.Conv2d(c, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, c, 3, padding=1), _Res(c, c)]
        for i, w in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks):
                dec.append(_Res(c, w))
                c = w
            if i > 0:
                dec.append(_Up(c))
        dec += [_norm(c), nn.SiLU(), nn.Conv2d(c, folded, 3, padding=1), nn.PixelShuffle(self.patch_size)]
        self.decoder = nn.Sequential(*dec)

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        c, h, w = image_shape
        if c != self.in_channels or h % self.factor or w % self.factor:
            raise ValueError(f"this autoencoder takes images of {self.in_channels} channel(s) with sides divisible by "
                             f"{self.factor}; got shape {tuple(image_shape)}")
        return self.latent_channels, h // self.factor, w // self.factor

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.latent_shape(x.shape[1:])
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)  # as LDM's DiagonalGaussianDistribution: exp() stays finite

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


class IdentityAutoencoder(nn.Module):
    """Latents are the images: with scale 1 a latent diffusion pipeline over it is the pixel model exactly."""

    def latent_shape(self, image_shape) -> tuple:
        return tuple(image_shape)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x.new_full(x.shape, -30.0)

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z
