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


def save_images(images: torch.Tensor, directory: str | Path, prefix: str = "") -> Path:
    """One lossless PNG per image (N, C, H, W) in [-1, 1] at its own resolution, named 000000.png, ...:
    the folder layout external tools (pytorch-fid, clean-fid, torch-fidelity) read."""
    from PIL import Image

    from .data import to_uint8

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"save_images takes images (N, 1 or 3, H, W); got shape {tuple(images.shape)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    x = to_uint8(images.detach().cpu().float())
    for i, im in enumerate(x):
        arr = im[0].numpy() if im.shape[0] == 1 else im.permute(1, 2, 0).numpy()
        Image.fromarray(arr, mode="L" if im.shape[0] == 1 else "RGB").save(directory / f"{prefix}{i:06d}.png")
    return directory


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


def _save(fig, out: str | Path, dpi: int = 110, title: str = "") -> Path:
    """Title, tighten, write and close a figure."""
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    _plt().close(fig)
    return out


def _square(ax, lim: float, name: str) -> None:
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal"), ax.set_title(name, fontsize=10)
    ax.set_xticks([]), ax.set_yticks([])


def _density_image(ax, log_prob, lim: float, res: int = 200):
    """Shade the square [-lim, lim]^2 by the density exp(log_prob) (darker = denser)."""
    u = torch.linspace(-lim, lim, res, dtype=torch.float64)
    X, Y = torch.meshgrid(u, u, indexing="xy")
    p = log_prob(torch.stack([X.flatten(), Y.flatten()], 1)).exp().reshape(res, res)
    ax.imshow(p.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="Oranges", alpha=0.8)


def score_fields(fields: dict, out: str | Path, *, lim: float, log_prob=None, n: int = 21, title: str = "") -> Path:
    """Quiver plots of 2-D vector fields side by side, e.g. the true score and a learned one.

    `fields` maps a panel name to a function (N, 2) -> (N, 2) evaluated on an n x n grid over
    [-lim, lim]^2; arrows are drawn with a common scale (their lengths compare across panels).
    `log_prob` shades the data density behind every panel.
    """
    plt = _plt()
    u = torch.linspace(-lim, lim, n, dtype=torch.float64)
    X, Y = torch.meshgrid(u, u, indexing="xy")
    pts = torch.stack([X.flatten(), Y.flatten()], 1)
    vals = {k: f(pts).detach().cpu().to(torch.float64) for k, f in fields.items()}
    # arrows as directions, length growing with the norm but saturating: large far-field scores stay readable
    fig, axes = plt.subplots(1, len(vals), figsize=(4.0 * len(vals), 4.0), squeeze=False)
    for ax, (name, v) in zip(axes[0], vals.items()):
        if log_prob is not None:
            _density_image(ax, log_prob, lim)
        norm = v.norm(dim=1, keepdim=True).clamp_min(1e-12)
        d = v / norm * torch.log1p(norm)
        ax.quiver(X.numpy(), Y.numpy(), d[:, 0].reshape(n, n).numpy(), d[:, 1].reshape(n, n).numpy(),
                  angles="xy", scale_units="xy", scale=torch.log1p(norm).max().item() / (1.6 * lim / n), width=0.004)
        _square(ax, lim, name)
    return _save(fig, out, title=title)


def trajectories(panels: dict, out: str | Path, *, lim: float, log_prob=None, title: str = "", ncols: int | None = None) -> Path:
    """Paths of 2-D particles: `panels` maps a name to a tensor (steps, N, 2); start dots grey, end dots
    black; `ncols` panels per row (default: all in one row)."""
    plt = _plt()
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, panels.items()):
        path = path.detach().cpu().to(torch.float64)
        if log_prob is not None:
            _density_image(ax, log_prob, lim)
        for k in range(path.shape[1]):
            ax.plot(path[:, k, 0].numpy(), path[:, k, 1].numpy(), lw=0.6, alpha=0.6)
        ax.scatter(path[0, :, 0], path[0, :, 1], s=6, c="0.5", zorder=3)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=6, c="k", zorder=3)
        _square(ax, lim, name)
    return _save(fig, out, title=title)


def density_over_time(log_prob_t, out: str | Path, *, lim: float, paths: dict | None = None, times=None,
                      res: int = 300, title: str = "") -> Path:
    """A 1-D density evolving in time, like the notes' Figure 25.2: p_t(x) as a heat map with t = 0 (data)
    on the left and t = 1 (noise) on the right, each time column normalised to its maximum.

    `log_prob_t(x, t)` gives log p_t at points x (N, 1) and time t; `paths` maps a label to particle
    trajectories (steps, N) at `times` (steps,) drawn on top (e.g. reverse-process samples).
    """
    plt = _plt()
    ts = torch.linspace(0, 1, 201, dtype=torch.float64)
    xs = torch.linspace(-lim, lim, res, dtype=torch.float64)
    img = torch.stack([log_prob_t(xs[:, None], float(t)).exp() for t in ts], 1)
    img = img / img.amax(0, keepdim=True)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ax.imshow(img.numpy(), extent=(0, 1, -lim, lim), origin="lower", aspect="auto", cmap="magma")
    for k, (label, tr) in enumerate((paths or {}).items()):
        tr = tr.detach().cpu().to(torch.float64)
        for j in range(tr.shape[1]):
            ax.plot(times, tr[:, j].numpy(), lw=0.7, alpha=0.8, color=f"C{k}", label=label if j == 0 else None)
    if paths:
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("t (0 = data, 1 = noise)"), ax.set_ylabel("x"), ax.set_ylim(-lim, lim)
    ax.set_title(title or "p_t(x), each time normalised", fontsize=10)
    return _save(fig, out, dpi=120)
