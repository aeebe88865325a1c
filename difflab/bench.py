"""`difflab bench samplers RUN`: is a sampler worth its steps? Quality against NFE for one trained model.

Every sampler runs from the same starting noise with the same number of network evaluations (NFE;
`sampling.steps_for_nfe` turns a budget into steps), on the path's default grid or, written
`sampler@grid` (e.g. `dpmpp_2m@karras`), on a named grid of `samplers.grids`, and with options after
colons (`unipc:variant=bh1:order=3`; `parse_sampler_spec`). Quality is the
Frechet distance in the shipped feature network's space for image sets (`difflab.features`) and
the exact W2 for toy sets, each beside its floor (real data in place of samples). Time is split
into the network's own time and the sampler's overhead (everything outside the network), per step.
With `diffusers=True` (discrete-time paths), diffusers' DDPM, DDIM, DPM-Solver++ (ODE and SDE) and
UniPC schedulers drive the same network in the same run, with the network's epsilon prediction
(`interop.diffusers_sample`). Writes bench_samplers.json / .md / .png into the run folder; with
`append=True` the new rows join those already there (same n and seed, so the same starting noise),
so a long curve can be measured in pieces: cheap samplers up to 1000 NFE, costly ones only up to 50.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .runs import data_info, load, run_config, source_sample
from .sampling import sample, steps_for_nfe

__all__ = ["bench_samplers", "parse_sampler_spec", "DEFAULT_SAMPLERS", "DIFFUSERS_SCHEDULERS"]

DEFAULT_SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "ode_euler", "ode_heun", "ode_rk4", "euler_maruyama")
DIFFUSERS_SCHEDULERS = {"diffusers DDPM": "DDPMScheduler", "diffusers DDIM": "DDIMScheduler",
                        "diffusers DPM-Solver++": "DPMSolverMultistepScheduler", "diffusers UniPC": "UniPCMultistepScheduler",
                        "diffusers SDE-DPM-Solver++": "DPMSolverMultistepScheduler"}


def parse_sampler_spec(spec: str) -> tuple[str, str | None, dict]:
    """'name[@grid][:key=value...]' -> (sampler, grid or None, options); numbers become int or float."""
    head, *pairs = spec.strip().split(":")
    sampler, _, grid = head.partition("@")
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"sampler option {pair!r} in {spec!r} is not key=value (e.g. unipc:variant=bh1:order=3)")
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
        options[key] = value
    return sampler, grid or None, options


class _Timed:
    """A denoiser that adds up the wall-clock time spent inside it."""

    def __init__(self, den):
        self.den, self.seconds = den, 0.0

    def __call__(self, x, t, **cond):
        t0 = time.perf_counter()
        out = self.den(x, t, **cond)
        self.seconds += time.perf_counter() - t0
        return out


def _scheduler(name: str, path):
    import diffusers

    cls = getattr(diffusers, DIFFUSERS_SCHEDULERS[name])
    kwargs = {"num_train_timesteps": path.T, "trained_betas": path.betas.float().numpy().tolist()}
    if name in ("diffusers DDPM", "diffusers DDIM"):
        kwargs["clip_sample"] = False  # difflab's image denoiser clips x0_hat itself
    if name in ("diffusers DPM-Solver++", "diffusers SDE-DPM-Solver++"):
        kwargs.update(algorithm_type="sde-dpmsolver++" if "SDE" in name else "dpmsolver++", solver_order=2)
    if name in ("diffusers DDIM", "diffusers DPM-Solver++", "diffusers UniPC", "diffusers SDE-DPM-Solver++"):
        kwargs["timestep_spacing"] = "trailing"  # starts at t = 1 like difflab's default grid
    return cls(**kwargs)


def bench_samplers(run_dir, *, samplers=DEFAULT_SAMPLERS, nfes=(5, 10, 20, 50), n: int = 500, seed: int = 0,
                   device: str = "cpu", batch_size: int = 500, diffusers: bool = False, append: bool = False,
                   progress: bool = True, log=print) -> dict:
    """Quality and time of each sampler at each NFE budget (module doc); returns and writes the results."""
    from . import metrics as M
    from .interop import diffusers_sample

    run_dir = Path(run_dir)
    earlier = _earlier_rows(run_dir / "bench_samplers.json", n, seed) if append else []
    cfg = run_config(run_dir)
    den, path, _ = load(run_dir, device=device)
    shape = tuple(data_info(run_dir)["shape"])
    g = torch.Generator().manual_seed(seed)
    x_T = source_sample(cfg, n, g, device)
    if x_T is None:
        x_T = path.prior_sample((n, *shape), g, device=device)
    labels = torch.arange(n, device=device) % data_info(run_dir)["num_classes"] if cfg.model.class_conditional else None

    if cfg.data.name == "toy":
        from .data import toy_density

        density = toy_density(cfg.data.toy)
        ref = density.sample(n, torch.Generator().manual_seed(10_000 + seed)).float()
        quality_name = "W2"
        quality = lambda x: M.wasserstein2(x, ref)  # noqa: E731
        floor = M.wasserstein2(density.sample(n, torch.Generator().manual_seed(20_000 + seed)).float(), ref)
    else:
        from .config import build_data
        from .features import features, load_feature_net

        net, _ = load_feature_net(cfg.data.name)
        stats = M.gaussian_stats(features(net, build_data(cfg.data, "test").images)[0])
        train = build_data(cfg.data, "train").images
        quality_name = "FD"
        quality = lambda x: M.frechet_distance(stats, features(net, x)[0])  # noqa: E731
        floor = quality(train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]])

    jobs = [(s, "difflab") for s in samplers]
    if diffusers:
        if getattr(path, "T", None) is None:
            raise ValueError("diffusers' schedulers need a discrete-time (DDPM) path")
        jobs += [(name, "diffusers") for name in DIFFUSERS_SCHEDULERS]
    rows = []
    for nfe in nfes:
        for name, lib in jobs:
            timed = _Timed(den)
            t0 = time.perf_counter()
            try:
                outs, used = [], 0
                for i in range(0, n, batch_size):
                    xb = x_T[i:i + batch_size]
                    cond = {"cond": labels[i:i + batch_size]} if labels is not None else None
                    if lib == "difflab":
                        sampler, grid, options = parse_sampler_spec(name)
                        x, info = sample(timed, path, x=xb, sampler=sampler, grid=grid, cond=cond, return_info=True,
                                         generator=torch.Generator().manual_seed(seed + i), **steps_for_nfe(sampler, nfe),
                                         **options)
                        used = info.nfe
                    else:
                        if cond is not None:
                            raise ValueError("the diffusers comparison runs unconditional models")
                        if nfe > path.T:
                            raise ValueError(f"more steps than the path's T = {path.T}")
                        x, used = diffusers_sample(_scheduler(name, path), timed, path, xb, nfe,
                                                   generator=torch.Generator().manual_seed(seed + i), return_nfe=True)
                    outs.append(x.cpu())
            except ValueError as e:  # e.g. more steps than the discrete path has
                rows.append({"sampler": name, "library": lib, "nfe_budget": nfe, "error": str(e)})
                continue
            total = time.perf_counter() - t0
            x = torch.cat(outs)
            calls = used * len(outs)
            q = quality(x.clamp(-1, 1) if x.ndim == 4 else x)
            rows.append({"sampler": name, "library": lib, "nfe_budget": nfe, "nfe": used, quality_name: q,
                         "seconds_per_sample": total / n, "overhead_ms_per_step": 1e3 * (total - timed.seconds) / max(calls, 1),
                         "network_ms_per_step": 1e3 * timed.seconds / max(calls, 1)})
            if progress:
                log(f"{lib:9s} {name:24s} NFE {used:4d}  {quality_name} {q:8.4f}  {total / n * 1e3:7.2f} ms/sample  "
                    f"overhead {rows[-1]['overhead_ms_per_step']:.3f} ms/step")
    new = {(r["sampler"], r["library"], r["nfe_budget"]) for r in rows}
    rows = [r for r in earlier if (r["sampler"], r["library"], r["nfe_budget"]) not in new] + rows
    rows.sort(key=lambda r: r["nfe_budget"])  # stable: within a budget, the order the samplers ran in
    result = {"run": str(run_dir), "n": n, "seed": seed, "quality": quality_name, "floor": floor, "rows": rows}
    (run_dir / "bench_samplers.json").write_text(json.dumps(result, indent=1))
    _write_md(result, run_dir / "bench_samplers.md")
    _plot(result, run_dir / "bench_samplers.png")
    return result


def _earlier_rows(file: Path, n: int, seed: int) -> list[dict]:
    """The rows of an earlier bench of the same run, if it used the same n and seed (else its numbers
    would not be comparable: another starting noise, another floor)."""
    if not file.is_file():
        return []
    old = json.loads(file.read_text())
    if old["n"] != n or old.get("seed", 0) != seed:  # benches before the seed was recorded used the default 0
        raise ValueError(f"--append: {file} was measured with n={old['n']}, seed={old.get('seed', 0)}; "
                         f"rerun with --n {old['n']} --seed {old.get('seed', 0)}, or without --append to start afresh")
    return old["rows"]


def _write_md(result: dict, out: Path) -> None:
    q = result["quality"]
    lines = [f"# Samplers on `{result['run']}`: {q} of {result['n']} samples (floor {result['floor']:.4f}: real data)", "",
             f"| sampler | library | NFE | {q} | ms / sample | sampler overhead ms / step | network ms / step |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['sampler']} | {r['library']} | {r['nfe_budget']} | n/a: {r['error']} | | | |")
        else:
            lines.append(f"| {r['sampler']} | {r['library']} | {r['nfe']} | {r[q]:.4f} | {1e3 * r['seconds_per_sample']:.2f} | "
                         f"{r['overhead_ms_per_step']:.3f} | {r['network_ms_per_step']:.3f} |")
    out.write_text("\n".join(lines) + "\n")


def _plot(result: dict, out: Path) -> None:
    from .viz import _plt, _save

    plt = _plt()
    q = result["quality"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = list(dict.fromkeys((r["sampler"], r["library"]) for r in result["rows"] if "error" not in r))
    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")  # one colour per curve, up to 20
    for k, (name, lib) in enumerate(names):
        rs = sorted((r for r in result["rows"] if (r["sampler"], r["library"]) == (name, lib) and "error" not in r),
                    key=lambda r: r["nfe"])
        style = dict(ls="--" if lib == "diffusers" else "-", marker="s" if lib == "diffusers" else "o", ms=4,
                     color=colors(k % colors.N))
        a.plot([r["nfe"] for r in rs], [r[q] for r in rs], label=name, **style)
        b.plot([r["nfe"] for r in rs], [1e3 * r["seconds_per_sample"] for r in rs], **style)
    a.axhline(result["floor"], color="k", lw=0.8, ls=":", label="floor (real data)")
    for ax, ylabel in ((a, f"{q} (lower is better)"), (b, "ms per sample")):
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("network evaluations (NFE)"), ax.set_ylabel(ylabel)
    b.legend(*a.get_legend_handles_labels(), fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, out, title=f"samplers on {result['run']}")
