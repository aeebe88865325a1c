r"""Latent diffusion (Rombach et al. 2022): a diffusion model over the latents of an autoencoder.

An autoencoder (`nets.VAE`, trained first) maps an image x to a latent E(x) (its posterior mean) and back
with D. The diffusion model is trained on the scaled latents

    z = s * E(x),    s = 1 / std(E(x) over the training set)    (LDM's `scale_factor`),

so that z has unit variance like the path's prior N(0, I): without it a path whose noise is scaled for
unit-variance data would drown small latents at once or never reach large ones, and decoding random
N(0, I) latents would give noise. Sampling runs any sampler over z (the latent denoiser is an ordinary
denoiser: guidance and every sampler apply unchanged); the samples become images by D(z / s).

With the identity autoencoder and s = 1 this is the pixel model exactly (`tests/test_latent.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Latent", "LatentDenoiser", "measure_scale", "encode_images", "decode_images"]


class Latent:
    """An autoencoder and the scale of its latents: `encode(x) = scale * E(x)`, `decode(z) = D(z / scale)`."""

    def __init__(self, autoencoder, scale: float = 1.0):
        if not (scale > 0 and scale < float("inf")):
            raise ValueError(f"the latent scale must be > 0 and finite, got {scale}")
        self.autoencoder, self.scale = autoencoder, float(scale)

    def encode(self, x: Tensor) -> Tensor:
        return self.autoencoder.encode(x) * self.scale

    def decode(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode(z / self.scale)

    def latent_shape(self, image_shape) -> tuple:
        return tuple(self.autoencoder.latent_shape(tuple(image_shape)))

    def __repr__(self) -> str:
        return f"Latent({type(self.autoencoder).__name__}, scale={self.scale:.6g})"


class LatentDenoiser:
    """A denoiser over scaled latents, `D(z_t, t, **cond) -> E[z0 | z_t]`, that also knows how to turn its
    samples into images (`decode`) and images into its latents (`encode`)."""

    def __init__(self, denoiser, latent: Latent):
        self.denoiser, self.latent = denoiser, latent

    def __call__(self, z: Tensor, t, **cond) -> Tensor:
        return self.denoiser(z, t, **cond)

    def decode(self, z: Tensor) -> Tensor:
        return self.latent.decode(z)

    def encode(self, x: Tensor) -> Tensor:
        return self.latent.encode(x)

    def __getattr__(self, name):  # nfe counters and other attributes of the wrapped denoiser
        if name in ("denoiser", "latent"):
            raise AttributeError(name)
        return getattr(self.denoiser, name)


@torch.no_grad()
def encode_images(autoencoder, images: Tensor, *, batch_size: int = 500, device="cpu", progress: bool = False) -> Tensor:
    """E(x) for every image, in batches, on `device`; returned on the CPU in float32."""
    from tqdm.auto import tqdm

    out = []
    steps = range(0, len(images), batch_size)
    for i in tqdm(steps, desc="encoding", disable=not progress, leave=False):
        out.append(autoencoder.encode(images[i:i + batch_size].to(device)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_images(decode, z: Tensor, *, batch_size: int = 500, device="cpu") -> Tensor:
    """decode(z) in batches on `device`, clipped to the images' range [-1, 1], on the CPU in float32."""
    return torch.cat([decode(z[i:i + batch_size].to(device)).clamp(-1, 1).float().cpu() for i in range(0, len(z), batch_size)])


def measure_scale(latents: Tensor) -> float:
    """1 / the standard deviation of all latent values (LDM's `scale_factor`), so s * latents has unit variance."""
    std = float(latents.double().std())
    if not std > 0:
        raise ValueError("the latents have no spread (standard deviation 0): the autoencoder is not trained")
    return 1.0 / std
