"""The `difflab` command: train, sample, eval, bench, info, demo, oracle-demo. Thin: every action is a library call."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from .bench import DEFAULT_SAMPLERS

app = typer.Typer(help="difflab: diffusion generative models, small, correct and fast.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def train(
    config: str = typer.Argument(..., help="A TOML file, or a preset: toy2d, digits, fashion_mnist."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set train.steps=500 (repeatable)."),
    out: Path = typer.Option(None, help="Run folder (default: runs/<name>)."),
    fresh: bool = typer.Option(False, help="Start over instead of resuming the run folder's latest checkpoint."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: the config's train.device)."),
):
    """Train a model; resumes from the run folder's latest checkpoint. Works under torchrun."""
    from .config import load_config
    from .training import TrainingDiverged
    from .training import train as run_training

    try:
        cfg = load_config(config, [*set_, *([f'train.device="{device}"'] if device else [])])
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    run_dir = out or Path("runs") / cfg.name
    if fresh and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    try:
        result = run_training(cfg, run_dir)
    except (TrainingDiverged, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(f"{run_dir}: {result.step} steps, last loss {result.last_loss:.4f}, {result.seconds:.0f} s")


@app.command()
def sample(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    sampler: str = typer.Option(None, help="Sampler name (default: the run's [sample] sampler)."),
    steps: int = typer.Option(None, min=1, help="Number of steps (default: the run's)."),
    grid: str = typer.Option(None, help="Step grid: uniform, leading, trailing, linspace, karras, log_snr."),
    n: int = typer.Option(64, min=1, help="Number of samples."),
    seed: int = typer.Option(0),
    label: int = typer.Option(None, help="Class label for a class-conditional model."),
    out: Path = typer.Option(Path("samples.png"), help="Output: FILE.png (a grid of images, or a 2-D scatter), FILE.npz (arrays) "
                                    "or a folder DIR/ (one PNG per image, for external FID tools)."),
    device: str = typer.Option("cpu"),
):
    """Sample a trained run with any sampler."""
    import numpy as np
    import torch

    import difflab as dl

    try:
        den, path, cfg = dl.load(run, device=device)
        shape = tuple(dl.runs.data_info(run)["shape"])
        cond = {"cond": torch.full((n,), label, dtype=torch.long, device=device)} if label is not None else None
        options = cfg.sample.options if sampler in (None, cfg.sample.sampler) else {}
        g = torch.Generator().manual_seed(seed)
        x1 = dl.runs.source_sample(cfg, n, g, device)  # a flow from a data set starts there
        x, info = dl.sample(den, path, (n, *shape), x=x1, sampler=sampler or cfg.sample.sampler, steps=steps or cfg.sample.steps,
                            grid=grid or cfg.sample.grid or None, generator=g, device=device, cond=cond, return_info=True, **options)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if out.suffix == "" or out.is_dir():
        if x.ndim != 4:
            _fail(f"a folder of PNGs holds images; these samples have shape {tuple(x.shape[1:])}: use --out FILE.npz")
        dl.viz.save_images(x, out)
    elif out.suffix == ".npz":
        np.savez(out, samples=x.cpu().numpy(), nfe=info.nfe, timesteps=info.timesteps.numpy())
    elif out.suffix == ".png":
        if x.ndim == 4:
            dl.viz.save_image_grid(x, out, scale=max(1, 128 // shape[-1]))
        elif x.shape[1] == 2:
            dl.viz.scatter_grid({"": {f"{n} samples": x}}, out)
        else:
            _fail(f"cannot draw samples of shape {tuple(x.shape[1:])} as a PNG; use --out FILE.npz")
    else:
        _fail(f"--out must end in .png or .npz, or name a folder; got {out}")
    typer.echo(f"wrote {out} ({n} samples, {info.nfe} network evaluations)")


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    nll: bool = typer.Option(False, "--nll", help="Negative log-likelihood by the probability-flow ODE (bits/dim for images)."),
    elbo: bool = typer.Option(False, "--elbo", help="The DDPM ELBO (on the path's own steps; bits/dim for images)."),
    metrics: str = typer.Option("", help="Comma-separated: fid, prdc (images); w2, sw, mmd, energy, nll_samples (toy "
                                "sets); nll, elbo (as --nll, --elbo)."),
    sampler: str = typer.Option(None, help="Sampler for the sample metrics (default: the run's)."),
    steps: int = typer.Option(None, min=1, help="Sampler steps (default: the run's)."),
    grid: str = typer.Option(None, help="Step grid for the sampler (default: the run's): uniform, leading, trailing, "
                             "linspace, karras, log_snr."),
    split: str = typer.Option("test", help="Data split (images); toy sets draw fresh held-out points."),
    n: int = typer.Option(None, min=1, help="Examples to use (default: the whole split, 2000 for toy sets; 1000 samples)."),
    method: str = typer.Option(None, help="exact or hutchinson divergence (default: exact up to 64 dimensions)."),
    probes: int = typer.Option(1, min=1, help="Hutchinson probes per example."),
    rtol: float = typer.Option(1e-5, help="ODE solver relative tolerance."),
    atol: float = typer.Option(1e-5, help="ODE solver absolute tolerance."),
    elbo_terms: int = typer.Option(None, min=1, help="Estimate the ELBO's sum from this many steps per example."),
    batch: int = typer.Option(500, min=1, help="Examples per batch."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
):
    """Measure a trained run on held-out data; writes eval.json and eval.md into the run folder."""
    from .evaluate import SAMPLE_METRICS, run_nll, run_sample_metrics, write_report

    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in (*SAMPLE_METRICS, "nll", "elbo")]
    if unknown:
        _fail(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join((*SAMPLE_METRICS, 'nll', 'elbo'))}")
    nll, elbo = nll or "nll" in wanted, elbo or "elbo" in wanted
    on_samples = [m for m in wanted if m in SAMPLE_METRICS]
    if not (nll or elbo or on_samples):
        _fail("say what to measure: --metrics fid,prdc (or w2,mmd,... on toy sets), --nll, --elbo")
    command = "difflab eval " + " ".join(sys.argv[2:])
    try:
        if nll or elbo:
            res = run_nll(run, split=split, n=n, method=method, probes=probes, rtol=rtol, atol=atol, flow=nll, with_elbo=elbo,
                          elbo_terms=elbo_terms, batch_size=batch, seed=seed, device=device)
            write_report(run, "likelihood", res, command)
        if on_samples:
            res = run_sample_metrics(run, on_samples, sampler=sampler, steps=steps, grid=grid, n=n or 1000, seed=seed,
                                     device=device, batch_size=batch)
            write_report(run, f"samples: {res['sampler']}, {res['steps']} steps, {res['grid']} grid", res, command)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo((Path(run) / "eval.md").read_text())


@app.command()
def info(run: Path = typer.Argument(..., help="A run folder.")):
    """What a run is: configuration, data, progress, and any reports it holds."""
    import difflab as dl

    try:
        cfg = dl.runs.run_config(run)
        data = dl.runs.data_info(run)
    except FileNotFoundError as e:
        _fail(str(e))
    ckpt = dl.training.latest_checkpoint(run)
    state = dl.training.checkpoint.read_state(ckpt) if ckpt else {}
    typer.echo(f"run       {run}")
    typer.echo(f"data      {data['name']}: {data['size']} examples of shape {tuple(data['shape'])}"
               + (f", {data['num_classes']} classes" if data.get("num_classes") else ""))
    typer.echo(f"model     {cfg.model.kind} ({'class-conditional' if cfg.model.class_conditional else 'unconditional'})")
    typer.echo(f"diffusion {cfg.diffusion.path}, predicts {cfg.diffusion.prediction}, weighting {cfg.diffusion.weighting}")
    typer.echo(f"progress  {state.get('step', 0)} / {cfg.train.steps} steps" + (f", last loss {state['last_loss']:.4f}" if state else ""))
    for report in sorted(Path(run).glob("report*.json")):
        typer.echo(f"{report.name}: {json.dumps(json.loads(report.read_text()))}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run folder for the model, pictures and report."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of the digits preset, e.g. --set train.steps=500."),
    n: int = typer.Option(1000, min=10, help="Samples to judge."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
):
    """The main job: train a pixel DDPM on the built-in 8x8 digits, sample it, judge and draw the samples."""
    from .demo import digits_demo

    try:
        report = digits_demo(out, overrides=set_, n=n, seed=seed, device=device, log=typer.echo)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo((out / "report.md").read_text())
    typer.echo(f"pictures: {out / 'samples.png'}, {out / 'reverse.gif'}, {out / 'loss.png'}")
    if not report["goal_met"]:
        typer.secho("the quality goal was not met (see the report)", fg=typer.colors.YELLOW, err=True)


@app.command("oracle-demo")
def oracle_demo(
    out: Path = typer.Option(Path("runs/oracle-demo"), help="Folder for the picture and the report."),
    n: int = typer.Option(4000, min=100, help="Samples per sampler."),
    nfe: str = typer.Option("10,50", help="Comma-separated network-evaluation budgets."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
):
    """Every sampler on an exact 8-mode ring (no training): a picture and a table against NFE."""
    from .demo import oracle_demo as run

    try:
        budgets = [int(b) for b in nfe.split(",")]
        run(out, n=n, budgets=budgets, seed=seed, device=device, log=typer.echo)
    except ValueError as e:
        _fail(str(e))


@app.command()
def version():
    """Print difflab's version."""
    import difflab

    typer.echo(difflab.__version__)


bench_app = typer.Typer(help="Benchmarks of a trained run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("samplers")
def bench_samplers(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    nfe: str = typer.Option("5,10,20,50", help="Comma-separated network-evaluation budgets."),
    samplers: str = typer.Option(",".join(DEFAULT_SAMPLERS),
                                 help="Comma-separated difflab samplers; sampler@grid picks a grid (dpmpp_2m@karras), "
                                 "colons add options (unipc:variant=bh1:order=3)."),
    diffusers: bool = typer.Option(False, "--diffusers", help="Also diffusers' DDPM, DDIM, DPM-Solver++ (ODE and SDE) and UniPC schedulers."),
    n: int = typer.Option(500, min=10, help="Samples per sampler and budget."),
    batch: int = typer.Option(500, min=1, help="Samples per batch."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    append: bool = typer.Option(False, "--append", help="Add to the run's earlier bench_samplers.json (same --n and "
                                "--seed) instead of replacing it; a rerun sampler and NFE replaces its old row."),
):
    """Quality (FD for images, W2 for toy sets) and time of every sampler against NFE; a table and a plot."""
    from .bench import bench_samplers as run_bench

    try:
        budgets = [int(v) for v in nfe.split(",") if v.strip()]
    except ValueError:
        _fail(f"--nfe takes comma-separated integers, got {nfe!r}")
    try:
        run_bench(run, samplers=[s.strip() for s in samplers.split(",") if s.strip()], nfes=budgets, n=n, seed=seed,
                  device=device, batch_size=batch, diffusers=diffusers, append=append, log=typer.echo)
    except (ValueError, FileNotFoundError, ImportError) as e:
        _fail(str(e))
    typer.echo((Path(run) / "bench_samplers.md").read_text())
    typer.echo(f"plot: {Path(run) / 'bench_samplers.png'}")


def main() -> None:
    app(prog_name="difflab")


if __name__ == "__main__":
    sys.exit(main())
