"""Guidance on Fashion-MNIST: the judge's accuracy against diversity for classifier-free and classifier guidance,
the pictures, and what a guided sample costs.

    .venv/bin/python benchmarks/guidance.py --out runs/guidance              # 20 + 20 + 5 min of training, ~30 min of sampling
    .venv/bin/python benchmarks/guidance.py --out runs/guidance --skip-train # measure the models already in --out
    .venv/bin/python benchmarks/guidance.py --toy-only                       # the 2-D picture from an exact oracle (seconds)

- `cond`: the `fashion_mnist_cond` preset (the Fashion-MNIST network with a class embedding, label dropout
  p_uncond = 0.1), trained `--minutes` with the fixed-time recipe (lr 2e-3, cosine decay over the budget, bf16).
- `uncond`: the `fashion_mnist` preset, the same budget and recipe; `classifier`: the `fashion_mnist_classifier`
  preset (a half U-Net on the same path) trained `--classifier-minutes`.
- Each is sampled with `--sampler` (the best 20-NFE sampler of the preset, dpmpp_2m_sde on the Karras grid),
  `--n` samples (every class in turn) against `--n` test images, through `difflab.evaluate.run_guidance_sweep`:
  the shipped judge's accuracy on the requested labels, FD, precision and recall in its feature space, at
  each classifier-free scale `--cfg` and each classifier-guidance scale `--cg`.
- Pictures: `figures/guidance_fashion.png` in the manner of the notes' Figure 25.4 (rows: unconditional,
  conditional, guided; a column per class) and `figures/guidance_toy.png` (a labelled 2-D mixture, its exact
  denoiser guided at w = 0, 1, 4).
- Cost: seconds per sample at equal steps without guidance, with classifier-free guidance (one batched
  network call on 2B, and two calls) and with classifier guidance.
Writes guidance_benchmark.json and .md into --out. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import difflab as dl
from difflab.evaluate import run_guidance_sweep

FIGURES = Path(__file__).parent / "figures"
INTERVAL = (0.28, 5.42)  # sigma/alpha: Kynkaanniemi et al.'s interval for EDM2 on ImageNet-512
RECIPE = ("train.steps=1000000", "train.lr=2e-3", "train.lr_decay=cosine", "train.checkpoint_every=500", "train.device=cpu")


def train(preset: str, out: Path, minutes: float, bf16: bool) -> dict:
    cfg = dl.config.load_config(preset, [*RECIPE, f"train.max_minutes={minutes}", f"train.amp_cpu={str(bf16).lower()}"])
    res = dl.training.train(cfg, out, resume=False)
    return {"preset": preset, "minutes": minutes, "steps": res.step, "seconds": round(res.seconds, 1)}


def toy_picture(out: Path) -> Path:
    """A labelled ring of 3 classes x 2 modes; the exact denoiser, classifier-free guided towards each class."""
    mix = dl.oracles.labelled_ring(3, 2, radius=3.0, std=0.6)
    path = dl.paths.DiscreteVP.cosine(1000)
    n = 1500
    panels, subs = {}, {}
    ref = mix.sample(3000, torch.Generator().manual_seed(1))
    for w in (0.0, 1.0, 4.0):
        row = f"w = {w:g}"
        for c in range(3):
            x = dl.sample(dl.guidance.classifier_free(mix.denoiser(path), w), path, (n, 2), sampler="dpmpp_2m", steps=30,
                          cond={"label": torch.full((n,), c)}, generator=torch.Generator().manual_seed(c), dtype=torch.float64)
            panels.setdefault(row, {})[f"class {c}"] = x.float()
            share = float((mix.class_log_posterior(x, 0.0, None).argmax(1) == c).double().mean())
            subs.setdefault(row, {})[f"class {c}"] = f"{100 * share:.1f}% of class {c}, spread {float(x.std(0).mean()):.2f}"
    return dl.viz.scatter_grid(panels, out, reference=ref, subtitles=subs, lim=5.0,
                               title="classifier-free guidance of the exact denoiser of a labelled mixture (grey: all data)")


def fashion_picture(runs: Path, out: Path, sampler: dict, w: float = 3.0) -> Path:
    """Rows: unconditional, conditional (w = 0), guided (w); a column per class, two samples each (Figure 25.4)."""
    n = 20
    labels = torch.arange(n) % 10
    rows = []
    den, path, _ = dl.load(runs / "uncond")
    rows.append(dl.sampling.sample_batched(den, path, n, (1, 28, 28), seed=0, **sampler))
    for scale in (None, w):
        den, path, _ = dl.runs.load_guided(runs / "cond", scale=scale)
        rows.append(dl.sampling.sample_batched(den, path, n, (1, 28, 28), seed=0, cond={"label": labels}, **sampler))
    grid = torch.cat([r.clamp(-1, 1) for r in rows])
    return dl.viz.save_image_grid(grid, out, nrow=10, scale=3)


def cost(runs: Path, sampler: dict, n: int = 500) -> dict:
    """Seconds per sample at equal steps: no guidance, classifier-free (batched, two calls), classifier guidance."""
    labels = {"label": torch.arange(n) % 10}
    den, path, _ = dl.load(runs / "cond")
    out = {}
    raw = dl.load(runs / "cond", clip=False)[0]
    ts = dl.samplers.grids.make_grid(sampler.get("grid") or "trailing", path, sampler["steps"], **sampler.get("grid_options", {}))
    levels = (path.sigma(ts[:-1]) / path.alpha(ts[:-1])).tolist()
    inside = sum(1 for v in levels if INTERVAL[0] <= v <= INTERVAL[1])
    for name, d in (("no guidance", den),
                    ("classifier-free, one batched call", dl.guidance.classifier_free(raw, 2.0, batched=True)),
                    ("classifier-free, two calls (the CPU default at this batch)", dl.guidance.classifier_free(raw, 2.0, batched=False)),
                    (f"classifier-free in the interval {INTERVAL} ({inside} of {len(levels)} steps)",
                     dl.guidance.classifier_free(raw, 2.0, path=path, interval=INTERVAL)),
                    ("classifier guidance (uncond + classifier)",
                     dl.runs.load_guided(runs / "uncond", scale=3.0, classifier=runs / "classifier")[0])):
        t0 = time.perf_counter()
        dl.sampling.sample_batched(d, path, n, (1, 28, 28), seed=0, cond=labels, batch_size=n, **sampler)
        out[name] = (time.perf_counter() - t0) / n
    return out


def report(result: dict) -> str:
    lines = ["# Guidance on Fashion-MNIST", "", "| model | preset | minutes | steps |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['preset']} | {v['minutes']:g} | {v['steps']} |" for k, v in result["train"].items()]
    for name in ("classifier-free", "classifier-free, interval", "classifier"):
        sweep = result.get(name)
        if not sweep:
            continue
        rows = sweep["rows"]
        lines += ["", f"## {name} guidance ({result['sampler']}, {rows[0]['nfe']}-{rows[-1]['nfe']} NFE, n = {rows[0]['n']})", "",
                  "| w | judge accuracy | FD | precision | recall | NFE | seconds |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['scale']:g} | {r['accuracy']:.3f} | {r['fd']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['nfe']} | "
                  f"{r['sample_seconds']} |" for r in rows]
        f = rows[0]
        lines += ["", f"Floor (real training images): FD {f['fd_floor']:.3f}, precision {f['precision_floor']:.3f}, "
                      f"recall {f['recall_floor']:.3f}."]
    if result.get("cost"):
        base = result["cost"]["no guidance"]
        lines += ["", "## Cost at equal steps (500 samples, one batch)", "", "| sampling | ms per sample | against none |", "|---|---|---|"]
        lines += [f"| {k} | {1e3 * v:.2f} | {v / base:.2f}x |" for k, v in result["cost"].items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/guidance"))
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--classifier-minutes", type=float, default=5.0)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sampler", default="dpmpp_2m_sde@karras")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", default="0,0.1,0.2,0.3,1,2,3,5", help="classifier-free guidance scales")
    ap.add_argument("--interval-scales", default="1,2,3,5", help="classifier-free scales with the guidance interval")
    ap.add_argument("--cg", default="0,1,3,10", help="classifier guidance scales")
    ap.add_argument("--parts", default="cfg,interval,cg,picture,cost", help="what to measure (comma-separated)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--toy-only", action="store_true")
    a = ap.parse_args()
    FIGURES.mkdir(exist_ok=True)
    print(f"wrote {toy_picture(FIGURES / 'guidance_toy.png')}")
    if a.toy_only:
        return
    a.out.mkdir(parents=True, exist_ok=True)
    file = a.out / "guidance_benchmark.json"
    result = json.loads(file.read_text()) if file.exists() else {"train": {}}
    if not a.skip_train:
        result["train"]["cond"] = train("fashion_mnist_cond", a.out / "cond", a.minutes, a.bf16)
        result["train"]["uncond"] = train("fashion_mnist", a.out / "uncond", a.minutes, a.bf16)
        result["train"]["classifier"] = train("fashion_mnist_classifier", a.out / "classifier", a.classifier_minutes, a.bf16)
        file.write_text(json.dumps(result, indent=1))
    spec = dl.sampling.parse_sampler_spec(a.sampler)
    common = dict(sampler=a.sampler, steps=a.steps, n=a.n, seed=0)
    parts = a.parts.split(",")
    result["sampler"] = f"{a.sampler}, {a.steps} steps"
    scales = lambda text: [float(w) for w in text.split(",")]  # noqa: E731
    metrics = ("accuracy", "fid", "prdc")
    if "cfg" in parts:
        result["classifier-free"] = run_guidance_sweep(a.out / "cond", scales(a.cfg), metrics, **common)
    if "interval" in parts:
        result["classifier-free, interval"] = run_guidance_sweep(a.out / "cond", scales(a.interval_scales), metrics,
                                                                 guide={"interval": INTERVAL}, name="guidance_interval", **common)
    if "cg" in parts:
        result["classifier"] = run_guidance_sweep(a.out / "uncond", scales(a.cg), metrics, guide={"classifier": a.out / "classifier"},
                                                  **common)
    how = {"steps": a.steps, **spec.kwargs()}
    if "picture" in parts:
        print(f"wrote {fashion_picture(a.out, FIGURES / 'guidance_fashion.png', how)}")
    if "cost" in parts:
        result["cost"] = cost(a.out, how)
    file.write_text(json.dumps(result, indent=1, default=str))
    (a.out / "guidance_benchmark.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
