"""Pictures: what people would rather look at than tables. Matplotlib, written to files (no screen)."""

from __future__ import annotations

from pathlib import Path

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_grid(panels: dict[str, dict[str, torch.Tensor]], out: str | Path, *, reference: torch.Tensor | None = None,
                 subtitles: dict[str, dict[str, str]] | None = None, title: str = "", lim: float | None = None) -> Path:
    """A grid of 2-D scatter plots: one row per key of `panels`, one column per inner key.

    `reference` (e.g. the data) is drawn faintly behind every panel; `subtitles[row][col]` is
    printed under each panel's name (e.g. its distance to the data).
    """
    plt = _plt()
    rows = list(panels)
    cols = list(dict.fromkeys(c for r in rows for c in panels[r]))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.4 * len(cols), 2.5 * len(rows)), squeeze=False)
    if lim is None:
        pts = torch.cat([p.flatten(0, -2) for r in rows for p in panels[r].values()] + ([reference] if reference is not None else []))
        lim = float(pts.abs().quantile(0.995)) * 1.1
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
            if reference is not None:
                ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.85", rasterized=True)
            if c in panels[r]:
                x = panels[r][c].detach().cpu()
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, c="C0", rasterized=True)
            sub = (subtitles or {}).get(r, {}).get(c, "")
            ax.set_title(f"{c}\n{sub}" if sub else c, fontsize=8)
            if j == 0:
                ax.set_ylabel(r, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1):
    """A PIL image tiling images (N, C, H, W) in [-1, 1] into a grid (grey or RGB), optionally enlarged."""
    from PIL import Image

    from .data import to_uint8

    x = to_uint8(images.detach().cpu().float())
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(round(n**0.5)))
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    arr = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    im = Image.fromarray(arr, mode="L" if c == 1 else "RGB")
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def save_image_grid(images: torch.Tensor, out: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, nrow, scale=scale).save(out)
    return out


def save_gif(frames: list[torch.Tensor], out: str | Path, nrow: int | None = None, scale: int = 1,
             ms_per_frame: int = 80, hold_last: int = 15) -> Path:
    """An animated GIF of image grids (e.g. the reverse process, noise to data); the last frame is held."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ims = [image_grid(f, nrow, scale=scale) for f in frames]
    ims += [ims[-1]] * hold_last
    ims[0].save(out, save_all=True, append_images=ims[1:], duration=ms_per_frame, loop=0)
    return out


def loss_curve(csv_path: str | Path, out: str | Path, title: str = "training loss") -> Path:
    """Plot the loss column of a training log.csv (log scale)."""
    import csv

    plt = _plt()
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, loss, lw=1.2)
    ax.set_yscale("log"), ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
