"""Measuring runs: the toolkit behind `difflab eval` that the kinds compose (`kinds.*.evaluate`).

- `held_out` / `held_out_tokens`: examples a run never trained on (the test split; fresh points of a toy set
  from a seed training never uses);
- `check_metrics` and `scorer`: sample metrics against held-out data, each with its floor (the same figure for
  real data in place of samples): for image sets in the feature space of the shipped feature network
  (`difflab.features`: Frechet distance, precision / recall / density / coverage, the class histogram and, for
  samples drawn for given classes, the judge's accuracy), for toy sets by sample distances (exact and sliced W2,
  MMD, energy distance) and the true density's NLL of the samples;
- `guidance_sweep`: a run's sample metrics at several guidance scales (guidance.json, .md, .png);
- `prompt_set`: prompts of every (class, shade, size) in the seen or the held-out wording;
- `write_report`: every figure of a run in one eval.json and eval.md.

Every function takes a `run.Run`; `difflab.evaluate` keeps the names earlier versions had (`run_nll`, ...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .build import build_data
from .folders import write_atomically, write_json

HELD_OUT_SEED = 2_000_003  # toy sets: held-out points come from a seed training never uses
SAMPLE_METRICS = ("fid", "prdc", "accuracy", "w2", "sw", "mmd", "energy", "nll_samples")
IMAGE_METRICS = ("fid", "prdc", "accuracy")
FEATURE_SETS = ("digits", "fashion_mnist")  # image sets with a shipped feature network


def mean_se(v: Tensor) -> tuple[float, float]:
    """The mean of `v` and its standard error."""
    v = v.double()
    return float(v.mean()), (float(v.std()) / math.sqrt(v.numel()) if v.numel() > 1 else float("nan"))


def held_out(run, split: str = "test", n: int | None = None, seed: int = 0):
    """(x, true log-density or None, is_image) for `n` held-out examples of a run's data."""
    cfg = run.config
    if cfg.data.name == "toy":
        from ..data import toy_density

        density = toy_density(cfg.data.toy)
        x = density.sample(n or 2000, torch.Generator().manual_seed(HELD_OUT_SEED + seed)).float()
        return x, (density.log_prob(x.double()).float() if hasattr(density, "log_prob") else None), False
    data = build_data(cfg.data, split)
    x = data.images
    if n is not None:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(HELD_OUT_SEED + seed))[:n]]
    return x.float(), None, x.ndim == 4


def held_out_tokens(run, split: str = "test", n: int | None = None, seed: int = 0):
    """(tokens, labels or None) of `n` held-out examples of a categorical run (text: the held-out tail of the
    corpus; images: the test split; toy points: fresh points, quantized as in training)."""
    from ..data import toy_density
    from ..data.categorical import quantize
    from .build import TOY_RANGE

    cfg = run.config
    if cfg.data.name == "toy":
        x = toy_density(cfg.data.toy).sample(n or 2000, torch.Generator().manual_seed(HELD_OUT_SEED + seed))
        return quantize(x, cfg.data.levels, *TOY_RANGE), None
    data = build_data(cfg.data, split)
    idx = torch.arange(len(data))
    if n is not None and n < len(data):
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(HELD_OUT_SEED + seed))[:n]
    return data.images[idx], (data.labels[idx] if data.labels is not None else None)


def check_split(data_cfg, split: str) -> None:
    """Refuse a split the run's data does not have (toy sets draw fresh points whatever the split)."""
    import dataclasses

    if data_cfg.name != "toy":  # toy sets draw fresh points for any split
        dataclasses.replace(data_cfg, split=split)  # the data section checks its split


