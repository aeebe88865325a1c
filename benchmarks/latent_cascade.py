"""Pictures of the latent and cascade sides of `train_budget.py` (issue 19), from the runs it trained:

    .venv/bin/python benchmarks/latent_cascade.py --out runs/b19

- figures/latent_reconstructions.png: test images (odd rows) above the autoencoder's reconstructions (even rows).
- figures/latent_samples.png: samples of the latent model, decoded (SDE-DPM-Solver++ on the Karras grid, 20 NFE).
- figures/cascade_samples.png: the cascade's 14x14 base samples (upsampled, odd rows) above the 28x28 images the
  super-resolution stage drew from them (even rows), 10 + 10 steps.
Each starts from fixed seeds; run it alone (it samples a few hundred images).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import difflab as dl
import difflab.cascade  # noqa: F401

FIGURES = Path(__file__).parent / "figures"


def interleave(top: torch.Tensor, bottom: torch.Tensor, per_row: int) -> torch.Tensor:
    """Rows of `per_row` images of `top`, each followed by the matching row of `bottom`."""
    rows = [t for i in range(0, len(top), per_row) for t in (top[i:i + per_row], bottom[i:i + per_row])]
    return torch.cat(rows)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/b19"), help="train_budget.py's --out")
    ap.add_argument("--per-row", type=int, default=16)
    a = ap.parse_args()
    k = a.per_row

    ae, _, _ = dl.load(a.out / "latent" / "vae")
    test = dl.data.fashion_mnist("test").images[torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:4 * k]]
    rec = ae.decode(ae.encode(test)).clamp(-1, 1)
    print(dl.viz.save_image_grid(interleave(test, rec, k), FIGURES / "latent_reconstructions.png", nrow=k, scale=3))

    den, path, _ = dl.load(a.out / "latent" / "latent")
    shape = tuple(dl.runs.data_info(a.out / "latent" / "latent")["shape"])
    z = dl.sampling.sample_batched(den, path, 6 * k, shape, seed=0, sampler="dpmpp_2m_sde", grid="karras", steps=20)
    print(dl.viz.save_image_grid(den.decode(z).clamp(-1, 1), FIGURES / "latent_samples.png", nrow=k, scale=3))

    cascade, _, _ = dl.load(a.out / "cascade" / "cascade")
    cascade.base_settings = cascade.sr_settings = {"sampler": "dpmpp_2m_sde", "grid": "karras", "steps": 10}
    x, y = cascade.sample(4 * k, seed=0)
    up = dl.data.upsample(y, 2)
    print(dl.viz.save_image_grid(interleave(up, x.clamp(-1, 1), k), FIGURES / "cascade_samples.png", nrow=k, scale=3))


if __name__ == "__main__":
    main()
