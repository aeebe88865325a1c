"""Discrete diffusion: bits per character on held-out English, the cost of fewer sampling steps, bits per
pixel on quantized Fashion-MNIST, and the notes' Figure 1 on the quantized swiss roll.

    .venv/bin/python benchmarks/discrete.py --out runs/discrete                     # every part (~2.5 h)
    .venv/bin/python benchmarks/discrete.py --out runs/discrete --parts text,steps  # some parts
    .venv/bin/python benchmarks/discrete.py --out runs/discrete --skip-train       # measure the runs in --out
    .venv/bin/python benchmarks/discrete.py --out runs/discrete --parts ""         # the tables from the results

- `text`: the `text_masked` preset's network (a 4-block transformer, width 192, 2.8M parameters) on Debian's
  fortunes (2.36M characters as text8 is normalised; the last 10% held out), 128 characters per example,
  trained `--minutes` each with bf16 autocast, lr 1e-3 and a cosine decay over the budget: masked diffusion
  (MDLM's continuous-time bound), absorbing D3PM and uniform D3PM (T = 1000, hybrid loss, lambda = 0.01), and
  the autoregressive transformer of the same size. Bits per character on `--n` held-out windows: the bound's
  one-sample estimate averaged over 4 draws per window (exact for the autoregressive model), beside the unigram
  cross-entropy. Samples of each. `--text-models masked,autoregressive` trains and measures some of them only
  (e.g. at other `--minutes`, into another `--out`).
- `steps`: the masked and absorbing models sampled in 1000, 100 and 20 steps: the bound of that many steps
  (D3PM's bound on an absorbing path with N steps, evaluated with the same network: what an N-step sampler
  pays), and the quality of `--n-judged` samples judged by the autoregressive model (its bits per character on them:
  "generative perplexity"), with seconds per sample.
- `fashion`: Fashion-MNIST quantized to `--levels` levels (4), a categorical U-Net (the fashion_mnist preset's),
  T = 1000, trained `--fashion-minutes` each: discretized Gaussian (linear betas 0.02 -> 1; `gaussian_mi`, the
  mutual-information beta schedule; `gaussian_logistic`, that and D3PM's discretized-logistic output), absorbing and uniform D3PM (`--fashion-models` chooses); bits per pixel on
  1000 test images (`--fashion-repeats` draws of the bound each); samples of every model trained at that level count.
- `swissroll`: the quantized swiss roll (32 levels per coordinate) under each forward process, and the learned
  discretized-Gaussian reverse process (the `swissroll_discrete` preset, `--swiss-minutes`).
Writes discrete_benchmark.json / .md into --out and pictures into benchmarks/figures. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import difflab as dl
from difflab import discrete as dd
from difflab.data import categorical as cat
from difflab.evaluate import held_out_tokens, run_discrete_nll

FIGURES = Path(__file__).parent / "figures"
RECIPE = ["train.steps=1000000", "train.lr_decay=cosine", "train.checkpoint_every=500", "train.device=cpu", "train.amp_cpu=true"]
TEXT = {"masked": ["discrete.path=masked"],
        "absorbing": ["discrete.path=absorbing", "discrete.loss=hybrid", "discrete.sampler=masked", "discrete.sample_steps=1000"],
        "uniform": ["discrete.path=uniform", "discrete.loss=hybrid", "discrete.sampler=ancestral", "discrete.sample_steps=1000"],
        "autoregressive": ["kind=autoregressive"]}
FASHION = {"gaussian": ["discrete.path=gaussian", "discrete.beta_min=0.02", "discrete.beta_max=1.0"],
           "gaussian_mi": ["discrete.path=gaussian", "discrete.schedule=mutual_information"],
           "gaussian_logistic": ["discrete.path=gaussian", "discrete.schedule=mutual_information", "discrete.output=logistic"],
           "absorbing": ["discrete.path=absorbing", "discrete.sampler=masked"],
           "uniform": ["discrete.path=uniform"]}
FASHION_BASE = ["kind=discrete", "discrete.steps=1000", "discrete.loss=hybrid", "discrete.lam=0.001",
                "train.lr=1e-3"]


def train(preset: str, overrides: list, out: Path, minutes: float, skip: bool) -> dict:
    cfg = dl.config.load_config(preset, [*RECIPE, f"train.max_minutes={minutes}", *overrides])
    if not skip:
        dl.runs.train(cfg, out, resume=False)
    _, _, state = dl.runs.load_network(out)
    return {"steps": state["step"], "overrides": overrides}


def unigram(train_tokens: torch.Tensor, test_tokens: torch.Tensor) -> dict:
    counts = torch.bincount(train_tokens.reshape(-1), minlength=27).double() + 1  # add-one: no zero probability
    p = counts / counts.sum()
    test = torch.bincount(test_tokens.reshape(-1), minlength=27).double()
    return {"entropy_bits": float(-(p * p.log2()).sum()), "cross_entropy_bits": float(-(test * p.log2()).sum() / test.sum())}


def text_part(out: Path, args) -> dict:
    res = {}
    for name in args.text_models:
        run, overrides = out / f"text_{name}", TEXT[name]
        res[name] = train("text_masked", ["data.text=fortunes", *overrides], run, args.minutes, args.skip_train)
        res[name].update(run_discrete_nll(run, n=args.n, repeats=4, seed=0, progress=False))
        kw = {} if name == "autoregressive" else {"steps": 1000}
        tokens, _ = dl.runs.sample_tokens(run, 3, seed=1, batch_size=3, **kw)
        res[name]["samples"] = dl.runs.tokens_to_values(run, tokens)
        print(name, f"{res[name]['bits_per_symbol']:.3f} bits/char after {res[name]['steps']} steps", flush=True)
    train_tokens = cat.text("fortunes", 128, "train").images
    test_tokens, _ = held_out_tokens(out / f"text_{args.text_models[0]}", "test", args.n)
    res["unigram"] = unigram(train_tokens, test_tokens)
    return res


def steps_part(out: Path, args) -> dict:
    ar, _, _ = dl.runs.load(out / "text_autoregressive")
    x, _ = held_out_tokens(out / "text_masked", "test", args.n_steps)
    res = {}
    for name in ("masked", "absorbing"):
        run = out / f"text_{name}"
        den, _, _ = dl.runs.load(run)
        for steps in (1000, 100, 20):
            path = dd.Absorbing(27, steps=steps)  # the N-step bound of the same network
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                bound = torch.cat([torch.stack([dd.vb_loss(den, path, x[i:i + 250], generator=g) for _ in range(2)]).mean(0)
                                   for i in range(0, len(x), 250)])
            started = time.perf_counter()
            tokens, how = dl.runs.sample_tokens(run, args.n_judged, steps=steps, sampler="masked", seed=2, batch_size=args.n_judged)
            seconds = (time.perf_counter() - started) / args.n_judged
            with torch.no_grad():
                judged = dd.autoregressive.nll(ar, tokens, bos=27)
            res[f"{name}@{steps}"] = {"bound_bits": float(bound.mean()) / (128 * math.log(2)),
                                      "bound_bits_se": float(bound.std()) / math.sqrt(len(bound)) / (128 * math.log(2)),
                                      "judged_bits": float(judged.mean()) / (128 * math.log(2)),
                                      "judged_bits_se": float(judged.std()) / math.sqrt(len(judged)) / (128 * math.log(2)),
                                      "nfe": how["nfe"], "seconds_per_sample": round(seconds, 4)}
            print(name, steps, res[f"{name}@{steps}"], flush=True)
    with torch.no_grad():
        real = dd.autoregressive.nll(ar, x, bos=27)
    res["held_out_text_judged_bits"] = float(real.mean()) / (128 * math.log(2))
    return res


def fashion_part(out: Path, args) -> dict:
    """The forward processes of `args.fashion_models` on Fashion-MNIST quantized to `args.levels` levels, keyed by
    the number of levels. The picture shows every model of that level count whose run is in `out`."""
    L, res, pictures = args.levels, {}, {}
    prefix = "fashion" if L == 4 else f"fashion{L}"  # 4 levels: the run directories of the first measurement
    for name in args.fashion_models:
        run = out / f"{prefix}_{name}"
        res[name] = train("fashion_mnist", [*FASHION_BASE, f"data.levels={L}", *FASHION[name]], run, args.fashion_minutes,
                          args.skip_train)
        res[name].update(run_discrete_nll(run, n=1000, repeats=args.fashion_repeats, seed=0, progress=False))
        print(name, f"{res[name]['bits_per_symbol']:.4f} bits/pixel after {res[name]['steps']} steps", flush=True)
    for name in FASHION:
        run = out / f"{prefix}_{name}"
        if (run / "config.json").exists():
            tokens, how = dl.runs.sample_tokens(run, 30, seed=3, batch_size=30, steps=1000)
            pictures[name] = dl.runs.tokens_to_values(run, tokens)
            if name in res:
                res[name]["sample_nfe"] = how["nfe"]
    real, _ = held_out_tokens(out / f"{prefix}_{args.fashion_models[0]}", "test", 30)
    rows = [cat.dequantize(real, L)] + list(pictures.values())
    figure = "discrete_fashion.png" if L == 4 else f"discrete_fashion_{L}.png"
    dl.viz.save_image_grid(torch.cat(rows), FIGURES / figure, nrow=30, scale=2)
    print(f"{FIGURES / figure}: rows real, " + ", ".join(pictures), flush=True)
    return {str(L): res}


def by_levels(fashion: dict | None) -> dict:
    """The fashion results keyed by level count; a results file written before `--levels` holds 4 levels' alone."""
    if not fashion:
        return {}
    return fashion if all(k.isdigit() for k in fashion) else {"4": fashion}


