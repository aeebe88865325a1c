"""Zero-shot restoration with an unconditional Fashion-MNIST model, against a super-resolution model trained for it.

    .venv/bin/python benchmarks/inverse.py --run runs/fm20 --sr runs/fm_sr --n 1000 --out runs/inverse

- The restorers: `difflab restore` (`Run.restore`) on `--n` test images of Fashion-MNIST, one restoration each, with
  pgdm, dps and (for inpainting) RePaint, from the observation simulated from each image: centre-box inpainting
  (the centre 14x14 unknown), 2x and 4x super-resolution (block averages), Gaussian deblurring (std 1.5 pixels),
  noiseless unless `--noise`. Every method runs the model's [sample] sampler at `--steps` steps (RePaint: DDPM, its
  resampling `--resamples` times per `--jump` steps, so its network evaluations are that many times more).
- The reference: the super-resolution stage of the cascade (`--sr`, a run on data.low_res = 2: trained to draw 28x28
  images given the 14x14 block averages), given the same 2x observations, at the same number of steps.
- Figures: PSNR (dB, images in [0, 1]) of each restoration against its truth, mean and standard error; the Frechet
  distance of the restorations to the same test images in the shipped feature network (`difflab.features`), beside
  the floor (training images in place of restorations); network evaluations and seconds per image on this machine.
- Writes inverse.json, inverse.md and inverse.png (a row per task: observation, each method, the truth) into --out.
Run it alone: timings of a second job on 2 cores are not comparable.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import difflab as dl
from difflab.app.requests import RestoreRequest
from difflab.app.run import Run

TASKS = {"inpaint": {"task": "inpaint", "box": (7, 7, 14, 14)}, "sr2": {"task": "sr", "factor": 2},
         "sr4": {"task": "sr", "factor": 4}, "deblur": {"task": "deblur", "blur": 1.5}}


def fd(images: torch.Tensor, truth: torch.Tensor, floor_images: torch.Tensor) -> tuple[float, float]:
    from difflab.features import image_metrics, load_feature_net

    net, _ = load_feature_net("fashion_mnist")
    return image_metrics(net, truth, images.clamp(-1, 1))["fd"], image_metrics(net, truth, floor_images)["fd"]


def restore(run: Path, name: str, method: str, a, out: Path) -> dict:
    spec = TASKS[name]
    request = RestoreRequest(method=method, test_images=a.n, n=1, steps=a.steps, noise=a.noise, scale=a.scale, jump=a.jump,
                             resamples=a.resamples, seed=a.seed, batch=a.batch, out=out / f"{name}-{method}.npz", progress=False,
                             **spec)
    t0 = time.perf_counter()
    samples, _ = Run.open(run).restore(request)
    seconds = time.perf_counter() - t0
    saved = np.load(out / f"{name}-{method}.npz")
    x, truth = torch.from_numpy(saved["restorations"]), torch.from_numpy(saved["truth"])
    return {"x": x, "truth": truth, "observations": torch.from_numpy(saved["observations"]), "nfe": int(saved["nfe"]),
            "seconds_per_image": seconds / a.n}


def variant(run: Path, name: str, method: str, a) -> dict:
    """A DPS variant on the same observations `restore` makes: `dps_unbounded` (the transform without its bound, as
    difflab's dps was before it had one) or `chung` (Chung et al.'s Algorithm 1, `dl.inverse.chung_dps`, DDPM steps
    on the run's grid at --steps, step --zeta)."""
    import functools

    from difflab.denoisers import clipped

    r = Run.open(run)
    request = RestoreRequest(method="dps", test_images=a.n, n=1, steps=a.steps, noise=a.noise, seed=a.seed, **TASKS[name])
    request.check()
    A, truth, y = r.kind.observations(r, request)
    den, path = r.kind.raw_denoiser(r, clip=False)
    how = r.kind.check_settings(r, None, a.steps, None).kwargs  # what restore --method dps samples with
    if method == "chung":
        how["sampler"] = functools.partial(dl.inverse.chung_dps, A=A, zeta=a.zeta)
        cond = {"y": y}
    else:
        den = dl.inverse.dps(den, path, A, None, request.noise_std, scale=a.scale, bounded=False)
        cond = {"observation": y}
    den = clipped(den, *r.facts["range"])
    t0 = time.perf_counter()
    x, info = dl.sampling.sample_batched(den, path, len(y), tuple(r.facts["shape"]), seed=a.seed, batch_size=a.batch, cond=cond,
                                         return_info=True, **how)
    return {"x": x, "truth": truth, "observations": y, "nfe": info.nfe, "seconds_per_image": (time.perf_counter() - t0) / len(y)}


def trained_sr(sr: Path, truth: torch.Tensor, a) -> dict:
    """The super-resolution stage given the 2x observations (block averages), at the same steps."""
    run = Run.open(sr)
    den, path, cfg = run.load()
    low = dl.data.downsample(truth, 2)
    how = dl.app.requests.sampling_settings(cfg, None, a.steps)
    cond = {"low_res": low, "low_res_level": torch.zeros(len(truth))}
    t0 = time.perf_counter()
    x, info = dl.sampling.sample_batched(den, path, len(truth), tuple(run.facts["shape"]), seed=a.seed, batch_size=a.batch,
                                         cond=cond, return_info=True, **how)
    return {"x": x, "truth": truth, "observations": low, "nfe": info.nfe, "seconds_per_image": (time.perf_counter() - t0) / len(truth)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="an unconditional Fashion-MNIST diffusion run")
    p.add_argument("--sr", type=Path, help="the cascade's super-resolution stage (a run on data.low_res = 2)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--scale", type=float, default=10.0, help="dps's scale")
    p.add_argument("--jump", type=int, default=5)
    p.add_argument("--resamples", type=int, default=3)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--methods", default="pgdm,dps,repaint", help="also dps_unbounded and chung (Chung et al.'s Algorithm 1)")
    p.add_argument("--zeta", type=float, default=3.0, help="chung's step (3: its best at 20 steps on exact posteriors)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--out", type=Path, default=Path("runs/inverse"))
    a = p.parse_args()
    torch.set_num_threads(2)
    a.out.mkdir(parents=True, exist_ok=True)
    floor_images = dl.data.fashion_mnist("train").images[torch.randperm(60000, generator=torch.Generator().manual_seed(1))[:a.n]]
    rows, pictures = [], {}
    for name in a.tasks.split(","):
        methods = [m for m in a.methods.split(",") if m != "repaint" or TASKS[name]["task"] == "inpaint"]
        for method in methods:
            res = variant(a.run, name, method, a) if method in ("dps_unbounded", "chung") else restore(a.run, name, method, a, a.out)
            if name not in pictures:  # the observation itself, enlarged: what a restoration must beat
                seen = _seen(name, res["observations"])
                pictures[name] = {"observation": seen, "truth": res["truth"]}
                rows.append(_row(name, "the observation", {**res, "x": seen, "nfe": 0, "seconds_per_image": 0.0}, floor_images))
            pictures[name][method] = res["x"]  # (a variant's observations are the same: the same seed draws the same images)
            rows.append(_row(name, method, res, floor_images))
            print(json.dumps(rows[-1]), flush=True)
        if name == "sr2" and a.sr is not None:
            res = trained_sr(a.sr, pictures[name]["truth"], a)
            pictures[name]["trained sr"] = res["x"]
            rows.append(_row(name, "trained sr", res, floor_images))
            print(json.dumps(rows[-1]), flush=True)
    result = {"run": str(a.run), "sr": str(a.sr), "n": a.n, "steps": a.steps, "noise": a.noise, "scale": a.scale,
              "jump": a.jump, "resamples": a.resamples, "rows": rows}
    (a.out / "inverse.json").write_text(json.dumps(result, indent=1))
    _markdown(result, a.out / "inverse.md")
    _picture(pictures, a.out / "inverse.png")
    print((a.out / "inverse.md").read_text())


def _row(task: str, method: str, res: dict, floor_images) -> dict:
    from difflab.app.observations import psnr

    p = psnr(res["x"], res["truth"]).double()
    d, floor = fd(res["x"], res["truth"], floor_images[:len(res["x"])])
    return {"task": task, "method": method, "psnr": float(p.mean()), "psnr_se": float(p.std() / math.sqrt(len(p))), "fd": d,
            "fd_floor": floor, "nfe": res["nfe"], "seconds_per_image": round(res["seconds_per_image"], 4)}


def _markdown(result: dict, out: Path) -> None:
    lines = [f"# Restoring {result['n']} Fashion-MNIST test images with `{result['run']}` ({result['steps']} steps, noise "
             f"{result['noise']:g})", "", "| task | method | PSNR (dB) | FD (floor) | NFE | s / image |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['task']} | {r['method']} | {r['psnr']:.2f} +- {r['psnr_se']:.2f} | {r['fd']:.3f} ({r['fd_floor']:.3f}) | "
                     f"{r['nfe']} | {r['seconds_per_image']:.4f} |")
    out.write_text("\n".join(lines) + "\n")


def _seen(name: str, observations: torch.Tensor) -> torch.Tensor:
    """An observation at full size (`app.observations.picture`): the kept pixels, the low-resolution image enlarged."""
    from difflab.app.observations import operator, picture

    spec = {k: v for k, v in TASKS[name].items() if k != "task"}
    return picture(TASKS[name]["task"], operator(TASKS[name]["task"], (1, 28, 28), **spec), observations, (1, 28, 28)).clamp(-1, 1)


def _picture(pictures: dict, out: Path, k: int = 4) -> None:
    """A row per task and image: the observation (enlarged), each method's restoration, the truth."""
    columns = max(len(p) for p in pictures.values())
    rows = []
    for name, p in pictures.items():
        seen = p["observation"]
        for i in range(k):
            cells = [seen[i]] + [v[i] for key, v in p.items() if key not in ("observation", "truth")] + [p["truth"][i]]
            cells += [-torch.ones_like(cells[0])] * (columns - len(cells))
            rows.append(torch.stack(cells))
    dl.viz.save_image_grid(torch.cat(rows).clamp(-1, 1), out, nrow=columns, scale=3)


if __name__ == "__main__":
    main()
