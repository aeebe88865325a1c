"""Evaluating a trained run on held-out data: the figures behind `difflab eval`.

`run_sample_metrics` draws samples with any sampler and scores them against held-out data: for
image sets in the feature space of the shipped feature network (`difflab.features`: Frechet
distance, precision / recall / density / coverage, the class histogram and, for class-conditional
runs, the classifier's accuracy on the requested labels), for toy sets by sample distances (exact
and sliced W2, MMD, energy distance) and the true density's NLL of the samples. Each figure comes
with its floor: the same figure for real data in place of samples.

`run_autoencoder_metrics` measures an autoencoder run (the first stage of latent diffusion): PSNR of the
reconstructions of held-out images, the Frechet distance and precision / recall of reconstructed training
images against the same reference as samples (the floor any latent model over it can reach, beside the
floor of real images), and the latents' per-channel mean and standard deviation with the scale a latent
run would use.

`run_nll` measures a run's negative log-likelihood on a data split by the probability-flow ODE
(`likelihood.log_likelihood`) and, for discrete-time paths when asked, the DDPM ELBO. Images are
dequantized and reported in bits per dimension; for toy sets with a known density the true
entropy of the same points is measured beside it, so the KL gap E[log p - log p_model] comes with
its standard error. `write_report` keeps every metric of a run in one `eval.json` and `eval.md`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from .config import build_data, build_source
from .likelihood import bits_per_dim, dequantize, elbo, log_likelihood
from ._random import derive_seed
from .runs import data_info, diffusion_config, load, run_config

HELD_OUT_SEED = 2_000_003  # toy sets: held-out points come from a seed training never uses


def _mean_se(v: Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), (float(v.std()) / math.sqrt(v.numel()) if v.numel() > 1 else float("nan"))


def held_out(run_dir, split: str = "test", n: int | None = None, seed: int = 0):
    """(x, true log-density or None, is_image) for `n` held-out examples of a run's data."""
    cfg = run_config(run_dir)
    if cfg.data.name == "toy":
        from .data import toy_density

        density = toy_density(cfg.data.toy)
        x = density.sample(n or 2000, torch.Generator().manual_seed(HELD_OUT_SEED + seed)).float()
        return x, (density.log_prob(x.double()).float() if hasattr(density, "log_prob") else None), False
    data = build_data(cfg.data, split)
    x = data.images
    if n is not None:
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(HELD_OUT_SEED + seed))[:n]]
    return x.float(), None, x.ndim == 4


