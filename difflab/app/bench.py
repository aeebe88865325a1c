"""Is a sampler worth its steps? One harness turns (sampler, grid, NFE) into a table of quality and time.

The harness (`sweep`) runs each `Job` at each NFE budget from the same starting noise `x_T`, in
batches, with example i's noise along the way from its own generator (`_random.example_generators`),
so a table does not depend on the batch size. A job is one way to draw samples at a budget:
`difflab_job` (a difflab sampler spec `name[@grid][:key=value...]`, steps from the sampler's own
`about` facts by `SamplerSpec.steps_for_nfe`), `diffusers_job` (a diffusers scheduler driving the
same denoiser through `interop.diffusers_sample`, with the network's epsilon prediction), or any
callable. Quality is whatever `score(samples) -> {figure: value}` measures. Time is split into the
network's own time and the sampler's overhead (everything outside the network), per step. A
stochastic job can be repeated over `noise_seeds` draws of its noise (figures averaged, spread
reported). `difflab bench samplers`, `difflab oracle-demo`, `benchmarks/samplers.py` and
`benchmarks/train_budget.py` all measure through it.

`measure_samplers(run, request)` is `difflab bench samplers RUN` (a diffusion run's kind hands it over): the Frechet distance in the shipped feature
network's space for image sets (`difflab.features`) and the exact W2 for toy sets, each beside its
floor (real data in place of samples); with `diffusers=True` (discrete-time paths), diffusers' DDPM,
DDIM, DPM-Solver++ (ODE and SDE) and UniPC schedulers in the same run. Writes bench_samplers.json /
.md / .png into the run folder; with `append=True` the new rows join those already there (same n
and seed, so the same starting noise), so a long curve can be measured in pieces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .._random import derive_seed, example_generators, split_generators
from ..sampling import SamplerSpec, about, parse_sampler_spec, prior_noise, sample
from .folders import write_atomically, write_json

__all__ = ["Job", "difflab_job", "default_job", "diffusers_job", "sweep", "over_seeds", "measure_samplers", "parse_sampler_spec",
           "DEFAULT_SAMPLERS", "DIFFUSERS_SCHEDULERS"]

DEFAULT_SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "ode_euler", "ode_heun", "ode_rk4", "euler_maruyama")
DIFFUSERS_SCHEDULERS = {"diffusers DDPM": "DDPMScheduler", "diffusers DDIM": "DDIMScheduler",
                        "diffusers DPM-Solver++": "DPMSolverMultistepScheduler", "diffusers UniPC": "UniPCMultistepScheduler",
                        "diffusers SDE-DPM-Solver++": "DPMSolverMultistepScheduler"}


# -- the harness ---------------------------------------------------------------------------------

class Timed:
    """A denoiser that adds up the wall-clock time spent inside it."""

    def __init__(self, den):
        self.den, self.seconds = den, 0.0

    def __call__(self, x, t, **cond):
        t0 = time.perf_counter()
        out = self.den(x, t, **cond)
        self.seconds += time.perf_counter() - t0
        return out


@dataclass
class Job:
    """One way to draw samples at a budget: `draw(x_T, nfe, generators, cond) -> (samples, NFE spent per
    sample)` for a batch (`generators`: one per example, for the noise drawn along the way). `timer`,
    when given, is the `Timed` denoiser the job calls (for the network / overhead split)."""

    label: str
    library: str
    draw: Callable
    stochastic: bool = False
    timer: Timed | None = None


def difflab_job(denoiser, path, spec: str | SamplerSpec) -> Job:
    """A difflab sampler spec (`sampling.parse_sampler_spec`) as a harness job on `denoiser` and `path`."""
    spec = parse_sampler_spec(spec) if isinstance(spec, str) else spec
    timer = Timed(denoiser)

    adaptive = about(spec.sampler).adaptive  # its tolerances set the cost: it runs the same at every budget

    def draw(x_T, nfe, generators, cond):
        kwargs = spec.kwargs(None if adaptive else nfe)
        x, info = sample(timer, path, x=x_T, generator=generators, cond=cond, return_info=True, **kwargs)
        return x, info.nfe

    return Job(spec.label, "difflab", draw, spec.stochastic, timer)


def default_job(cfg, denoiser, path, folder=None, label: str = "default") -> Job:
    """What `difflab sample` draws with no sampler named (`sampler_choice.settle`: the run's measured choice for the
    budget, else its configuration's), chosen afresh at each budget: `cfg` the run's configuration, `folder` its
    folder (for its recorded measurement)."""
    from .sampler_choice import settle

    timer = Timed(denoiser)

    def draw(x_T, nfe, generators, cond):
        kw = settle(cfg, nfe=nfe, folder=folder).kwargs
        x, info = sample(timer, path, x=x_T, generator=generators, cond=cond, return_info=True, **kw)
        return x, info.nfe

    return Job(label, "difflab", draw, True, timer)


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


def diffusers_job(name: str, denoiser, path, make_scheduler: Callable | None = None, steps_of=lambda nfe: nfe) -> Job:
    """A diffusers scheduler (one of DIFFUSERS_SCHEDULERS, or any `make_scheduler()`) driving `denoiser`
    on the discrete path `path` (`interop.diffusers_sample`); `steps_of(nfe)` its steps for a budget."""
    from ..interop import diffusers_sample

    if not path.discrete:
        raise ValueError("diffusers' schedulers need a discrete-time (DDPM) path")
    make = make_scheduler or (lambda: _scheduler(name, path))
    timer = Timed(denoiser)

    def draw(x_T, nfe, generators, cond):
        if cond:
            raise ValueError("the diffusers comparison runs unconditional models")
        steps = steps_of(nfe)
        if steps > path.T:
            raise ValueError(f"more steps than the path's T = {path.T}")
        return diffusers_sample(make(), timer, path, x_T, steps, generator=list(generators), return_nfe=True)

    return Job(name, "diffusers", draw, "SDE" in name or name.endswith("DDPM"), timer)


def sweep(jobs: list[Job], x_T: Tensor, nfes, score: Callable[[Tensor], dict], *, seed: int = 0, batch_size: int = 500,
          cond: dict | None = None, noise_seeds: int = 1, on_samples: Callable | None = None, log=None,
          errors: tuple = (ValueError,)) -> list[dict]:
    """Every job at every NFE budget from the starting noise `x_T` (module doc); one row per (job, budget).

    A row holds sampler, library, nfe_budget, nfe (spent per sample), the figures of `score` (their mean
    over `noise_seeds` draws for a stochastic job, with `<figure>_std` and `noise_seeds`),
    seconds_per_sample, and, for jobs with a timer, network_ms_per_step and overhead_ms_per_step. A job
    that fails with one of `errors` at a budget gives a row with "error". `on_samples(job, nfe, x)`
    sees every batch of samples drawn (e.g. for pictures).
    """
    if isinstance(noise_seeds, bool) or int(noise_seeds) != noise_seeds or noise_seeds < 1:
        raise ValueError(f"noise_seeds must be an integer >= 1, got {noise_seeds!r}")
    n = x_T.shape[0]
    rows = []
    for nfe in nfes:
        for job in jobs:
            per_seed, seconds, network, batches, used = [], 0.0, 0.0, 0, 0
            try:
                for k in range(int(noise_seeds) if job.stochastic else 1):
                    gens = example_generators(derive_seed(seed, "noise", k), n)
                    if job.timer is not None:
                        job.timer.seconds = 0.0
                    t0 = time.perf_counter()
                    outs = []
                    for i in range(0, n, batch_size):
                        j = min(i + batch_size, n)
                        cb = {key: v[i:j] for key, v in cond.items()} if cond else None
                        x, used = job.draw(x_T[i:j], nfe, split_generators(gens, i, j), cb)
                        outs.append(x.cpu())
                        batches += 1
                    seconds += time.perf_counter() - t0
                    network += job.timer.seconds if job.timer is not None else 0.0
                    x = torch.cat(outs)
                    if on_samples is not None:
                        on_samples(job, nfe, x)
                    per_seed.append(score(x))
            except errors as e:  # a failure is a result too (e.g. more steps than the path has)
                rows.append({"sampler": job.label, "library": job.library, "nfe_budget": nfe, "error": str(e)})
                if log:
                    log(f"{job.library:9s} {job.label:24s} NFE {nfe:4d}  failed: {e}")
                continue
            figures = {key: sum(s[key] for s in per_seed) / len(per_seed) for key in per_seed[0]}
            row = {"sampler": job.label, "library": job.library, "nfe_budget": nfe, "nfe": used, **figures,
                   "seconds_per_sample": seconds / (n * len(per_seed))}
            if len(per_seed) > 1:
                row["noise_seeds"] = len(per_seed)
                for key in per_seed[0]:
                    vals = torch.tensor([s[key] for s in per_seed], dtype=torch.float64)
                    row[f"{key}_std"], row[f"{key}_per_noise_seed"] = float(vals.std()), vals.tolist()
            if job.timer is not None:  # per step of one batch: the network's time and everything else
                row["network_ms_per_step"] = 1e3 * network / max(used * batches, 1)
                row["overhead_ms_per_step"] = 1e3 * (seconds - network) / max(used * batches, 1)
            rows.append(row)
            if log:
                shown = "  ".join(f"{key} {value:.4f}" for key, value in figures.items())
                log(f"{job.library:9s} {job.label:24s} NFE {used:4d}  {shown}  {row['seconds_per_sample'] * 1e3:7.2f} ms/sample")
    return rows


# -- difflab bench samplers RUN ------------------------------------------------------------------


def over_seeds(per_seed: list[list[dict]], spread=("fd", "fd_b"),
               mean=("fd", "fd_b", "precision", "recall", "seconds_per_sample")) -> list[dict]:
    """`sweep`'s rows from several seeds of the noise -> one row per (side or library, sampler, NFE budget), in
    first-seen order: each figure of `mean` averaged, and for each of `spread` its standard deviation over the seeds
    (`fd_std`, with Bessel's correction; 0 for one seed) and the values (`fd_per_seed`). Failed rows are left out."""
    groups: dict = {}
    for rows in per_seed:
        for r in rows:
            if "error" not in r:
                key = (r.get("side", r.get("library")), r["sampler"], r.get("nfe_budget", r.get("nfe")))
                groups.setdefault(key, []).append(r)
    out = []
    for rs in groups.values():
        row = dict(rs[0])
        for key in mean:
            if key in row:
                row[key] = sum(r[key] for r in rs) / len(rs)
        for key in spread:
            if key in row:
                vals = torch.tensor([r[key] for r in rs], dtype=torch.float64)
                row[f"{key}_std"] = float(vals.std()) if len(rs) > 1 else 0.0
                row[f"{key}_per_seed"] = vals.tolist()
        row["seeds"] = len(rs)
        out.append(row)
    return out

def measure_samplers(run, request) -> dict:
    """Quality and time of each sampler of `request` (a `requests.BenchRequest`) at each NFE budget on a diffusion
    run (module doc; the run's kind has checked the request); returns and writes the results."""
    from .. import metrics as M
    from .build import build_data, source_sample

    specs = [parse_sampler_spec(s) for s in request.samplers]
    n, seed, device = request.n, request.seed, request.device
    file = run.folder / "bench_samplers.json"
    earlier = _earlier_rows(file, n, seed) if request.append else []
    cfg = run.config
    den, path, _ = run.load(device=device)
    shape = tuple(run.facts["shape"])
    x_T = source_sample(cfg.data, n, torch.Generator().manual_seed(seed))
    x_T = (x_T if x_T is not None else prior_noise(path, n, shape, seed)).to(device)
    cond = {"label": torch.arange(n, device=device) % run.facts["num_classes"]} if cfg.model.class_conditional else None

    second = {}
    if cfg.data.name == "toy":
        from ..data import toy_density

        density = toy_density(cfg.data.toy)
        ref = density.sample(n, torch.Generator().manual_seed(10_000 + seed)).float()
        quality_name = "W2"
        quality = lambda x: M.wasserstein2(x, ref)  # noqa: E731
        floor = M.wasserstein2(density.sample(n, torch.Generator().manual_seed(20_000 + seed)).float(), ref)
    else:
        from ..features import features, load_feature_net, second_feature_net

        test = build_data(cfg.data, "test").images
        judges = [(name, load_feature_net(net)[0]) for name, net in
                  (("FD", cfg.data.name), ("FD_b", second_feature_net(cfg.data.name))) if net]
        stats = {name: M.gaussian_stats(features(net, test)[0]) for name, net in judges}
        train = build_data(cfg.data, "train").images
        quality_name = "FD"
        quality = lambda x: {name: M.frechet_distance(stats[name], features(net, x)[0]) for name, net in judges}  # noqa: E731
        floors = quality(train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]])
        floor, second = floors["FD"], {"second_quality": "FD_b", "second_floor": floors["FD_b"]} if len(judges) > 1 else {}

    jobs = [difflab_job(den, path, spec) for spec in specs]
    if request.diffusers:
        jobs += [diffusers_job(name, den, path) for name in DIFFUSERS_SCHEDULERS]
    if hasattr(den, "decode"):  # latent diffusion: scored on the decoded images
        def score(x, decode=den.decode):
            with torch.no_grad():
                return _figures(quality_name, quality(decode(x.to(device)).clamp(-1, 1).cpu()))
    else:
        score = lambda x: _figures(quality_name, quality(x.clamp(-1, 1) if x.ndim == 4 else x))  # noqa: E731
    rows = sweep(jobs, x_T, request.nfe, score, seed=seed, batch_size=request.batch, cond=cond,
                 log=request.log if request.progress else None)
    new = {(r["sampler"], r["library"], r["nfe_budget"]) for r in rows}
    rows = [r for r in earlier if (r["sampler"], r["library"], r["nfe_budget"]) not in new] + rows
    rows.sort(key=lambda r: r["nfe_budget"])  # stable: within a budget, the order the samplers ran in
    result = {"run": str(run.folder), "n": n, "seed": seed, "quality": quality_name, "floor": floor, **second, "rows": rows}
    write_json(file, result)
    _write_md(result, run.folder / "bench_samplers.md")
    _plot(result, run.folder / "bench_samplers.png")
    if request.record:
        from .sampler_choice import record

        record(run.folder, result)
    return result