def check_metrics(data_cfg, metrics, labelled: bool) -> None:
    """Refuse sample metrics the run's data cannot have: image metrics on toy sets and the reverse, images without
    a shipped feature network, accuracy of samples drawn for no class, a density the toy set lacks."""
    from .._checks import choose

    for m in metrics:
        choose(m, SAMPLE_METRICS, "sample metric")
    if data_cfg.name == "toy":
        bad = [m for m in metrics if m in IMAGE_METRICS]
        if bad:
            raise ValueError(f"{', '.join(bad)} are image metrics; for a toy set use w2, sw, mmd, energy, nll_samples")
        from ..data import toy_density

        if "nll_samples" in metrics and not hasattr(toy_density(data_cfg.toy), "log_prob"):
            raise ValueError(f"toy set {data_cfg.toy!r} has no closed-form density for nll_samples")
        return
    if data_cfg.name not in FEATURE_SETS:
        raise ValueError(f"sample metrics need a built-in image set with a shipped feature network ({', '.join(FEATURE_SETS)}); "
                         f"this run trained on {data_cfg.name!r}")
    bad = [m for m in metrics if m not in IMAGE_METRICS]
    if bad:
        raise ValueError(f"{', '.join(bad)} are toy-set metrics; for images use fid, prdc, accuracy")
    if "accuracy" in metrics and not labelled:
        raise ValueError("accuracy judges samples drawn for given classes: it needs a class-conditional run, or "
                         "classifier guidance (--classifier CLF_RUN --guidance W)")


def scorer(data_cfg, metrics, n: int, seed: int):
    """(score(samples, labels) -> figures, floors): the chosen sample metrics against `n` held-out examples of the
    data `data_cfg` describes, the reference's features computed once (module doc). `score.floor_images` are the
    training images the image floor was measured with."""
    from .. import metrics as M

    check_metrics(data_cfg, metrics, labelled=True)
    if data_cfg.name == "toy":
        from ..data import toy_density

        density = toy_density(data_cfg.toy)
        draw = lambda k, g: density.sample(k, g).float()  # noqa: E731
        ref = draw(n, torch.Generator().manual_seed(HELD_OUT_SEED + seed))
        dists = {"w2": M.wasserstein2, "sw": lambda a, b: M.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed)),
                 "mmd": M.mmd, "energy": M.energy_distance}
        floors = {}
        for m in metrics:
            if m in dists:
                floors[m + "_floor"], _ = M.noise_floor(dists[m], draw, n, seeds=3, seed=HELD_OUT_SEED + 100)
            elif m == "nll_samples":
                floors[m + "_floor"], _ = mean_se(-density.log_prob(ref.double()))

        def score(x, labels):
            out = {m: dists[m](x, ref) for m in metrics if m in dists}
            if "nll_samples" in metrics:
                out["nll_samples"], out["nll_samples_se"] = mean_se(-density.log_prob(x.double()))
            return out

        return score, floors
    from ..features import image_metrics, load_feature_net

    net, net_info = load_feature_net(data_cfg.name)
    test, train = build_data(data_cfg, "test"), build_data(data_cfg, "train")
    g = torch.Generator().manual_seed(HELD_OUT_SEED + seed)
    real = test.images[torch.randperm(len(test), generator=g)[:n]] if n < len(test) else test.images
    keep = ["fd", "precision", "recall", "density", "coverage"] if "prdc" in metrics else ["fd"]
    if "fid" not in metrics:
        keep.remove("fd")
    floor_images = train.images[torch.randperm(len(train), generator=g)[:n]]
    floor = image_metrics(net, real, floor_images)  # real data as "samples"
    floors = {k + "_floor": floor[k] for k in keep}

    def score(x, labels):
        res = image_metrics(net, real, x, labels=labels)
        out = {k: res[k] for k in keep}
        out.update({"mean_top_prob": res["mean_top_prob"], "class_fractions": res["class_fractions"],
                    "feature_net_test_accuracy": net_info["test_accuracy"], "reference": f"{len(real)} test images"})
        if labels is not None:
            out["accuracy"] = res["accuracy"]
        return out

    score.floor_images = floor_images
    return score, floors