def swissroll_part(out: Path, args) -> dict:
    """Forward processes on the quantized swiss roll, and the learned reverse process (Figure 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels, n = 32, 3000
    x0 = cat.quantize(dl.data.toy_density("swiss_roll").sample(n, torch.Generator().manual_seed(0)), levels, -3.0, 3.0)
    forward = {"uniform": dd.Uniform(levels, steps=1000), "discretized Gaussian":
               dd.DiscretizedGaussian(levels, steps=1000, beta_min=1e-4, beta_max=0.02), "absorbing": dd.Absorbing(levels, steps=1000)}
    times = (0.0, 0.05, 0.15, 0.4, 1.0)
    run = out / "swissroll_gaussian"
    info = train("swissroll_discrete", [], run, args.swiss_minutes, args.skip_train)
    den, path, _ = dl.runs.load(run)
    snapshots = {}
    grid = path.times(1000)
    keep = {round(float(t), 3) for t in times}

    def grab(state):
        s = round(state["s"], 3)
        if s in keep:
            snapshots[s] = state["x"].clone()
    x1 = path.prior_sample((n, 2), torch.Generator().manual_seed(4))
    snapshots[1.0] = x1.clone()
    with torch.no_grad():
        dd.ancestral(den, path, x1, grid, generator=torch.Generator().manual_seed(5), callback=grab)
    nll = run_discrete_nll(run, n=5000, repeats=2, progress=False)
    fig, axes = plt.subplots(4, len(times), figsize=(2.2 * len(times), 9), squeeze=False)
    rows = list(forward.items()) + [("learned reverse (discretized Gaussian)", None)]
    for r, (name, fpath) in enumerate(rows):
        for c, t in enumerate(times):
            ax = axes[r, c]
            pts = fpath.sample(x0, t, torch.Generator().manual_seed(c)) if fpath is not None else snapshots[round(t, 3)]
            masked = (pts >= levels).any(1)
            ax.scatter(pts[~masked, 0], pts[~masked, 1], s=1, alpha=0.4)
            ax.set_xlim(-1, levels)
            ax.set_ylim(-1, levels)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t = {t:g}" + (f", {int(masked.sum())} masked" if masked.any() else ""), fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "discrete_swissroll.png", dpi=110)
    plt.close(fig)
    return {**info, "bits_per_coordinate": nll["bits_per_symbol"], "bits_per_coordinate_se": nll["bits_per_symbol_se"]}


def report(results: dict) -> str:
    """The tables of benchmarks/README.md from the results."""
    lines = []
    text = results.get("text")
    if text:
        uni = text["unigram"]
        lines += ["| model (same network, same minutes) | training steps | bits / char (held out) | kind of figure |", "|---|---|---|---|"]
        models = [name for name in ("autoregressive", "masked", "absorbing", "uniform") if name in text]
        for name in models:
            r = text[name]
            kind = "exact NLL" if name == "autoregressive" else "upper bound (4 one-sample draws per window)"
            lines.append(f"| {name} | {r['steps']:,} | {r['bits_per_symbol']:.3f} +- {r['bits_per_symbol_se']:.3f} | {kind} |")
        lines += [f"| unigram (training frequencies) | - | {uni['cross_entropy_bits']:.3f} | cross-entropy on the held-out text |", ""]
        lines += ["Samples (the first of three per model; masked and absorbing with 1000 steps, the cache on):", ""]
        for name in models:
            lines.append(f"- {name}: `{text[name]['samples'][0]}`")
        lines.append("")
    steps = results.get("steps")
    if steps:
        lines += ["| model @ steps | bound of that many steps (bits / char) | samples judged by the AR model (bits / char) | NFE | s / sample |",
                  "|---|---|---|---|---|"]
        for key, r in steps.items():
            if isinstance(r, dict):
                lines.append(f"| {key} | {r['bound_bits']:.3f} +- {r['bound_bits_se']:.3f} | {r['judged_bits']:.3f} +- "
                             f"{r.get('judged_bits_se', float('nan')):.3f} | {r['nfe']} | {r['seconds_per_sample']} |")
        lines += [f"| held-out text itself | | {steps['held_out_text_judged_bits']:.3f} | | |", ""]
    for levels, fashion in sorted(by_levels(results.get("fashion")).items(), key=lambda kv: int(kv[0])):
        lines += [f"| forward process | training steps | bits / pixel (1000 test images, {levels} levels) |", "|---|---|---|"]
        for name, r in fashion.items():
            lines.append(f"| {name} | {r['steps']:,} | {r['bits_per_symbol']:.4f} +- {r['bits_per_symbol_se']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/discrete"))
    ap.add_argument("--parts", default="text,steps,fashion,swissroll")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--text-models", default=",".join(TEXT), help=f"text: which of {', '.join(TEXT)} to train and measure")
    ap.add_argument("--fashion-minutes", type=float, default=10.0)
    ap.add_argument("--levels", type=int, default=4, help="fashion: intensity levels of the quantized images")
    ap.add_argument("--fashion-models", default="gaussian,absorbing,uniform",
                    help=f"fashion: which of {', '.join(FASHION)} to train and measure")
    ap.add_argument("--fashion-repeats", type=int, default=8, help="fashion: draws of the bound per test image")
    ap.add_argument("--swiss-minutes", type=float, default=2.0)
    ap.add_argument("--n", type=int, default=1000, help="held-out text windows for bits per character")
    ap.add_argument("--n-steps", type=int, default=500, help="held-out windows for the N-step bounds")
    ap.add_argument("--n-judged", type=int, default=40, help="samples per step count judged by the autoregressive model")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    if not 2 <= args.levels <= 256:
        ap.error(f"--levels must lie in 2..256, got {args.levels}")
    args.text_models = [m for m in args.text_models.split(",") if m]
    if not args.text_models or set(args.text_models) - set(TEXT):
        ap.error(f"--text-models takes some of {', '.join(TEXT)}, got {','.join(args.text_models) or 'none'}")
    args.fashion_models = [m for m in args.fashion_models.split(",") if m]
    if not args.fashion_models or set(args.fashion_models) - set(FASHION):
        ap.error(f"--fashion-models takes some of {', '.join(FASHION)}, got {','.join(args.fashion_models) or 'none'}")
    if args.fashion_repeats < 1:
        ap.error(f"--fashion-repeats must be at least 1, got {args.fashion_repeats}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(exist_ok=True)
    file = args.out / "discrete_benchmark.json"
    results = json.loads(file.read_text()) if file.exists() else {}
    parts = {"text": text_part, "steps": steps_part, "fashion": fashion_part, "swissroll": swissroll_part}
    for part in [p for p in args.parts.split(",") if p]:
        got = parts[part](args.out, args)
        if part == "fashion":  # one level count a run, some models: the other counts' and models' results stay
            old = by_levels(results.get("fashion"))
            got = {**old, **{L: {**old.get(L, {}), **models} for L, models in got.items()}}
        results[part] = got
        file.write_text(json.dumps(results, indent=1))
    (args.out / "discrete_benchmark.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