def _figures(name: str, value) -> dict:
    """A quality figure as a row's figures: {name: value}, or every judge's when `value` is already a dict."""
    return dict(value) if isinstance(value, dict) else {name: value}


def _earlier_rows(file: Path, n: int, seed: int) -> list[dict]:
    """The rows of an earlier bench of the same run, if it used the same n and seed (else its numbers
    would not be comparable: another starting noise, another floor)."""
    if not file.is_file():
        return []
    try:
        old = json.loads(file.read_text())
        old_n, old_seed, rows = old["n"], old.get("seed", 0), list(old["rows"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"--append: {file} is damaged (not the JSON a bench writes); rerun without --append to start afresh") from None
    if old_n != n or old_seed != seed:  # benches before the seed was recorded used the default 0
        raise ValueError(f"--append: {file} was measured with n={old_n}, seed={old_seed}; "
                         f"rerun with --n {old_n} --seed {old_seed}, or without --append to start afresh")
    return rows


def _write_md(result: dict, out: Path) -> None:
    q, q2 = result["quality"], result.get("second_quality")
    floors = f"floor {result['floor']:.4f}" + (f", {q2} {result['second_floor']:.4f}" if q2 else "")
    head = f"| sampler | library | NFE | {q} |" + (f" {q2} (second feature net) |" if q2 else "")
    lines = [f"# Samplers on `{result['run']}`: {q} of {result['n']} samples ({floors}: real data)", "",
             head + " ms / sample | sampler overhead ms / step | network ms / step |", "|" + "---|" * (7 + bool(q2))]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['sampler']} | {r['library']} | {r['nfe_budget']} | n/a: {r['error']} |" + " |" * (3 + bool(q2)))
        else:
            second = f" {r[q2]:.4f} |" if q2 and q2 in r else (" |" if q2 else "")
            lines.append(f"| {r['sampler']} | {r['library']} | {r['nfe']} | {r[q]:.4f} |{second} {1e3 * r['seconds_per_sample']:.2f} | "
                         f"{r.get('overhead_ms_per_step', float('nan')):.3f} | {r.get('network_ms_per_step', float('nan')):.3f} |")
    write_atomically(out, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))


def _plot(result: dict, out: Path) -> None:
    from ..viz import _plt, _save

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