def run_nll(run_dir, *, split: str = "test", n: int | None = None, method: str | None = None, probes: int = 1,
            rtol: float = 1e-5, atol: float = 1e-5, flow: bool = True, with_elbo: bool = False, elbo_terms: int | None = None,
            batch_size: int = 500, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """The run's NLL on `n` held-out examples (all of the split when None) by the probability flow (`flow`)
    and/or the DDPM ELBO (`with_elbo`); see the module doc."""
    if not (flow or with_elbo):
        raise ValueError("nothing to measure: ask for the probability-flow NLL and/or the ELBO")
    from tqdm import tqdm

    diffusion_config(run_dir)
    info = data_info(run_dir)
    if info.get("latent") or info.get("low_res"):
        what = "latents, not of images" if info.get("latent") else "images given their low-resolution versions"
        raise ValueError(f"{run_dir}: its likelihood would be of {what}; measure its samples (fid, prdc) instead")
    den, path, cfg = load(run_dir, device=device, clip=False)
    x, true_logp, image = held_out(run_dir, split, n, seed)
    dims = x[0].numel()
    method = method or ("exact" if dims <= 64 else "hutchinson")
    g = torch.Generator().manual_seed(seed)
    # a continuous-time model is only trained down to its t_min: the flow starts there (x is read as x_{t_min})
    t_start = path.t_min if path.discrete else cfg.diffusion.t_min
    value_range = tuple(data_info(run_dir).get("range") or (-1.0, 1.0))
    prior = None
    if flow and cfg.data.source:  # a flow from a data set: its log-density at t = 1 replaces the Gaussian prior's
        source = build_source(cfg.data)
        if not hasattr(source, "log_prob"):
            raise ValueError(f"the run's source {cfg.data.source!r} has no density in closed form, so the flow's likelihood "
                             "cannot be computed; measure it by samples (W2) instead")
        prior = source.log_prob
    logps, elbos, nfes = [], [], []
    t0 = time.time()
    for xb in tqdm(x.split(batch_size), desc="likelihood", disable=not progress, unit="batch"):
        xb = xb.to(device)
        if flow:
            y = dequantize(xb, g, value_range=value_range) if image else xb
            lp, info = log_likelihood(den, path, y, method=method, probes=probes, rtol=rtol, atol=atol, generator=g,
                                      t_start=t_start, prior=prior, return_info=True)
            logps.append(lp.cpu())
            nfes.append(info.nfe)
        if with_elbo:
            elbos.append(elbo(den, path, xb, decoder="discretized" if image else "gaussian", terms=elbo_terms,
                              steps=None if path.discrete else cfg.diffusion.T, generator=g).cpu())
    out = {"split": "held-out draw" if cfg.data.name == "toy" else split, "n": len(x), "seconds": round(time.time() - t0, 1)}
    if true_logp is not None:
        out["entropy_nats"], out["entropy_nats_se"] = _mean_se(-true_logp)
    if flow:
        nll = -torch.cat(logps)
        out.update(method=method, probes=probes if method == "hutchinson" else None, rtol=rtol, atol=atol,
                   t_start=t_start, nfe_per_batch=sum(nfes) / len(nfes))
        out["nll_nats"], out["nll_nats_se"] = _mean_se(nll)
        if image:
            out["bpd"], out["bpd_se"] = _mean_se(bits_per_dim(nll, dims, value_range=value_range))
    if flow and true_logp is not None:
        out["kl_gap_nats"], out["kl_gap_nats_se"] = _mean_se(nll + true_logp)  # paired: E[log p - log p_model]
    if with_elbo:
        nelbo = -torch.cat(elbos)
        out["elbo_terms"] = elbo_terms
        out["nelbo_nats"], out["nelbo_nats_se"] = _mean_se(nelbo)
        if image:
            out["elbo_bpd"], out["elbo_bpd_se"] = _mean_se(nelbo / (dims * math.log(2)))
        if true_logp is not None:
            out["elbo_kl_gap_nats"], out["elbo_kl_gap_nats_se"] = _mean_se(nelbo + true_logp)
    return out


SAMPLE_METRICS = ("fid", "prdc", "accuracy", "w2", "sw", "mmd", "energy", "nll_samples")
IMAGE_METRICS = ("fid", "prdc", "accuracy")


def held_out_tokens(run_dir, split: str = "test", n: int | None = None, seed: int = 0):
    """(tokens, labels or None) of `n` held-out examples of a categorical run (text: the held-out tail of the
    corpus; images: the test split; toy points: fresh points, quantized as in training)."""
    import dataclasses

    from .config import TOY_RANGE
    from .data import toy_density
    from .data.categorical import quantize

    cfg = run_config(run_dir)
    if cfg.data.name == "toy":
        x = toy_density(cfg.data.toy).sample(n or 2000, torch.Generator().manual_seed(HELD_OUT_SEED + seed))
        return quantize(x, cfg.data.levels, *TOY_RANGE), None
    data = build_data(dataclasses.replace(cfg.data, split=split))
    idx = torch.arange(len(data))
    if n is not None and n < len(data):
        idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(HELD_OUT_SEED + seed))[:n]
    return data.images[idx], (data.labels[idx] if data.labels is not None else None)


