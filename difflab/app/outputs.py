"""Writing what a run drew: a picture (an image grid, or a scatter of 2-D points), arrays (.npz), a folder of PNGs
(one per image, for external FID tools) or lines of text (.txt), each written atomically, and never samples that
hold NaN or infinite values.

A kind says what its samples look like before it draws them (`FORMS`: which outputs they allow), so a wrong
--out is refused before any work; then it hands over `Samples`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .folders import check_output, is_folder, write_atomically

__all__ = ["Samples", "FORMS", "default_out", "check", "write"]

# what samples are -> the outputs they allow ("/" is a folder of PNGs)
FORMS = {"images": (".png", ".npz", "/"), "points": (".png", ".npz"), "vectors": (".npz",), "text": (".txt", ".npz")}


@dataclass
class Samples:
    """What a run drew, ready to write: `shows` is what a picture or a text file shows (images (N, C, H, W) in
    [-1, 1], points (N, 2), vectors, or lines of text), `arrays` what a .npz holds; `picture` replaces `shows` in a
    PNG grid when the picture shows more (a cascade's low-resolution images above its samples), with `nrow`
    columns; `summary` says how they were drawn, `preview` is what a command prints of them."""

    form: str
    shows: object
    arrays: dict = field(default_factory=dict)
    picture: torch.Tensor | None = None
    nrow: int | None = None
    summary: str = ""
    preview: list = field(default_factory=list)  # lines a command prints (the first text samples)


def default_out(form: str) -> Path:
    return Path("samples.txt" if form == "text" else "samples.png")


def check(out: Path, form: str, shape) -> None:
    """Refuse an output the samples cannot take (before anything is drawn)."""
    what = {"images": "these samples are images", "points": "these samples are 2-D points",
            "text": "these samples are text"}.get(form, f"these samples have shape {tuple(shape)}")
    if form == "vectors" and out.suffix == ".png":
        raise ValueError(f"cannot draw samples of shape {tuple(shape)} as a PNG; use --out FILE.npz")
    check_output(out, FORMS[form], what)


def _refuse_non_finite(samples: Samples) -> None:
    for name, value in [("samples", samples.shows), *samples.arrays.items()]:
        if torch.is_tensor(value) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise ValueError(f"the {name} hold {bad:,} NaN or infinite values (an extreme --guidance, or a diverged "
                                 "model); nothing was written")


def write(samples: Samples, out: Path) -> Path:
    """Write `samples` to `out` (.png, .npz, .txt, or a folder), atomically; refuses non-finite samples."""
    import numpy as np

    from .. import viz

    _refuse_non_finite(samples)
    suffix = out.suffix.lower()
    if is_folder(out):
        return viz.save_images(samples.shows, out)
    if suffix == ".npz":
        arrays = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in samples.arrays.items()}

        def save(tmp):
            with open(tmp, "wb") as f:  # a file object: NumPy adds no suffix of its own
                np.savez(f, **arrays)
        return write_atomically(out, save)
    if suffix == ".txt":
        return write_atomically(out, lambda tmp: tmp.write_text("\n".join(samples.shows) + "\n"))
    picture = samples.picture if samples.picture is not None else samples.shows
    if picture.ndim == 4:
        scale = max(1, 128 // picture.shape[-1])
        return write_atomically(out, lambda tmp: viz.save_image_grid(picture, tmp, nrow=samples.nrow, scale=scale))
    return write_atomically(out, lambda tmp: viz.scatter_grid({"": {f"{len(picture)} samples": picture}}, tmp))
