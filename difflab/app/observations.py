"""The observations `difflab restore` and `difflab edit` work from: a task's operator from its options, the images
(files, or held-out images of the run's data with the observation simulated from them, so the truth is known),
the picture of an observation, and PSNR.

| task | operator (`difflab.inverse`) | options | an --image is |
|---|---|---|---|
| inpaint | `Mask`: everything but a box | --box TOP,LEFT,HEIGHT,WIDTH (default: the centre half) | the image, the box unknown |
| sr | `Downsample(factor)`: block averages | --factor (2) | the low-resolution image |
| deblur | `Blur(std)`: a Gaussian blur | --blur (1.0 pixels) | the blurred image |
| denoise | `Identity` | --noise (0.1) | the noisy image |
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TASKS = ("inpaint", "sr", "deblur", "denoise")
METHODS = ("pgdm", "dps", "repaint")


def operator(task: str, shape: tuple, *, box=None, factor: int = 2, blur: float = 1.0):
    """The task's operator on images of `shape` (C, H, W) (module doc); every option checked against the shape."""
    from ..inverse import Blur, Downsample, Identity, Mask

    C, H, W = shape
    if task == "inpaint":
        top, left, height, width = box if box is not None else (H // 4, W // 4, H // 2, W // 2)
        if not (0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= H and left + width <= W):
            raise ValueError(f"--box {top},{left},{height},{width} is not inside the {H}x{W} image: give TOP,LEFT,HEIGHT,WIDTH "
                             f"with TOP + HEIGHT <= {H} and LEFT + WIDTH <= {W}")
        if height * width == H * W:
            raise ValueError("--box covers the whole image: nothing would be observed")
        keep = torch.ones(shape, dtype=torch.bool)
        keep[:, top:top + height, left:left + width] = False
        return Mask(keep)
    if task == "sr":
        if factor < 2 or H % factor or W % factor:
            raise ValueError(f"--factor {factor}: super-resolution needs a factor >= 2 that divides {H} and {W}")
        return Downsample(factor)
    if task == "deblur":
        if not (0 < blur <= max(H, W) and math.isfinite(blur)):
            raise ValueError(f"--blur {blur}: a Gaussian blur's width in pixels, > 0 and at most the image's side")
        return Blur(blur)
    return Identity()


def picture(task: str, A, y: Tensor, shape: tuple) -> Tensor:
    """What an observation looks like at full size: the kept pixels (the box grey), the low-resolution image
    enlarged, the blurred or noisy image."""
    from ..data import upsample

    if task == "inpaint":
        return A.adjoint(y, shape)
    if task == "sr":
        return upsample(y, A.factor)
    return y.reshape(y.shape[0], *shape)


def read(files, task: str, A, shape: tuple) -> Tensor:
    """Image files as observations: each read at the size of the task's observation (module doc)."""
    from ..data import read_image

    C, H, W = shape
    f = A.factor if task == "sr" else 1
    what = (f"the observation of --task sr --factor {f} is the low-resolution image as it is: {f}x{f} block averages of "
            "the run's images, and so" if task == "sr" else f"the observation of --task {task} is an image of the run's size, and")
    images = torch.stack([read_image(p, C, H // f, W // f, exact=f"{what} it") for p in files])
    return images.flatten(1)[:, A.index] if task == "inpaint" else images


def observe(A, x: Tensor, noise: float, seed: int) -> Tensor:
    """y = A x + noise n, the noise from a seed of its own."""
    y = A(x)
    g = torch.Generator().manual_seed(seed)
    return y + noise * torch.randn(y.shape, generator=g, dtype=y.dtype) if noise > 0 else y


def psnr(x: Tensor, truth: Tensor) -> Tensor:
    """Per image, in dB on the [0, 1] scale (images in [-1, 1])."""
    mse = ((x.clamp(-1, 1) - truth) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))