def guidance_sweep(run, scales, metrics=("accuracy", "fid", "prdc"), *, guide: dict | None = None, name: str = "guidance",
                   **kwargs) -> dict:
    """The accuracy-against-diversity trade of guidance: the run's sample metrics (`Kind.sample_metrics`) at each
    scale w in `scales` (w = 0 is no guidance: the conditional model, or for classifier guidance the unconditional
    one steered by nothing). Writes `name`.json, .md and .png into the run folder."""
    scales = [float(w) for w in scales]
    if not scales:
        raise ValueError("give the guidance scales to compare, e.g. --guidance 0,1,3")
    rows = []
    for w in scales:
        res = sample_metrics(run, metrics, guide={**(guide or {}), "scale": w}, **kwargs)
        rows.append({"scale": w, **{k: v for k, v in res.items() if k not in ("class_fractions", "guidance")}})
    shown = {k: str(v) for k, v in (guide or {}).items() if v is not None and not (k == "rescale" and not v)}
    result = {"run": str(run.folder), "guide": shown, "rows": rows}
    write_json(run.folder / f"{name}.json", result)
    _guidance_md(result, run.folder / f"{name}.md")
    _guidance_plot(result, run.folder / f"{name}.png")
    return result


def sample_metrics(run, metrics=("fid", "prdc"), **kwargs) -> dict:
    """Draw samples from a run and score them (its kind's `sample_metrics`)."""
    measure = getattr(run.kind, "sample_metrics", None)
    if measure is None:
        raise ValueError(run.kind.no_samples(run))
    return measure(run, tuple(metrics), **kwargs)


def _guidance_md(result: dict, out: Path) -> None:
    figures = [k for k in ("accuracy", "fd", "precision", "recall", "density", "coverage", "w2", "sw") if k in result["rows"][0]]
    how = ", ".join(f"{k} {v}" for k, v in result["guide"].items()) or "classifier-free"
    lines = [f"# Guidance on `{result['run']}` ({how})", "",
             "| w | " + " | ".join(figures) + " | NFE | seconds |", "|---|" + "---|" * (len(figures) + 2)]
    for r in result["rows"]:
        lines.append(f"| {r['scale']:g} | " + " | ".join(f"{r[k]:.4f}" for k in figures) + f" | {r['nfe']} | {r['sample_seconds']} |")
    floors = ", ".join(f"{k} {result['rows'][0][k + '_floor']:.4f}" for k in figures if k + "_floor" in result["rows"][0])
    lines += ["", f"Floors (real data in place of samples): {floors}." if floors else ""]
    out.write_text("\n".join(lines) + "\n")


