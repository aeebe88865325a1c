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