def run_discrete_nll(run_dir, *, split: str = "test", n: int | None = None, repeats: int = 4, batch_size: int = 256,
                     seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """Bits per symbol of a discrete run on held-out data: the one-sample estimate of its bound (the D3PM
    bound, or the masked-diffusion bound), averaged over `repeats` draws per example (an upper bound on
    the NLL in expectation); for an autoregressive run the exact NLL."""
    from . import discrete

    cfg = run_config(run_dir)
    if cfg.kind not in ("discrete", "autoregressive"):
        raise ValueError(f"{run_dir} is a {cfg.kind} run; bits per symbol are for discrete and autoregressive runs")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model, path, cfg = load(run_dir, device=device)
    x, labels = held_out_tokens(run_dir, split, n, seed)
    cond_on = cfg.model.class_conditional
    positions = int(x[0].numel())
    bos = int(data_info(run_dir)["symbols"])  # an autoregressive run's beginning-of-sequence token
    g = torch.Generator().manual_seed(derive_seed(seed, "discrete-nll"))
    per_example, started = [], time.perf_counter()
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="bits per symbol", unit="batch")
    with torch.no_grad():
        for i in starts:
            xb = x[i:i + batch_size].to(device)
            cond = {"label": labels[i:i + batch_size].to(device)} if cond_on and labels is not None else {}
            if cfg.kind == "autoregressive":
                per_example.append(discrete.autoregressive.nll(model, xb, bos=bos, **cond).double().cpu())
                continue
            draws = []
            for _ in range(repeats):
                if cfg.discrete.loss_name == "masked":
                    draws.append(discrete.masked_loss(model, path, xb, generator=g, **cond))
                else:
                    draws.append(discrete.vb_loss(model, path, xb, generator=g, **cond))
            per_example.append(torch.stack(draws).double().mean(0).cpu())
    nats = torch.cat(per_example)
    mean, se = _mean_se(nats)
    bits = 1 / (positions * math.log(2))
    return {"bits_per_symbol": mean * bits, "bits_per_symbol_se": se * bits, "nats_per_example": mean, "n": len(x),
            "split": split if cfg.data.name != "toy" else "fresh points", "positions": positions,
            "bound": cfg.kind == "discrete", "repeats": repeats if cfg.kind == "discrete" else 1,
            "seconds": round(time.perf_counter() - started, 1)}


def _draw(run_dir, cfg, n, sampler, steps, seed, device, batch_size, labels=None, grid=None, guide=None):
    """n samples of a run (by batches, the same for any batch size), with the run's own sampler settings
    unless overridden, guided as `guide` asks (`runs.load_guided` keywords)."""
    from .runs import load_guided, sampling_settings, source_sample
    from .sampling import default_grid, parse_sampler_spec, sample_batched

    from .runs import check_unconditioned_samples

    check_unconditioned_samples(run_dir)
    how = sampling_settings(cfg, sampler, steps, grid)
    den, path, _ = load_guided(run_dir, device=device, **(guide or {}))
    shape = tuple(data_info(run_dir)["shape"])
    t0 = time.time()
    x, info = sample_batched(den, path, n, shape, seed=seed, batch_size=batch_size, device=device,
                             x=source_sample(cfg, n, torch.Generator().manual_seed(seed)),
                             cond={"label": labels} if labels is not None else None, return_info=True, **how)
    x = _decoded(den, x, batch_size, device)
    return x, {"sampler": parse_sampler_spec(sampler or cfg.sample.sampler).label, "grid": how["grid"] or default_grid(path),
               "steps": how["steps"], "nfe": info.nfe, "sample_seconds": round(time.time() - t0, 1)}


def _decoded(den, x: Tensor, batch_size: int, device) -> Tensor:
    """Images from a latent diffusion run's samples (its denoiser's `decode`); other samples as they are."""
    from .latent import decode_images

    return decode_images(den.decode, x, batch_size=batch_size, device=device) if hasattr(den, "decode") else x


def _labels(run_dir, cfg, n: int, guide: dict | None) -> Tensor | None:
    """Equal numbers of every class, for a class-conditional run or one guided by a classifier."""
    classifier = (guide or {}).get("classifier")
    if not cfg.model.class_conditional and classifier is None:
        return None
    return torch.arange(n) % data_info(classifier if classifier is not None else run_dir)["num_classes"]