def _guidance_plot(result: dict, out: Path) -> None:
    from ..viz import _plt, _save

    plt = _plt()
    rows = result["rows"]
    w = [r["scale"] for r in rows]
    panels = [k for k in ("accuracy", "fd", "precision", "recall") if k in rows[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, k in zip(axes[0], panels):
        ax.plot(w, [r[k] for r in rows], "o-")
        if k + "_floor" in rows[0]:
            ax.axhline(rows[0][k + "_floor"], color="k", lw=0.8, ls=":", label="real data")
            ax.legend(fontsize=7)
        ax.set_xlabel("guidance scale w"), ax.set_title(k)
    _save(fig, out, title=f"guidance on {result['run']}")


_SAMPLE_LABELS = {"fd": "Frechet distance (feature net)", "precision": "precision", "recall": "recall", "density": "density",
                  "coverage": "coverage", "w2": "W2 (exact)", "sw": "sliced W2", "mmd": "MMD^2", "energy": "energy distance",
                  "nll_samples": "true NLL of the samples (nats)", "accuracy": "classifier accuracy on the labels",
                  "mean_top_prob": "mean top-class probability"}

_LABELS = {"bits_per_symbol": "bits / symbol", "nll_nats": "NLL (nats / example)", "bpd": "bits / dim (probability flow)", "entropy_nats":
           "true entropy of the same points (nats)", "kl_gap_nats": "KL gap (nats)", "nelbo_nats":
           "negative ELBO (nats / example)", "elbo_bpd": "bits / dim (ELBO)", "elbo_kl_gap_nats": "ELBO KL gap (nats)"}



def write_report(run, key: str, result: dict, command: str) -> Path:
    """Merge `result` under `key` into the run folder's eval.json and rewrite its eval.md from it."""
    run_dir = Path(getattr(run, "folder", run))
    path = run_dir / "eval.json"
    try:
        allres = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(allres, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):  # a damaged report is kept aside, not silently dropped
        path.replace(path.with_suffix(".json.damaged"))
        allres = {}
    allres[key] = {**result, "command": command}
    write_json(path, allres)
    lines = [f"# Evaluation of `{run_dir}`", ""]
    for k, r in allres.items():
        if k == "reconstruction":
            lines += [f"## {k}", "", f"`{r.get('command', '')}`", "", "| figure | value |", "|---|---|",
                      f"| PSNR of {r['n']} {r['split']} images | {r['psnr']:.2f} +- {r['psnr_se']:.2f} dB |"]
            if "fd" in r:
                for name in ("fd", "precision", "recall"):
                    lines.append(f"| {_SAMPLE_LABELS[name]} of reconstructed training images (real images) | "
                                 f"{r[name]:.4f} ({r[name + '_floor']:.4f}) |")
            lines += [f"| latents | {' x '.join(map(str, r['latent_shape']))}; per channel mean "
                      f"{', '.join(f'{v:.3f}' for v in r['latent_mean'])}, std {', '.join(f'{v:.3f}' for v in r['latent_std'])} |",
                      f"| scale (1 / std) | {r['scale']:.4f} |", f"| time | {r['seconds']} s |", ""]
            continue
        if k.startswith("samples"):
            lines += [f"## {k}", "", f"`{r.get('command', '')}`", "", "| figure | samples | real data (floor) |", "|---|---|---|"]
            for name, label in _SAMPLE_LABELS.items():
                if name in r:
                    floor = r.get(name + "_floor")
                    lines.append(f"| {label} | {r[name]:.4f} | {'' if floor is None else f'{floor:.4f}'} |")
            if "base_steps" in r:  # a cascade
                lines += [f"| samplers | {r['sampler']}, {r['base_steps']} + {r['steps']} steps, augmentation level "
                          f"{r['level']:g}, {r['sample_seconds']} s for {r['n']} |", ""]
                continue
            lines += [f"| sampler | {r['sampler']}, {r['steps']} steps on the {r.get('grid', 'default')} grid, {r['nfe']} NFE, "
                      f"{r['sample_seconds']} s for {r['n']} |", ""]
            continue
        lines += [f"## {k}", "", f"`{r.get('command', '')}`", "", "| figure | value |", "|---|---|"]
        for name, label in _LABELS.items():
            if name in r:
                lines.append(f"| {label} | {r[name]:.4f} +- {r.get(name + '_se', float('nan')):.4f} |")
        lines.append(f"| examples | {r['n']} ({r['split']}) |")
        if "bound" in r:
            lines.append(f"| estimate | {'an upper bound (its one-sample estimate, ' + str(r['repeats']) + ' draws per example)' if r['bound'] else 'exact (autoregressive)'}, {r['positions']} symbols per example |")
        if "method" in r:
            lines.append(f"| probability flow | {r['method']} divergence, rtol {r['rtol']}, t_start {r['t_start']:.3g}, "
                         f"{r['nfe_per_batch']:.0f} NFE per batch |")
        if "elbo_terms" in r:
            lines.append(f"| ELBO | {'all steps' if r['elbo_terms'] is None else str(r['elbo_terms']) + ' steps per example'} |")
        lines.append(f"| time | {r['seconds']} s |")
        lines.append("")
    write_atomically(run_dir / "eval.md", lambda tmp: tmp.write_text("\n".join(lines)))
    return path


def prompt_set(split: str = "seen", seed: int = 0) -> list:
    """One prompt per (class, shade, size) of Fashion-MNIST (90), each naming all three, in the wording of
    `split` ("seen": the training captions' vocabulary; "held_out": synonyms and templates never trained on),
    drawn with a fixed seed (`data.captions`); "user": the 100 prompts written as a user would
    (`data.user_prompts`, the class always, shade and size where they say it; a test set only)."""
    import random

    from ..data.captions import captions

    if split == "user":
        from ..data.user_prompts import user_prompts

        return user_prompts()

    rng = random.Random(seed)
    table = [c for c in captions(split) if c.size is not None]
    by_key: dict = {}
    for c in table:
        by_key.setdefault((c.label, c.shade, c.size), []).append(c)
    return [rng.choice(by_key[k]) for k in sorted(by_key)]

