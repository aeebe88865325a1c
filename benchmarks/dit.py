"""DiT against the U-Net on Fashion-MNIST at equal minutes: class-conditional models, each trained for the same
time with the same recipe, sampled with the best of a few samplers at 20 NFE.

    .venv/bin/python benchmarks/dit.py --out runs/dit                  # 3 x 20 min of training, ~15 min of sampling
    .venv/bin/python benchmarks/dit.py --out runs/dit --skip-train     # measure the runs already in --out
    .venv/bin/python benchmarks/dit.py --out runs/dit --models dit_p4 --minutes 5   # one model, a short screen

- `unet`: the `fashion_mnist_cond` preset (the patch-2 U-Net with a class embedding, label dropout 0.1).
- `dit_p2`, `dit_p4`: the same preset with `model.kind = "dit"` (`--width`, `--depth`, `--heads`) on 2x2 and 4x4
  patches (196 and 49 tokens).
- Recipe (the guidance benchmark's): `--minutes` each, lr `--lr` (the U-Net's 2e-3; `--dit-lr` for the DiTs),
  cosine decay over the budget, bf16 autocast, batch 64, EMA 0.999.
- Each model sampled with each of `--samplers` at 20 steps (20 NFE), `--n` samples (every class in turn) from the
  same noise, against `--n` test images: the shipped judge's accuracy on the requested classes, FD, precision and
  recall in its feature space (`difflab.evaluate.run_sample_metrics`); the best sampler by FD is the model's row.
- Picture: figures/dit_fashion.png, a row per model, two samples per class.
Writes dit_benchmark.json / .md into --out. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import difflab as dl
from difflab.evaluate import run_sample_metrics
from difflab.nets import count_parameters

FIGURES = Path(__file__).parent / "figures"
RECIPE = ["train.steps=1000000", "train.lr_decay=cosine", "train.checkpoint_every=500", "train.device=cpu", "train.amp_cpu=true"]


def overrides(name: str, a) -> list:
    if name == "unet":
        return [f"train.lr={a.lr}"]
    patch = int(name.removeprefix("dit_p"))
    return ["model.kind=dit", f"model.patch_size={patch}", f"model.width={a.width}", f"model.depth={a.depth}",
            f"model.heads={a.heads}", f"train.lr={a.dit_lr}"]


def train(name: str, run: Path, a) -> dict:
    cfg = dl.config.load_config("fashion_mnist_cond", [*RECIPE, f"train.max_minutes={a.minutes}", *overrides(name, a)])
    if not a.skip_train:
        dl.runs.train(cfg, run, resume=False)
    net, _, state = dl.runs.load_network(run)
    return {"steps": state["step"], "parameters": count_parameters(net), "overrides": overrides(name, a),
            "steps_per_second": round(state["step"] / (60 * a.minutes), 2)}


def picture(runs: dict, sampler: dict, out: Path) -> Path:
    labels = torch.arange(20) % 10
    rows = []
    for run in runs.values():
        den, path, _ = dl.load(run)
        rows.append(dl.sampling.sample_batched(den, path, 20, (1, 28, 28), seed=0, cond={"label": labels}, **sampler).clamp(-1, 1))
    return dl.viz.save_image_grid(torch.cat(rows), out, nrow=20, scale=3)


def report(res: dict) -> str:
    lines = ["| model | parameters | training steps | steps / s | best sampler (20 NFE) | judge accuracy | FD | precision | recall |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["models"].items():
        best = r.get("best")
        if not best:
            continue
        m = r["samplers"][best]
        lines.append(f"| {name} | {r['parameters']:,} | {r['steps']:,} | {r['steps_per_second']} | {best} | {m['accuracy']:.3f} | "
                     f"{m['fd']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |")
    floor = next((r["samplers"][r["best"]] for r in res["models"].values() if r.get("best")), None)
    if floor:
        lines += ["", f"Floor (1,000 training images against the test images): FD {floor['fd_floor']:.3f}, precision "
                      f"{floor['precision_floor']:.3f}, recall {floor['recall_floor']:.3f}.", "",
                  "Every sampler (FD / judge accuracy):", "",
                  "| model | " + " | ".join(res["samplers"]) + " |", "|---|" + "---|" * len(res["samplers"])]
        for name, r in res["models"].items():
            cells = [f"{r['samplers'][s]['fd']:.3f} / {r['samplers'][s]['accuracy']:.3f}" if s in r.get("samplers", {}) else "-"
                     for s in res["samplers"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/dit"))
    ap.add_argument("--models", default="unet,dit_p2,dit_p4")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dit-lr", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--samplers", default="dpmpp_2m_sde@karras,dpmpp_2m,unipc@karras")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--no-picture", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(exist_ok=True)
    file = a.out / "dit_benchmark.json"
    res = json.loads(file.read_text()) if file.exists() else {"models": {}}
    samplers = [s for s in a.samplers.split(",") if s]
    res["samplers"] = samplers
    runs = {}
    for name in [m for m in a.models.split(",") if m]:
        runs[name] = a.out / name
        r = train(name, runs[name], a)
        r["samplers"] = {}
        for spec in samplers:
            m = run_sample_metrics(runs[name], ("accuracy", "fid", "prdc"), sampler=spec, steps=20, n=a.n, seed=0)
            r["samplers"][spec] = {k: v for k, v in m.items() if k != "class_fractions"}
            print(name, spec, {k: m[k] for k in ("accuracy", "fd", "precision", "recall", "nfe")}, flush=True)
        r["best"] = min(r["samplers"], key=lambda s: r["samplers"][s]["fd"])
        res["models"][name] = r
        file.write_text(json.dumps(res, indent=1, default=str))
    if runs and not a.no_picture:
        spec = dl.sampling.parse_sampler_spec(samplers[0])
        print("wrote", picture(runs, {"steps": 20, **spec.kwargs()}, FIGURES / "dit_fashion.png"))
    (a.out / "dit_benchmark.md").write_text(report(res))
    print(report(res))


if __name__ == "__main__":
    main()