def _scorer(run_dir, cfg, metrics, n: int, seed: int):
    """(score(samples, labels) -> figures, floors): the chosen sample metrics against held-out data, with the
    reference set's features computed once (module doc)."""
    from . import metrics as M
    from ._checks import choose

    for m in metrics:
        choose(m, SAMPLE_METRICS, "sample metric")
    if cfg.data.name == "toy":
        from .data import toy_density

        bad = [m for m in metrics if m in IMAGE_METRICS]
        if bad:
            raise ValueError(f"{', '.join(bad)} are image metrics; for a toy set use w2, sw, mmd, energy, nll_samples")
        density = toy_density(cfg.data.toy)
        draw = lambda k, g: density.sample(k, g).float()  # noqa: E731
        ref = draw(n, torch.Generator().manual_seed(HELD_OUT_SEED + seed))
        dists = {"w2": M.wasserstein2, "sw": lambda a, b: M.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed)),
                 "mmd": M.mmd, "energy": M.energy_distance}
        if "nll_samples" in metrics and not hasattr(density, "log_prob"):
            raise ValueError(f"toy set {cfg.data.toy!r} has no closed-form density for nll_samples")
        floors = {}
        for m in metrics:
            if m in dists:
                floors[m + "_floor"], _ = M.noise_floor(dists[m], draw, n, seeds=3, seed=HELD_OUT_SEED + 100)
            elif m == "nll_samples":
                floors[m + "_floor"], _ = _mean_se(-density.log_prob(ref.double()))

        def score(x, labels):
            out = {m: dists[m](x, ref) for m in metrics if m in dists}
            if "nll_samples" in metrics:
                out["nll_samples"], out["nll_samples_se"] = _mean_se(-density.log_prob(x.double()))
            return out

        return score, floors
    if cfg.data.name not in ("digits", "fashion_mnist"):
        raise ValueError(f"sample metrics need a built-in image set with a shipped feature network (digits, fashion_mnist); "
                         f"this run trained on {cfg.data.name!r}")
    bad = [m for m in metrics if m not in IMAGE_METRICS]
    if bad:
        raise ValueError(f"{', '.join(bad)} are toy-set metrics; for images use fid, prdc, accuracy")
    from .features import image_metrics, load_feature_net

    net, net_info = load_feature_net(cfg.data.name)
    test, train = build_data(cfg.data, "test"), build_data(cfg.data, "train")
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
        elif "accuracy" in metrics:
            raise ValueError("accuracy judges samples drawn for given classes: it needs a class-conditional run, or "
                             "classifier guidance (--classifier CLF_RUN --guidance W)")
        return out

    score.floor_images = floor_images  # the training images of the floor (an autoencoder reconstructs them)
    return score, floors


def run_sample_metrics(run_dir, metrics=("fid", "prdc"), *, sampler: str | None = None, steps: int | None = None,
                       grid: str | None = None, n: int = 1000, seed: int = 0, device: str = "cpu", batch_size: int = 500,
                       guide: dict | None = None) -> dict:
    """Sample `n` examples from a run (guided as `guide` asks: `runs.load_guided` keywords) and score them
    (module doc); returns a flat dict of figures. A cascade run is sampled through both stages (`guide` may
    hold only a scale)."""
    if run_config(run_dir).kind == "cascade":
        return _cascade_metrics(run_dir, metrics, sampler=sampler, steps=steps, n=n, seed=seed, device=device,
                                batch_size=batch_size, guide=guide, grid=grid)
    cfg = diffusion_config(run_dir)
    if cfg.model.text_conditional:
        raise ValueError(f"{run_dir} is text-conditional: its samples are drawn for prompts; measure it with "
                         "difflab.evaluate.run_text_metrics (benchmarks/text2image.py)")
    score, floors = _scorer(run_dir, cfg, metrics, n, seed)
    labels = _labels(run_dir, cfg, n, guide)
    x, out = _draw(run_dir, cfg, n, sampler, steps, seed, device, batch_size, labels, grid, guide)
    out["n"] = n
    if guide and guide.get("scale") is not None:
        out["guidance"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in guide.items() if v is not None}
    out.update(score(x, labels))
    out.update(floors)
    return out


def _cascade_metrics(run_dir, metrics, *, sampler, steps, n, seed, device, batch_size, guide, grid) -> dict:
    from .runs import cascade_sample

    info = data_info(run_dir)
    if grid is not None or any(v for k, v in (guide or {}).items() if k != "scale" and v is not None):
        raise ValueError("a cascade is measured with --guidance W, --sampler and --steps (its second stage's); "
                         "grids and the other guidance options apply to single runs")
    stages = {r: run_config(info["cascade"][r]) for r in ("base", "super_resolution")}
    score, floors = _scorer(run_dir, stages["super_resolution"], metrics, n, seed)
    labels = torch.arange(n) % info["num_classes"] if any(c.model.class_conditional for c in stages.values()) else None
    x, _, how = cascade_sample(run_dir, n, labels=labels, guidance=(guide or {}).get("scale"), sampler=sampler, steps=steps,
                               seed=seed, batch_size=batch_size, device=device)
    b, s = how["base"], how["super_resolution"]
    out = {"sampler": f"{b['sampler']} then {s['sampler']}", "steps": s["steps"], "grid": s["grid"] or "default",
           "nfe": None, "base_steps": b["steps"], "level": how["level"], "sample_seconds": how["sample_seconds"], "n": n}
    if guide and guide.get("scale") is not None:
        out["guidance"] = {"scale": guide["scale"]}
    out.update(score(x.clamp(-1, 1), labels))
    out.update(floors)
    return out


