"""The `difflab` command: train, sample, eval, bench, info, demo, oracle-demo. Thin: every action is a library call."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from pathlib import Path

import click
import typer

from ._checks import choose
from .bench import DEFAULT_SAMPLERS

app = typer.Typer(help="difflab: diffusion generative models, small, correct and fast.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

# What a user's input can get wrong ends here: a one-line message and exit code 2, never a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, ImportError)


def _fail(message: str) -> None:
    lines = str(message).strip().splitlines() or ["(no message)"]
    typer.secho(f"error: {lines[0]}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _clean_errors(command):
    """Every command: a user error (USER_ERRORS) is one line and exit 2; Ctrl-C says what was kept (130);
    anything else is named as a difflab bug in one line (exit 1; DIFFLAB_DEBUG=1 shows the traceback)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted: nothing after the last checkpoint or output file was kept; run the same command "
                        "to continue (training resumes from its last checkpoint)", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None
        except MemoryError:
            _fail("out of memory: use a smaller batch (--batch, train.batch_size) or a smaller model")
        except USER_ERRORS as e:
            _fail(str(e) or type(e).__name__)
        except Exception as e:
            if os.environ.get("DIFFLAB_DEBUG"):
                raise
            first = (str(e).strip().splitlines() or [""])[0]
            typer.secho(f"error: unexpected {type(e).__name__}: {first} (a difflab bug: please report it with the command; "
                        "DIFFLAB_DEBUG=1 shows where)", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None

    return run


def _command(*args, **kwargs):
    """`app.command`, with every command's errors made clean (`_clean_errors`)."""
    def wrap(fn):
        return app.command(*args, **kwargs)(_clean_errors(fn))
    return wrap


def _budgets(text: str) -> list[int]:
    """--nfe: comma-separated integers >= 1."""
    try:
        budgets = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 1:
        _fail(f"--nfe takes comma-separated integers >= 1 (e.g. 5,10,20), got {text!r}")
    return budgets


def _check_device(name: str) -> str:
    """The device a --device option names (auto resolved), or a clear error for one this machine lacks."""
    from .training.distributed import resolve_device

    return str(resolve_device(name))


@_command()
def train(
    config: str = typer.Argument(..., help="A TOML file, or a preset: toy2d, ncsn2d, flow2d, digits, fashion_mnist."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set train.steps=500 (repeatable)."),
    out: Path = typer.Option(None, help="Run folder (default: runs/<name>)."),
    fresh: bool = typer.Option(False, help="Start over instead of resuming the run folder's latest checkpoint "
                                "(its checkpoints are deleted once everything else has checked out)."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:N or auto (default: the config's train.device)."),
):
    """Train a model; resumes from the run folder's latest checkpoint. Works under torchrun."""
    from .config import load_config
    from .training import TrainingDiverged
    from .training import train as run_training

    cfg = load_config(config, [*set_, *([f"train.device={json.dumps(device)}"] if device else [])])
    run_dir = out or Path("runs") / cfg.name
    if run_dir.exists() and not run_dir.is_dir():
        _fail(f"--out {run_dir} is a file; a run folder is a directory")
    try:
        result = run_training(cfg, run_dir, resume=not fresh)
    except TrainingDiverged as e:
        _fail(str(e))
    if cfg.kind == "cascade":  # it trains nothing (runs.train said what it wrote)
        return
    typer.echo(f"{run_dir}: {result.step} steps, last loss {result.last_loss:.4f}, {result.seconds:.0f} s")


def _labels_for(run: Path, cfg, label: int | None, n: int, classifier: Path | None = None):
    """The label of each sample: --label for all, or every class in turn, for a class-conditional run or one
    guided by a classifier (whose classes count then)."""
    import torch

    import difflab as dl

    if not cfg.model.class_conditional and classifier is None:
        if label is not None:
            _fail(f"{run} is an unconditional model (model.class_conditional = false): --label does not apply "
                  "(classifier guidance gives one labels: --classifier CLF_RUN --guidance W)")
        return None
    info = dl.runs.data_info(classifier if classifier is not None else run)
    classes = info.get("num_classes") or 0
    if label is None:
        return torch.arange(n) % classes
    if not 0 <= label < classes:
        names = info.get("class_names") or []
        shown = ", ".join(f"{i} ({c})" for i, c in enumerate(names)) if names else f"0 .. {classes - 1}"
        _fail(f"--label {label} is not a class of this run; its classes: {shown}")
    return torch.full((n,), label, dtype=torch.long)


def _interval(text: str | None):
    """--guidance-interval LO,HI: noise levels sigma/alpha."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        _fail(f"--guidance-interval takes two noise levels sigma/alpha, LO,HI (e.g. 0.3,5), got {text!r}")
    return lo, hi


GUIDANCE_HELP = {
    "guidance": "Guidance scale w (0: none; diffusers' guidance_scale is 1 + w): classifier-free on a class-conditional run "
                "trained with label dropout, or classifier guidance with --classifier.",
    "classifier": "A classifier run (kind = \"classifier\") on the same path, to guide this run's samples towards --label.",
    "interval": "Guide only where the noise level sigma/alpha lies in LO,HI (Kynkaanniemi et al. 2024), e.g. 0.3,5.",
    "negative": "Steer away from this class (classifier-free guidance, in place of the unconditional pass).",
    "rescale": "Guidance rescale phi in [0, 1] (Lin et al. 2024), against over-saturation at large w.",
}


def _write_atomically(out: Path, write) -> None:
    """Write a file through a temporary neighbour, so a failure leaves what was there before."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@_command()
def sample(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    sampler: str = typer.Option(None, help="Sampler (default: the run's [sample] sampler), or a spec name[@grid][:key=value], "
                                "e.g. dpmpp_2m@karras:rho=5 or ddim:eta=0.5."),
    steps: int = typer.Option(None, min=1, help="Number of steps (default: the run's)."),
    grid: str = typer.Option(None, help="Step grid: uniform, leading, trailing, linspace, karras, log_snr."),
    n: int = typer.Option(64, min=1, help="Number of samples."),
    seed: int = typer.Option(0),
    label: int = typer.Option(None, help="Class label for a class-conditional model (default: every class in turn)."),
    prompt: list[str] = typer.Option(None, help="A caption for a text-conditional model (model.text_conditional); repeat "
                                     "--prompt for several: --n samples of each, a row per prompt in the grid."),
    guidance: float = typer.Option(None, help=GUIDANCE_HELP["guidance"]),
    classifier: Path = typer.Option(None, help=GUIDANCE_HELP["classifier"]),
    guidance_interval: str = typer.Option(None, help=GUIDANCE_HELP["interval"]),
    negative_label: int = typer.Option(None, help=GUIDANCE_HELP["negative"]),
    guidance_rescale: float = typer.Option(0.0, help=GUIDANCE_HELP["rescale"]),
    dynamic_threshold: float = typer.Option(None, help="Imagen's dynamic thresholding of x0_hat at this percentile (e.g. "
                                            "0.995; image runs), instead of plain clipping to [-1, 1]."),
    batch: int = typer.Option(500, min=1, help="Samples per batch (the samples do not depend on it)."),
    out: Path = typer.Option(Path("samples.png"), help="Output: FILE.png (a grid of images, or a 2-D scatter), FILE.npz (arrays) "
                                    "or a folder DIR/ (one PNG per image, for external FID tools)."),
    base_sampler: str = typer.Option(None, help="A cascade's base stage: its sampler spec (default: the cascade's "
                                     "cascade.base_sampler, else the base run's own); --sampler, --steps are the second stage's."),
    base_steps: int = typer.Option(None, min=1, help="A cascade's base stage: its steps."),
    low_res_noise: float = typer.Option(None, help="A cascade: the augmentation level of the low-resolution images "
                                        "before the second stage (default: the cascade's cascade.low_res_noise)."),
    device: str = typer.Option("cpu"),
):
    """Sample a trained run with any sampler."""
    import numpy as np

    import difflab as dl

    if dl.runs.run_kind(run) == "cascade":
        given = [k for k, v in {"--grid": grid, "--classifier": classifier, "--guidance-interval": guidance_interval,
                                "--negative-label": negative_label, "--guidance-rescale": guidance_rescale or None,
                                "--dynamic-threshold": dynamic_threshold, "--prompt": prompt or None}.items() if v is not None]
        if given:
            _fail(f"{', '.join(given)}: not available for a cascade (it takes --label, --guidance, --sampler, --steps, "
                  "--base-sampler, --base-steps, --low-res-noise)")
        return _sample_cascade(run, sampler, steps, base_sampler, base_steps, low_res_noise, n, seed, label, guidance, batch,
                               out, device)
    if base_sampler is not None or base_steps is not None or low_res_noise is not None:
        _fail("--base-sampler, --base-steps and --low-res-noise are options of a cascade run")
    if dl.runs.run_kind(run) in ("discrete", "autoregressive"):
        unused = {"--grid": grid, "--classifier": classifier, "--guidance-interval": guidance_interval,
                  "--negative-label": negative_label, "--guidance-rescale": guidance_rescale or None,
                  "--dynamic-threshold": dynamic_threshold}
        given = [k for k, v in unused.items() if v is not None]
        if prompt:
            given.append("--prompt")
        if given:
            _fail(f"{', '.join(given)}: for diffusion runs only; {run} is a {dl.runs.run_kind(run)} run")
        return _sample_tokens(run, sampler, steps, n, seed, label, guidance, batch, out, device)
    folder = out.suffix == "" or out.is_dir()
    if not folder and out.suffix not in (".png", ".npz"):
        _fail(f"--out must end in .png or .npz, or name a folder; got {out}")
    device = _check_device(device)
    cfg = dl.runs.diffusion_config(run)
    dl.runs.check_unconditioned_samples(run)
    shape = tuple(dl.runs.data_info(run)["shape"])
    image_shape = dl.runs.sample_shape(run)
    if folder and len(image_shape) != 3:
        _fail(f"a folder of PNGs holds images; these samples have shape {shape}: use --out FILE.npz")
    if out.suffix == ".png" and len(image_shape) != 3 and shape != (2,):
        _fail(f"cannot draw samples of shape {shape} as a PNG; use --out FILE.npz")
    labels = _labels_for(run, cfg, label, n, classifier)
    if negative_label is not None and not 0 <= negative_label < (dl.runs.data_info(run).get("num_classes") or 0):
        _fail(f"--negative-label {negative_label} is not a class of this run")
    prompts = [p for p in (prompt or [])]
    if prompts and not cfg.model.text_conditional:
        _fail(f"--prompt: {run} is not text-conditional (train one with model.text_conditional = true and data.captions = 'seen')")
    if cfg.model.text_conditional and not prompts:
        _fail(f"{run} is text-conditional: say what to draw with --prompt \"a dark ankle boot\" (repeat --prompt for a grid)")
    how = dl.runs.sampling_settings(cfg, sampler, steps, grid)
    den, path, cfg = dl.runs.load_guided(run, scale=guidance, classifier=classifier, interval=_interval(guidance_interval),
                                         negative=negative_label, rescale=guidance_rescale, threshold=dynamic_threshold,
                                         device=device)
    import torch

    cond = {"label": labels} if labels is not None else {}
    per_prompt = n
    if prompts:  # n samples of each prompt, prompt after prompt
        text = dl.runs.prompt_condition(run, prompts, device)
        cond = {k: v.repeat(len(prompts), *[1] * (v.ndim - 1)) for k, v in cond.items()}
        cond.update({k: v.repeat_interleave(n, 0) for k, v in text.items()})
        n = n * len(prompts)
    x, info = dl.sampling.sample_batched(den, path, n, shape, seed=seed, batch_size=batch, device=device,
                                         x=dl.runs.source_sample(cfg, n, torch.Generator().manual_seed(seed)),
                                         cond=cond or None, return_info=True, progress=n > batch, **how)
    latents = None
    if hasattr(den, "decode"):  # latent diffusion: the samples are latents; the pictures are their decodings
        latents, x = x, dl.latent.decode_images(den.decode, x, batch_size=batch, device=device)
    if folder:
        dl.viz.save_images(x, out)
    elif out.suffix == ".npz":
        extra = {"labels": labels.numpy()} if labels is not None else {}
        if latents is not None:
            extra["latents"] = latents.numpy()
        _write_atomically(out, lambda tmp: np.savez(tmp, samples=x.numpy(), nfe=info.nfe, timesteps=info.timesteps.numpy(),
                                                    **extra))
    elif x.ndim == 4:
        nrow = dl.runs.data_info(run).get("num_classes") if labels is not None and label is None else None
        nrow = per_prompt if prompts else nrow
        _write_atomically(out, lambda tmp: dl.viz.save_image_grid(x, tmp, nrow=nrow, scale=max(1, 128 // image_shape[-1])))
    else:
        _write_atomically(out, lambda tmp: dl.viz.scatter_grid({"": {f"{n} samples": x}}, tmp))
    typer.echo(f"wrote {out} ({n} samples, {info.nfe} network evaluations per sample)")


def _sample_cascade(run: Path, sampler, steps, base_sampler, base_steps, level, n, seed, label, guidance, batch, out: Path,
                    device):
    """`difflab sample` on a cascade: both stages; the PNG shows each low-resolution sample (upsampled) above its
    full-resolution one, the .npz holds both."""
    import numpy as np
    import torch

    import difflab as dl

    folder = out.suffix == "" or out.is_dir()
    if not folder and out.suffix not in (".png", ".npz"):
        _fail(f"--out must end in .png or .npz, or name a folder; got {out}")
    device = _check_device(device)
    info = dl.runs.data_info(run)
    labels = None
    if label is not None or info.get("num_classes"):
        stages = [dl.runs.run_config(info["cascade"][r]).model.class_conditional for r in ("base", "super_resolution")]
        if any(stages):
            labels = _labels_for(run, dl.runs.run_config(info["cascade"]["base" if stages[0] else "super_resolution"]),
                                 label, n)
        elif label is not None:
            _fail(f"--label: neither stage of {run} is class-conditional")
    x, y, how = dl.runs.cascade_sample(run, n, labels=labels, guidance=guidance, sampler=sampler, steps=steps,
                                       base_sampler=base_sampler, base_steps=base_steps, level=level, seed=seed,
                                       batch_size=batch, device=device, progress=n > batch)
    if folder:
        dl.viz.save_images(x, out)
    elif out.suffix == ".npz":
        extra = {"labels": labels.numpy()} if labels is not None else {}
        _write_atomically(out, lambda tmp: np.savez(tmp, samples=x.numpy(), low_res=y.numpy(), **extra))
    else:
        f = info["cascade"]["factor"]
        up = dl.data.upsample(y, f)
        k = 8 if labels is None else (info.get("num_classes") or 8)
        rows = [t for i in range(0, n, k) for t in (up[i:i + k], x[i:i + k])]
        pad = [torch.cat([r, -torch.ones(k - len(r), *r.shape[1:])]) if len(r) < k else r for r in rows]
        _write_atomically(out, lambda tmp: dl.viz.save_image_grid(torch.cat(pad), tmp, nrow=k, scale=max(1, 128 // x.shape[-1])))
    b, s = how["base"], how["super_resolution"]
    typer.echo(f"wrote {out} ({n} samples: base {b['sampler']} with {b['steps']} steps, super-resolution {s['sampler']} "
               f"with {s['steps']} steps at augmentation level {how['level']:g})")


def _sample_tokens(run: Path, sampler, steps, n, seed, label, guidance, batch, out: Path, device):
    """`difflab sample` on a discrete or autoregressive run: text printed and written to FILE.txt, quantized
    images as a PNG grid, toy points as a scatter, or the tokens in FILE.npz."""
    import numpy as np

    import difflab as dl

    info = dl.runs.data_info(run)
    text = bool(info.get("alphabet"))
    shape = tuple(info["shape"])
    if out == Path("samples.png") and text:
        out = Path("samples.txt")
    allowed = (".txt", ".npz") if text else ((".png", ".npz") if len(shape) == 3 or shape == (2,) else (".npz",))
    if out.suffix not in allowed:
        _fail(f"--out for this run must end in {' or '.join(allowed)}; got {out}")
    cfg = dl.runs.run_config(run)
    labels = _labels_for(run, cfg, label, n)
    device = _check_device(device)
    tokens, how = dl.runs.sample_tokens(run, n, sampler=sampler, steps=steps, labels=labels, guidance=guidance, seed=seed,
                                        batch_size=batch, device=device, progress=n > batch)
    values = dl.runs.tokens_to_values(run, tokens)
    if out.suffix == ".npz":
        extra = {"labels": labels.numpy()} if labels is not None else {}
        _write_atomically(out, lambda tmp: np.savez(tmp, tokens=tokens.numpy(), **extra))
    elif text:
        _write_atomically(out, lambda tmp: tmp.write_text("\n".join(values) + "\n"))
        for line in values[:8]:
            typer.echo(line)
    elif len(shape) == 3:
        nrow = info.get("num_classes") if labels is not None and label is None else None
        _write_atomically(out, lambda tmp: dl.viz.save_image_grid(values, tmp, nrow=nrow, scale=max(1, 128 // shape[-1])))
    else:
        _write_atomically(out, lambda tmp: dl.viz.scatter_grid({"": {f"{n} samples": values}}, tmp))
    typer.echo(f"wrote {out} ({n} samples, {how['sampler']} with {how['steps']} steps, {how['nfe']} network evaluations per sample)")


@_command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run folder written by `difflab train`."),
    nll: bool = typer.Option(False, "--nll", help="Negative log-likelihood by the probability-flow ODE (bits/dim for images)."),
    elbo: bool = typer.Option(False, "--elbo", help="The DDPM ELBO (on the path's own steps; bits/dim for images)."),
    metrics: str = typer.Option("", help="Comma-separated: fid, prdc (images); w2, sw, mmd, energy, nll_samples (toy "
                                "sets); nll, elbo (as --nll, --elbo)."),
    sampler: str = typer.Option(None, help="Sampler for the sample metrics (default: the run's), or a spec "
                                "name[@grid][:key=value] as for `difflab sample`."),
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
    guidance: str = typer.Option(None, help="Guidance scale(s) w for the sample metrics: one (0 = none), or several "
                                 "(0,0.5,1,2,3,5) for the accuracy-against-diversity table guidance.md and its plot."),
    classifier: Path = typer.Option(None, help=GUIDANCE_HELP["classifier"]),
    guidance_interval: str = typer.Option(None, help=GUIDANCE_HELP["interval"]),
    negative_label: int = typer.Option(None, help=GUIDANCE_HELP["negative"]),
    guidance_rescale: float = typer.Option(0.0, help=GUIDANCE_HELP["rescale"]),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
):
    """Measure a trained run on held-out data; writes eval.json and eval.md into the run folder."""
    from .evaluate import (SAMPLE_METRICS, run_autoencoder_metrics, run_discrete_nll, run_guidance_sweep, run_nll,
                           run_sample_metrics, write_report)
    import difflab as dl

    if dl.runs.run_kind(run) == "autoencoder":
        if nll or elbo or guidance is not None or classifier is not None or (metrics and metrics != "reconstruction"):
            _fail(f"{run} is an autoencoder run: `difflab eval {run}` measures its reconstructions (PSNR, Frechet distance, "
                  "latent statistics); sample metrics belong to the latent diffusion run built on it")
        res = run_autoencoder_metrics(run, split=split, n=n or 1000, seed=seed, batch_size=batch, device=_check_device(device))
        write_report(run, "reconstruction", res, "difflab eval " + " ".join(sys.argv[2:]))
        typer.echo((Path(run) / "eval.md").read_text())
        return
    if dl.runs.data_info(run).get("latent") and (nll or elbo or "nll" in metrics or "elbo" in metrics):
        _fail(f"{run} is a latent diffusion run: its likelihood would be of latents, not of images; measure its samples "
              "with --metrics fid,prdc")
    if dl.runs.run_kind(run) == "cascade" and (nll or elbo or "nll" in metrics or "elbo" in metrics):
        _fail(f"{run} is a cascade: it has no likelihood here; measure its samples with --metrics fid,prdc")
    if dl.runs.run_kind(run) in ("discrete", "autoregressive"):
        if metrics or elbo or guidance is not None or classifier is not None:
            _fail(f"{run} is a {dl.runs.run_kind(run)} run: measure its bits per symbol with --nll")
        if not nll:
            _fail("say what to measure: --nll (bits per symbol on held-out data)")
        res = run_discrete_nll(run, split=split, n=n, repeats=elbo_terms or 4, batch_size=min(batch, 256), seed=seed,
                               device=_check_device(device))
        write_report(run, "bits per symbol", res, "difflab eval " + " ".join(sys.argv[2:]))
        typer.echo((Path(run) / "eval.md").read_text())
        return
    wanted = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in (*SAMPLE_METRICS, "nll", "elbo")]
    if unknown:
        _fail(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join((*SAMPLE_METRICS, 'nll', 'elbo'))}")
    nll, elbo = nll or "nll" in wanted, elbo or "elbo" in wanted
    on_samples = [m for m in wanted if m in SAMPLE_METRICS]
    if not (nll or elbo or on_samples):
        _fail("say what to measure: --metrics fid,prdc (or w2,mmd,... on toy sets), --nll, --elbo")
    if method is not None:
        choose(method, ("exact", "hutchinson"), "--method")
    if not (rtol > 0 and atol > 0):
        _fail(f"--rtol and --atol must be > 0, got {rtol}, {atol}")
    device = _check_device(device)
    command = "difflab eval " + " ".join(sys.argv[2:])
    if nll or elbo:
        res = run_nll(run, split=split, n=n, method=method, probes=probes, rtol=rtol, atol=atol, flow=nll, with_elbo=elbo,
                      elbo_terms=elbo_terms, batch_size=batch, seed=seed, device=device)
        write_report(run, "likelihood", res, command)
    scales = None
    if guidance is not None:
        try:
            scales = [float(v) for v in guidance.split(",") if v.strip()]
        except ValueError:
            scales = []
        if not scales or not all(math.isfinite(w) for w in scales):
            _fail(f"--guidance takes one or more comma-separated numbers (e.g. 0,1,3), got {guidance!r}")
        if not on_samples:
            _fail("--guidance applies to the sample metrics: add --metrics accuracy,fid,prdc")
    guide = {"classifier": classifier, "interval": _interval(guidance_interval), "negative": negative_label,
             "rescale": guidance_rescale}
    if scales is None and any(v for v in guide.values() if v is not None):
        _fail("--classifier, --guidance-interval, --negative-label and --guidance-rescale shape guidance: give --guidance W")
    common = dict(sampler=sampler, steps=steps, grid=grid, n=n or 1000, seed=seed, device=device, batch_size=batch)
    if on_samples and scales is not None and len(scales) > 1:
        res = run_guidance_sweep(run, scales, on_samples, guide=guide, **common)
        typer.echo((Path(run) / "guidance.md").read_text())
        typer.echo(f"plot: {Path(run) / 'guidance.png'}")
        return
    if on_samples:
        g = {**guide, "scale": scales[0]} if scales else None
        res = run_sample_metrics(run, on_samples, guide=g, **common)
        how = f", guidance {scales[0]:g}" + (" (classifier)" if classifier else "") if scales else ""
        write_report(run, f"samples: {res['sampler']}, {res['steps']} steps, {res['grid']} grid{how}", res, command)
    typer.echo((Path(run) / "eval.md").read_text())


@_command()
def info(run: Path = typer.Argument(..., help="A run folder.")):
    """What a run is: configuration, data, progress, and any reports it holds."""
    import difflab as dl

    cfg = dl.runs.run_config(run)
    data = dl.runs.data_info(run)
    ckpt, damaged = dl.training.latest_valid_checkpoint(run)
    state = dl.training.checkpoint.read_state(ckpt) if ckpt else {}
    typer.echo(f"run       {run}")
    typer.echo(f"kind      {cfg.kind}" + "".join(f", requires {role} = {where}" for role, where in cfg.requires.items()))
    typer.echo(f"data      {data['name']}: {data['size']} examples of shape {tuple(data['shape'])}"
               + (f", {data['num_classes']} classes" if data.get("num_classes") else ""))
    conditioning = [w for w, on in (("class-conditional", cfg.model.class_conditional), ("text-conditional", cfg.model.text_conditional)) if on]
    typer.echo(f"model     {cfg.model.kind} ({', '.join(conditioning) or 'unconditional'})")
    if data.get("latent"):
        lt = data["latent"]
        typer.echo(f"latent    diffusion over the latents of {lt['autoencoder']} (its checkpoint of step {lt['autoencoder_step']}), "
                   f"scale {lt['scale']:.4f}; samples decode to images of shape {tuple(lt['image_shape'])}")
    if data.get("captions"):
        c = data["captions"]
        typer.echo(f"captions  {c['split']} wording, encoded by {c['encoder']} ({c['dim']} features, {c['length']} tokens); "
                   f"sample with --prompt \"a dark ankle boot\"")
    if cfg.kind == "discrete":
        d = cfg.discrete
        steps = "continuous time" if d.path == "masked" else f"T = {d.steps}"
        typer.echo(f"discrete  {d.path} path ({steps}), {d.loss_name} loss, samples with {d.sampler_name}")
    elif cfg.kind == "autoregressive":
        typer.echo("model     autoregressive: exact likelihood, one network call per position")
    elif cfg.kind == "cascade":
        c = data["cascade"]
        typer.echo(f"cascade   base {c['base']} ({tuple(c['low_res_shape'])}) -> super-resolution {c['super_resolution']} "
                   f"(x{c['factor']}), augmentation level {cfg.cascade.low_res_noise:g}; trains nothing")
        return
    elif cfg.kind == "autoencoder":
        a = cfg.autoencoder
        typer.echo(f"autoencoder {a.latent_channels} latent channels, {a.reconstruction} reconstruction, KL weight {a.kl_weight:g}")
    else:
        typer.echo(f"diffusion {cfg.diffusion.path}, predicts {cfg.diffusion.prediction}, weighting {cfg.diffusion.weighting}")
    typer.echo(f"progress  {state.get('step', 0)} / {cfg.train.steps} steps" + (f", last loss {state['last_loss']:.4f}" if state else ""))
    for bad, why in damaged:
        typer.echo(f"damaged   {bad.name}: {why}")
    for report in sorted(Path(run).glob("report*.json")):
        try:
            typer.echo(f"{report.name}: {json.dumps(json.loads(report.read_text()))}")
        except ValueError:
            typer.echo(f"{report.name}: (damaged, not JSON)")


@_command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Run folder for the model, pictures and report."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of the digits preset, e.g. --set train.steps=500."),
    n: int = typer.Option(1000, min=10, help="Samples to judge."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
):
    """The main job: train a pixel DDPM on the built-in 8x8 digits, sample it, judge and draw the samples."""
    from .demo import digits_demo

    device = _check_device(device)
    report = digits_demo(out, overrides=set_, n=n, seed=seed, device=device, log=typer.echo)
    typer.echo((out / "report.md").read_text())
    typer.echo(f"pictures: {out / 'samples.png'}, {out / 'reverse.gif'}, {out / 'loss.png'}")
    if not report["goal_met"]:
        typer.secho("the quality goal was not met (see the report)", fg=typer.colors.YELLOW, err=True)


@_command("oracle-demo")
def oracle_demo(
    out: Path = typer.Option(Path("runs/oracle-demo"), help="Folder for the picture and the report."),
    n: int = typer.Option(4000, min=100, help="Samples per sampler."),
    nfe: str = typer.Option("10,50", help="Comma-separated network-evaluation budgets."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
):
    """Every sampler on an exact 8-mode ring (no training): a picture and a table against NFE."""
    from .demo import oracle_demo as run

    device = _check_device(device)
    run(out, n=n, budgets=_budgets(nfe), seed=seed, device=device, log=typer.echo)


@_command()
def version():
    """Print difflab's version."""
    import difflab

    typer.echo(difflab.__version__)


bench_app = typer.Typer(help="Benchmarks of a trained run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("samplers")
@_clean_errors
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

    specs = [s.strip() for s in samplers.split(",") if s.strip()]
    if not specs:
        _fail("--samplers names no sampler")
    device = _check_device(device)
    run_bench(run, samplers=specs, nfes=_budgets(nfe), n=n, seed=seed, device=device, batch_size=batch,
              diffusers=diffusers, append=append, log=typer.echo)
    typer.echo((Path(run) / "bench_samplers.md").read_text())
    typer.echo(f"plot: {Path(run) / 'bench_samplers.png'}")


def main() -> None:
    app(prog_name="difflab")


if __name__ == "__main__":
    sys.exit(main())
