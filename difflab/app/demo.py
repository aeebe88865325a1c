"""The demos behind `difflab demo` (train on the built-in digits) and `difflab oracle-demo` (no training)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .. import metrics, oracles, paths, viz
from ..sampling import sample, sample_batched
from .config import load_config
from .folders import write_atomically, write_json
from .requests import sampling_settings
from .run import Run
from .trainer import train

DEMO_SAMPLERS = ["ddpm", "ddim", "euler_maruyama", "pc", "ode_euler", "ode_heun", "dpmpp_2m", "dpmpp_2m_sde", "annealed_langevin"]


def digits_demo(out: str | Path = "runs/demo", *, overrides: list[str] | None = None, n: int = 1000, seed: int = 0,
                device: str = "cpu", progress: bool = True, log=print) -> dict:
    """Train the `digits` preset into `out` (resuming if it is there), sample `n` digits and judge them.

    Writes samples.png, reverse.gif (the reverse process of 64 samples), loss.png, report.md and
    report.json into the run folder; returns the report.
    """
    from .folders import check_run_folder
    from .requests import _seed, check_fits

    out = Path(out)
    cfg = load_config("digits", [f"train.device={json.dumps(device)}", *(overrides or [])])
    _seed(seed)  # every request checked before training starts: nothing trained for a request that will be refused
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--n {n}: the number of digits to draw and judge, at least 1")
    check_fits(n, 64)
    check_run_folder(out)
    t0 = time.time()
    result = train(cfg, out, progress=progress)
    train_s = time.time() - t0
    log(f"trained {result.step} steps in {train_s:.0f} s")

    run = Run.open(out)
    den, path, cfg = run.load(device=device)
    shape = tuple(run.facts["shape"])
    how = sampling_settings(cfg)
    t1 = time.time()
    x, info = sample_batched(den, path, n, shape, seed=seed, device=device, return_info=True, **how)
    sample_s = time.time() - t1
    frames = []
    sample(den, path, (64, *shape), generator=torch.Generator().manual_seed(seed + 1), device=device,
           callback=lambda d: frames.append(d["x"].clamp(-1, 1)), **how)

    predict, clf_acc = metrics.digits_classifier()
    rep = metrics.class_report(predict(x))
    from ..data import digits

    real = metrics.class_report(predict(digits("test").images))
    viz.save_image_grid(x[:100], out / "samples.png", nrow=10, scale=6)
    viz.save_gif(frames, out / "reverse.gif", nrow=8, scale=4)
    viz.loss_curve(out / "log.csv", out / "loss.png", title=f"{cfg.name}: training loss")
    report = {
        "train_steps": result.step, "train_seconds": round(train_s, 1), "sampler": how["sampler"], "sampler_steps": how["steps"],
        "nfe": info.nfe, "samples": n, "sample_seconds": round(sample_s, 2), "classifier_test_accuracy": clf_acc,
        "mean_top_prob": rep["mean_top_prob"], "class_fractions": rep["class_fractions"],
        "min_class_fraction": rep["min_class_fraction"], "max_class_fraction": rep["max_class_fraction"],
        "real_test_mean_top_prob": real["mean_top_prob"],
        "goal_met": rep["mean_top_prob"] >= 0.9 and 0.05 <= rep["min_class_fraction"] and rep["max_class_fraction"] <= 0.15,
    }
    write_json(out / "report.json", report)
    frac = ", ".join(f"{i}: {100 * f:.1f}%" for i, f in enumerate(rep["class_fractions"]))
    md = f"""# difflab demo: pixel DDPM on scikit-learn's 8x8 digits

- Training: {result.step} steps in {train_s:.0f} s (config `configs/digits.toml`, device {device}).
- Sampling: {n} samples with `{how["sampler"]}`, {info.nfe} network evaluations, {sample_s:.1f} s.
- Judge: logistic regression fitted on the digits train split (test accuracy {100 * clf_acc:.1f}%).
- Mean top-class probability of the samples: **{rep['mean_top_prob']:.3f}** (goal >= 0.9; real test digits: {real['mean_top_prob']:.3f}).
- Share of each class (goal 5-15% each): {frac}.
- Goal met: **{'yes' if report['goal_met'] else 'no'}**.

Pictures: `samples.png` (100 samples), `reverse.gif` (noise to digits), `loss.png` (training loss).
"""
    write_atomically(out / "report.md", lambda tmp: tmp.write_text(md))
    return report


def oracle_demo(out: str | Path = "runs/oracle-demo", *, n: int = 4000, budgets=(10, 50), seed: int = 0,
                device: str = "cpu", log=print) -> list[tuple]:
    """Every sampler on the exact 8-mode ring (DDPM linear schedule), at each NFE budget: a picture and a table."""
    from .bench import difflab_job, sweep

    from .requests import _seed

    _seed(seed)
    out = Path(out)
    dev = torch.device(device)
    mix = oracles.ring_mixture(8, radius=4.0, std=0.4)
    path = paths.DiscreteVP.linear(1000)
    den = mix.denoiser(path)
    g = torch.Generator().manual_seed(seed)
    data = mix.sample(n, g, device=dev)
    floor = metrics.sliced_wasserstein(mix.sample(n, g, device=dev), data, generator=torch.Generator().manual_seed(1))
    panels, subs = {}, {}

    def keep(job, nfe, x):
        panels.setdefault(f"~{nfe} NFE", {})[job.label] = x

    def score(x):
        return {"SW2": metrics.sliced_wasserstein(x, data, generator=torch.Generator().manual_seed(1))}

    x_T = path.prior_sample((n, 2), torch.Generator().manual_seed(seed), device=dev)
    found = sweep([difflab_job(den, path, s) for s in DEMO_SAMPLERS], x_T, budgets, score, seed=seed, batch_size=n,
                  on_samples=keep, log=None, errors=())
    rows = [(r["nfe_budget"], r["sampler"], r["nfe"], r["SW2"], r["seconds_per_sample"] * n) for r in found]
    for b, s, k, sw, _ in rows:
        subs.setdefault(f"~{b} NFE", {})[s] = f"NFE {k}, SW2 {sw:.3f}"
    out.mkdir(parents=True, exist_ok=True)
    png = viz.scatter_grid(panels, out / "samplers.png", reference=data.cpu(), subtitles=subs, lim=1.4 * float(data.abs().max()),
                           title=f"8-mode ring, DDPM linear schedule, exact denoiser; data in grey; noise floor SW2 {floor:.3f}")
    lines = ["# difflab oracle demo: every sampler on the exact 8-mode ring", "",
             f"Path: {path!r}; {n} samples per sampler; sliced 2-Wasserstein to fresh data (noise floor {floor:.4f}).", "",
             "| budget | sampler | NFE | sliced W2 | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {b} | {s} | {k} | {sw:.4f} | {secs:.2f} |" for b, s, k, sw, secs in rows]
    write_atomically(out / "report.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    log("\n".join(lines[2:]))
    log(f"\nwrote {png} and {out / 'report.md'}")
    return rows