def run_guidance_sweep(run_dir, scales, metrics=("accuracy", "fid", "prdc"), *, guide: dict | None = None,
                       name: str = "guidance", **kwargs) -> dict:
    """The accuracy-against-diversity trade of guidance: `run_sample_metrics` at each scale w in `scales`
    (w = 0 is no guidance: the conditional model, or for classifier guidance the unconditional one
    steered by nothing). Writes `name`.json, .md and .png into the run folder."""
    scales = [float(w) for w in scales]
    if not scales:
        raise ValueError("give the guidance scales to compare, e.g. --guidance 0,1,3")
    rows = []
    for w in scales:
        g = {**(guide or {}), "scale": w}
        res = run_sample_metrics(run_dir, metrics, guide=g, **kwargs)
        rows.append({"scale": w, **{k: v for k, v in res.items() if k not in ("class_fractions", "guidance")}})
    shown = {k: str(v) for k, v in (guide or {}).items() if v is not None and not (k == "rescale" and not v)}
    result = {"run": str(run_dir), "guide": shown, "rows": rows}
    run_dir = Path(run_dir)
    _write_json(run_dir / f"{name}.json", result)
    _guidance_md(result, run_dir / f"{name}.md")
    _guidance_plot(result, run_dir / f"{name}.png")
    return result


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
    from .viz import _plt, _save

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


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


_SAMPLE_LABELS = {"fd": "Frechet distance (feature net)", "precision": "precision", "recall": "recall", "density": "density",
                  "coverage": "coverage", "w2": "W2 (exact)", "sw": "sliced W2", "mmd": "MMD^2", "energy": "energy distance",
                  "nll_samples": "true NLL of the samples (nats)", "accuracy": "classifier accuracy on the labels",
                  "mean_top_prob": "mean top-class probability"}

_LABELS = {"bits_per_symbol": "bits / symbol", "nll_nats": "NLL (nats / example)", "bpd": "bits / dim (probability flow)", "entropy_nats":
           "true entropy of the same points (nats)", "kl_gap_nats": "KL gap (nats)", "nelbo_nats":
           "negative ELBO (nats / example)", "elbo_bpd": "bits / dim (ELBO)", "elbo_kl_gap_nats": "ELBO KL gap (nats)"}


@torch.no_grad()
def run_autoencoder_metrics(run_dir, *, split: str = "test", n: int | None = 1000, seed: int = 0, batch_size: int = 500,
                            device: str = "cpu") -> dict:
    """Reconstruction figures of an autoencoder run (module doc)."""
    from .latent import decode_images, encode_images, measure_scale

    started = time.perf_counter()
    cfg = run_config(run_dir)
    if cfg.kind != "autoencoder":
        raise ValueError(f"{run_dir} is a {cfg.kind} run, not an autoencoder")
    ae, _, _ = load(run_dir, device=device)
    x, _, _ = held_out(run_dir, split, n, seed)

    def reconstruct(images):
        z = encode_images(ae, images, batch_size=batch_size, device=device)
        return z, decode_images(ae.decode, z, batch_size=batch_size, device=device)

    z, x_hat = reconstruct(x)
    mse = ((x_hat.clamp(-1, 1) - x) / 2).square().flatten(1).mean(1)  # on the [0, 1] scale
    psnr, psnr_se = _mean_se(-10 * torch.log10(mse.clamp_min(1e-12)))
    out = {"psnr": psnr, "psnr_se": psnr_se, "mse": float(mse.mean()), "n": len(x), "split": split,
           "latent_shape": list(z.shape[1:]), "latent_mean": [float(v) for v in z.double().mean((0, 2, 3))],
           "latent_std": [float(v) for v in z.double().std((0, 2, 3))], "scale": measure_scale(z)}
    if cfg.data.name in ("digits", "fashion_mnist"):  # the reconstructions' distance, where a feature net is shipped
        score, floors = _scorer(run_dir, cfg, ("fid", "prdc"), len(x), seed)
        res = score(reconstruct(score.floor_images)[1].clamp(-1, 1), None)
        out.update({k: res[k] for k in ("fd", "precision", "recall")}, **{k: floors[k] for k in ("fd_floor", "precision_floor", "recall_floor")})
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def write_report(run_dir, key: str, result: dict, command: str) -> Path:
    """Merge `result` under `key` into run_dir/eval.json and rewrite run_dir/eval.md from it."""
    run_dir = Path(run_dir)
    path = run_dir / "eval.json"
    try:
        allres = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(allres, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):  # a damaged report is kept aside, not silently dropped
        path.replace(path.with_suffix(".json.damaged"))
        allres = {}
    allres[key] = {**result, "command": command}
    _write_json(path, allres)
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
    (run_dir / "eval.md").write_text("\n".join(lines))
    return path


# -- text-conditional runs: does a sample show what its prompt says? ------------------------------------------

def prompt_set(split: str = "seen", seed: int = 0) -> list:
    """One prompt per (class, shade, size) of Fashion-MNIST (90), each naming all three, in the wording of
    `split` ("seen": the training captions' vocabulary; "held_out": synonyms and templates never trained on),
    drawn with a fixed seed (`data.captions`)."""
    import random

    from .data.captions import captions

    rng = random.Random(seed)
    table = [c for c in captions(split) if c.size is not None]
    by_key: dict = {}
    for c in table:
        by_key.setdefault((c.label, c.shade, c.size), []).append(c)
    return [rng.choice(by_key[k]) for k in sorted(by_key)]


def run_text_metrics(run_dir, prompts: list, scales, *, per_prompt: int = 4, sampler: str | None = None,
                     steps: int | None = None, seed: int = 0, batch_size: int = 500, device: str = "cpu",
                     reference: int = 1000) -> list[dict]:
    """For each classifier-free scale w in `scales`: `per_prompt` samples of each prompt (a `data.captions.Caption`,
    which knows the class, shade and size it asks for), and the shipped judge's class accuracy on them, the
    accuracy of each attribute measured from the samples' pixels against the run's training cut points (chance
    1/3), and the Frechet distance, precision and recall of all the samples against `reference` test images."""
    from .data.captions import Thresholds, attributes
    from .features import image_metrics, load_feature_net
    from .runs import load_guided, prompt_condition, sampling_settings
    from .sampling import parse_sampler_spec, sample_batched

    cfg = diffusion_config(run_dir)
    info = data_info(run_dir)
    if not cfg.model.text_conditional or not info.get("captions"):
        raise ValueError(f"{run_dir} is not text-conditional: it takes no prompts")
    cuts = Thresholds.from_dict(info["captions"]["thresholds"])
    text = prompt_condition(run_dir, [p.text for p in prompts], device)
    cond = {k: v.repeat_interleave(per_prompt, 0) for k, v in text.items()}
    want = {k: torch.tensor([getattr(p, k) for p in prompts]).repeat_interleave(per_prompt) for k in ("label", "shade", "size")}
    n = len(prompts) * per_prompt
    net, net_info = load_feature_net("fashion_mnist", device=device)
    real, _, _ = held_out(run_dir, "test", reference, seed)
    how = sampling_settings(cfg, sampler, steps)
    rows = []
    for w in scales:
        den, path, _ = load_guided(run_dir, scale=float(w), device=device)
        t0 = time.time()
        x, done = sample_batched(den, path, n, tuple(info["shape"]), seed=seed, batch_size=batch_size, device=device, cond=cond,
                                 return_info=True, **how)
        x = _decoded(den, x, batch_size, device)
        shade, size = attributes(x, want["label"], cuts)
        m = image_metrics(net, real, x, labels=want["label"])
        rows.append({"scale": float(w), "class_accuracy": m["accuracy"],
                     "shade_accuracy": float((shade == want["shade"]).double().mean()),
                     "size_accuracy": float((size == want["size"]).double().mean()),
                     "fd": m["fd"], "precision": m["precision"], "recall": m["recall"], "n": n, "nfe": done.nfe,
                     "sampler": parse_sampler_spec(sampler or cfg.sample.sampler).label, "steps": how["steps"],
                     "sample_seconds": round(time.time() - t0, 1)})
    return rows
