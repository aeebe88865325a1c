"""The `difflab` command: train, distill, sample, restore, edit, eval, bench, info, demo, oracle-demo. Thin: each command parses its options
(the shared ones declared once, below), opens a `Run`, calls one method and prints. Every error a user can cause is
one line (exit 2), Ctrl-C says what was kept (130), anything else is named a difflab bug (exit 1)."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperCommand, TyperGroup

from .bench import DEFAULT_SAMPLERS


# typer carries its own copy of click (typer._click) in recent versions: its exceptions are the ones raised
_CLICKS = (click, *([typer._click] if hasattr(typer, "_click") else []))
_USAGE = tuple(c.exceptions.UsageError for c in _CLICKS)
_HELP = tuple(c.exceptions.NoArgsIsHelpError for c in _CLICKS if hasattr(c.exceptions, "NoArgsIsHelpError"))
_QUIET = tuple(getattr(c.exceptions, n) for c in _CLICKS for n in ("Exit", "ClickException", "Abort") if hasattr(c.exceptions, n))


class _UsageError(_CLICKS[-1].exceptions.ClickException):
    """A mistake in the command line itself (an unknown option, a value of the wrong type): one line, exit 2."""

    exit_code = 2

    def __init__(self, e):
        where = e.ctx.command_path if e.ctx is not None else "difflab"
        super().__init__(f"{e.format_message()} (see `{where} --help`)")

    def show(self, file=None) -> None:
        typer.secho(f"error: {self.format_message()}", fg=typer.colors.RED, err=True)


def _one_line(cls):
    """A click command class whose command-line mistakes are one line (`_UsageError`); asking for help stays help."""

    class OneLine(cls):
        def make_context(self, *args, **kwargs):
            try:
                return super().make_context(*args, **kwargs)
            except _HELP:
                raise
            except _USAGE as e:
                raise _UsageError(e) from None

        def resolve_command(self, *args, **kwargs):  # a group's: an unknown command
            try:
                return super().resolve_command(*args, **kwargs)
            except _USAGE as e:
                raise _UsageError(e) from None

    return OneLine


_Group, _Command = _one_line(TyperGroup), _one_line(TyperCommand)
app = typer.Typer(cls=_Group, help="difflab: diffusion generative models, small, correct and fast.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
bench_app = typer.Typer(cls=_Group, help="Benchmarks of a trained run.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(bench_app, name="bench")

# What a user's input can get wrong ends here: a one-line message and exit code 2, never a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, ImportError)
_OUT_OF_MEMORY = ("can't allocate memory", "bad_alloc", "out of memory", "not enough memory")


def _fail(message: str) -> None:
    lines = str(message).strip().splitlines() or ["(no message)"]
    typer.secho(f"error: {lines[0]}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _clean_errors(command):
    """Every command: a user error (USER_ERRORS) is one line and exit 2, and so is running out of memory; Ctrl-C
    says what was kept (130); anything else is named as a difflab bug in one line (exit 1; DIFFLAB_DEBUG=1 shows
    the traceback)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, *_QUIET):
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted: nothing after the last checkpoint or output file was kept; run the same command "
                        "to continue (training resumes from its last checkpoint)", fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(130) from None
        except USER_ERRORS as e:
            _fail(str(e) or type(e).__name__)
        except (MemoryError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not any(s in str(e).lower() for s in _OUT_OF_MEMORY):
                _bug(e)
            _fail("out of memory: use a smaller --batch or --n (train.batch_size, a smaller model in training)")
        except Exception as e:
            _bug(e)

    return run


def _bug(e: Exception) -> None:
    if os.environ.get("DIFFLAB_DEBUG"):
        raise e
    first = (str(e).strip().splitlines() or [""])[0]
    typer.secho(f"error: unexpected {type(e).__name__}: {first} (a difflab bug: please report it with the command; "
                "DIFFLAB_DEBUG=1 shows where)", fg=typer.colors.RED, err=True)
    raise typer.Exit(1) from None


def _path(value) -> Path:
    """A path option's value: an empty one (--out '') would name the current folder, so it is refused."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise typer.BadParameter("an empty path names no file or folder: give one")
    return Path(value)


def _command(*args, **kwargs):
    """`app.command`, with every command's errors made clean (`_clean_errors`)."""
    def wrap(fn):
        return app.command(*args, cls=_Command, **kwargs)(_clean_errors(fn))
    return wrap


def _numbers(text: str | None, kind, option: str, example: str) -> tuple | None:
    """A comma-separated option (--nfe 5,10,20; --guidance 0,1,3; --guidance-interval 0.3,5) as a tuple."""
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        _fail(f"{option} takes comma-separated numbers (e.g. {example}), got {text!r}")
    return values


def _interval(text: str | None):
    pair = _numbers(text, float, "--guidance-interval", "0.3,5")
    if pair is not None and len(pair) != 2:
        _fail(f"--guidance-interval takes two noise levels sigma/alpha, LO,HI (e.g. 0.3,5), got {text!r}")
    return pair


# -- options shared by several commands (declared once) --------------------------------------------

RunArg = Annotated[Path, typer.Argument(parser=_path, help="A run folder written by `difflab train`.")]
Sampler = Annotated[Optional[str], typer.Option(help="Sampler (default: the one measured best at the budget, else the run's "
                                                "[sample] sampler), or a spec "
                                                "name[@grid][:key=value], e.g. dpmpp_2m@karras:rho=5 or ddim:eta=0.5.")]
Steps = Annotated[Optional[int], typer.Option(min=1, help="Number of sampler steps (default: the run's); with no --sampler "
                                              "and a measured choice, a budget of network evaluations like --nfe.")]
Nfe = Annotated[Optional[int], typer.Option(min=1, help="A budget of network evaluations per sample: the sampler measured best "
                                            "at it (`difflab info` shows which) takes the most steps that fit.")]
Grid = Annotated[Optional[str], typer.Option(help="Step grid: uniform, leading, trailing, linspace, karras, log_snr.")]
Seed = Annotated[int, typer.Option(help="Seed of the samples (the same seed, the same samples).")]
Batch = Annotated[int, typer.Option(min=1, help="Examples per batch (the samples do not depend on it).")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")]
Classifier = Annotated[Optional[Path], typer.Option(parser=_path, help="A classifier run (kind = \"classifier\") on the same path and "
                                                    "data, to guide this run's samples towards --label.")]
Interval = Annotated[Optional[str], typer.Option("--guidance-interval", help="Guide only where the noise level sigma/alpha "
                                                 "lies in LO,HI (Kynkaanniemi et al. 2024), e.g. 0.3,5.")]
Negative = Annotated[Optional[int], typer.Option("--negative-label", help="Steer away from this class (classifier-free "
                                                 "guidance, in place of the unconditional pass).")]
Rescale = Annotated[Optional[float], typer.Option("--guidance-rescale", help="Guidance rescale phi in [0, 1] (Lin et al. "
                                                  "2024), against over-saturation at large w.")]
Settings = Annotated[list[str], typer.Option("--set", help="Override a configuration key, e.g. --set train.steps=500 "
                                             "(repeatable).")]


@_command()
def train(
    config: Annotated[str, typer.Argument(help="A TOML file, or a preset: toy2d, digits, fashion_mnist, ... (configs/).")],
    set_: Settings = [],  # noqa: B006 (typer reads the default)
    out: Annotated[Optional[Path], typer.Option(parser=_path, help="Run folder (default: runs/<name>).")] = None,
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming the run folder's latest checkpoint (its "
                                        "checkpoints are deleted once everything else has checked out).")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto (default: train.device).")] = None,
):
    """Train a model; resumes from the run folder's latest checkpoint. Works under torchrun."""
    from ..training import TrainingDiverged
    from .config import load_config
    from .kinds import KINDS
    from .trainer import train as run_training

    cfg = load_config(config, [*set_, *([f"train.device={json.dumps(device)}"] if device else [])])
    run_dir = out or Path("runs") / cfg.name
    try:
        result = run_training(cfg, run_dir, resume=not fresh)
    except TrainingDiverged as e:
        _fail(str(e))
    if KINDS[cfg.kind].trains:  # a run that trains nothing said what it wrote
        typer.echo(f"{run_dir}: {result.step} steps, last loss {result.last_loss:.4f}, {result.seconds:.0f} s")
    _report(run_dir, cfg.train.device)


@_command()
def distill(
    teacher: Annotated[Path, typer.Argument(parser=_path, help="A trained run holding a diffusion model: the teacher.")],
    method: Annotated[str, typer.Option(help="progressive (halving the steps round by round), consistency (a consistency "
                                        "model) or reflow (a rectified flow on the teacher's ODE pairs).")] = "consistency",
    steps: Annotated[int, typer.Option(help="The student's sampling steps (1, 2, 4, ...).")] = 1,
    out: Annotated[Optional[Path], typer.Option(parser=_path, help="The student's run folder (default: runs/<teacher>_<method><steps>).")] = None,
    set_: Settings = [],  # noqa: B006
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming.")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto (default: train.device).")] = None,
):
    """Distil a trained run into a few-step student; resumes like train. Sample it with `difflab sample OUT`."""
    from ..training import TrainingDiverged
    from .trainer import distill as run_distill

    out = out or Path("runs") / f"{teacher.name}_{method}{steps}"
    overrides = [*set_, *([f"train.device={json.dumps(device)}"] if device else [])]
    try:
        results = run_distill(teacher, method, steps, out, overrides=overrides, resume=not fresh)
    except TrainingDiverged as e:
        _fail(str(e))
    for r in results:
        typer.echo(f"{r.run_dir}: {r.step} steps, last loss {r.last_loss:.4f}, {r.seconds:.0f} s")
    _report(out, device)
    typer.echo(f"sample it: difflab sample {out} --n 64 --out samples.png")


@_command()
def sample(
    run: RunArg, sampler: Sampler = None, steps: Steps = None, grid: Grid = None, nfe: Nfe = None,
    n: Annotated[int, typer.Option(min=1, help="Number of samples (of each --prompt).")] = 64,
    seed: Seed = 0,
    label: Annotated[Optional[int], typer.Option(help="Class label for a class-conditional model (default: every class "
                                                 "in turn).")] = None,
    prompt: Annotated[Optional[list[str]], typer.Option(help="A caption for a text-conditional model; repeat --prompt for "
                                                        "several: --n samples of each, a row per prompt.")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Guidance scale w (0: none; diffusers' guidance_scale is 1 + w): "
                                                      "classifier-free, or classifier guidance with --classifier.")] = None,
    classifier: Classifier = None, guidance_interval: Interval = None, negative_label: Negative = None,
    guidance_rescale: Rescale = None,
    dynamic_threshold: Annotated[Optional[float], typer.Option(help="Imagen's dynamic thresholding of x0_hat at this "
                                                               "percentile (e.g. 0.995; image runs).")] = None,
    batch: Batch = 500,
    out: Annotated[Optional[Path], typer.Option(parser=_path, help="FILE.png (a grid, or a 2-D scatter), FILE.npz (arrays), FILE.txt "
                                                "(text) or a folder DIR/ (one PNG per image) [default: samples.png]")] = None,
    base_sampler: Annotated[Optional[str], typer.Option(help="A cascade's base stage: its sampler spec.")] = None,
    base_steps: Annotated[Optional[int], typer.Option(min=1, help="A cascade's base stage: its steps.")] = None,
    low_res_noise: Annotated[Optional[float], typer.Option(help="A cascade: the augmentation level of the low-resolution "
                                                           "images before the second stage.")] = None,
    device: Device = "cpu",
):
    """Sample a trained run with any sampler; writes a picture, arrays, text or a folder of PNGs."""
    from .requests import Guidance, SampleRequest
    from .run import Run

    guide = Guidance(guidance, classifier, _interval(guidance_interval), negative_label, guidance_rescale, dynamic_threshold)
    request = SampleRequest(n=n, seed=seed, batch=batch, device=device, out=out, sampler=sampler, steps=steps, grid=grid, nfe=nfe,
                            label=label, prompts=tuple(prompt or ()), guidance=guide, base_sampler=base_sampler,
                            base_steps=base_steps, low_res_noise=low_res_noise)
    samples, written = Run.open(run).sample(request)
    for line in samples.preview:
        typer.echo(line)
    typer.echo(f"wrote {written} ({samples.summary})")


@_command("eval")
def eval_(
    run: RunArg,
    nll: Annotated[bool, typer.Option("--nll", help="Negative log-likelihood (the probability flow; bits per symbol for "
                                      "discrete runs).")] = False,
    elbo: Annotated[bool, typer.Option("--elbo", help="The DDPM ELBO (bits/dim for images).")] = False,
    metrics: Annotated[str, typer.Option(help="Comma-separated: fid, prdc, accuracy (images); w2, sw, mmd, energy, "
                                         "nll_samples (toy sets); nll, elbo.")] = "",
    sampler: Sampler = None, steps: Steps = None, grid: Grid = None, nfe: Nfe = None,
    split: Annotated[Optional[str], typer.Option(help="Data split [default: test]; toy sets draw fresh points.")] = None,
    n: Annotated[Optional[int], typer.Option(min=1, help="Examples (default: the split; 1000 samples).")] = None,
    method: Annotated[Optional[str], typer.Option(help="exact or hutchinson divergence (default: exact up to 64 "
                                                  "dimensions).")] = None,
    probes: Annotated[Optional[int], typer.Option(min=1, help="Hutchinson probes per example [default: 1].")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="ODE solver relative tolerance [default: 1e-5].")] = None,
    atol: Annotated[Optional[float], typer.Option(help="ODE solver absolute tolerance [default: 1e-5].")] = None,
    elbo_terms: Annotated[Optional[int], typer.Option(min=1, help="ELBO terms per example (discrete runs: draws of the "
                                                      "bound).")] = None,
    batch: Batch = 500,
    guidance: Annotated[Optional[str], typer.Option(help="Guidance scale(s) w for the sample metrics: one, or several "
                                                    "(0,1,3) for guidance.md and its plot.")] = None,
    classifier: Classifier = None, guidance_interval: Interval = None, negative_label: Negative = None,
    guidance_rescale: Rescale = None, seed: Seed = 0, device: Device = "cpu",
):
    """Measure a trained run on held-out data; writes eval.json and eval.md into the run folder."""
    from .requests import EvalRequest, Guidance
    from .run import Run

    guide = Guidance(None, classifier, _interval(guidance_interval), negative_label, guidance_rescale)
    request = EvalRequest(nll=nll, elbo=elbo, metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
                          sampler=sampler, steps=steps, grid=grid, nfe=nfe, split=split, n=n, method=method, probes=probes, rtol=rtol,
                          atol=atol, elbo_terms=elbo_terms, batch=batch, scales=_numbers(guidance, float, "--guidance", "0,1,3"),
                          guidance=guide, seed=seed, device=device, command="difflab eval " + " ".join(sys.argv[2:]))
    reports = Run.open(run).evaluate(request)
    typer.echo(reports[0].read_text())
    for extra in reports[1:]:
        typer.echo(f"plot: {extra}")


Images = Annotated[Optional[list[Path]], typer.Option("--image", parser=_path, help="An image file (repeatable); for restore, the "
                                                     "observation as it is (low-resolution for sr).")]
TestImages = Annotated[Optional[int], typer.Option(help="Use N held-out images of the run's data instead (the truth known).")]
Label = Annotated[Optional[int], typer.Option(help="Class label of a class-conditional run (default: the unconditional "
                                              "model, when it was trained with label dropout).")]
Prompt = Annotated[Optional[list[str]], typer.Option(help="A caption for a text-conditional run.")]
Out = Annotated[Optional[Path], typer.Option(parser=_path, help="FILE.png (a row per image), FILE.npz or a folder DIR/ "
                                             "[default: samples.png]")]


@_command()
def restore(
    run: RunArg,
    task: Annotated[str, typer.Option(help="inpaint, sr (super-resolution), deblur or denoise.")] = "inpaint",
    method: Annotated[str, typer.Option(help="pgdm (pseudo-inverse guidance), dps (diffusion posterior sampling) or "
                                        "repaint (inpainting).")] = "pgdm",
    image: Images = None, test_images: TestImages = None,
    box: Annotated[Optional[str], typer.Option(help="inpaint: the unknown box TOP,LEFT,HEIGHT,WIDTH (default: the "
                                               "centre half).")] = None,
    factor: Annotated[int, typer.Option(help="sr: the downsampling factor.")] = 2,
    blur: Annotated[float, typer.Option(help="deblur: the Gaussian blur's width in pixels.")] = 1.0,
    noise: Annotated[Optional[float], typer.Option(help="The observation's noise std (pixels in [-1, 1]; default 0.1 for "
                                                   "denoise, else 0).")] = None,
    scale: Annotated[float, typer.Option(help="dps: its scale (10: the best measured).")] = 10.0,
    jump: Annotated[int, typer.Option(help="repaint: steps between resamplings.")] = 10,
    resamples: Annotated[int, typer.Option(help="repaint: passes over each block of steps.")] = 5,
    n: Annotated[int, typer.Option(min=1, help="Restorations of each observation.")] = 4,
    sampler: Sampler = None, steps: Steps = None, grid: Grid = None, label: Label = None, prompt: Prompt = None,
    seed: Seed = 0, batch: Batch = 500, out: Out = None, device: Device = "cpu",
):
    """Restore images with a trained model (inpainting, super-resolution, deblurring, denoising): observation,
    restorations and the truth, a row each."""
    from .requests import RestoreRequest
    from .run import Run

    request = RestoreRequest(task=task, method=method, images=tuple(image or ()), test_images=test_images,
                             box=_numbers(box, int, "--box", "7,7,14,14"), factor=factor, blur=blur, noise=noise, scale=scale,
                             jump=jump, resamples=resamples, n=n, sampler=sampler, steps=steps, grid=grid, label=label,
                             prompts=tuple(prompt or ()), seed=seed, batch=batch, device=device, out=out)
    samples, written = Run.open(run).restore(request)
    typer.echo(f"wrote {written} ({samples.summary})")


@_command()
def edit(
    run: RunArg, image: Images = None, test_images: TestImages = None,
    strength: Annotated[float, typer.Option(help="How far the images are noised before they are sampled back, in (0, 1]: "
                                            "small keeps them, 1 forgets them.")] = 0.5,
    n: Annotated[int, typer.Option(min=1, help="Edits of each image.")] = 4,
    sampler: Sampler = None, steps: Steps = None, grid: Grid = None, label: Label = None, prompt: Prompt = None,
    seed: Seed = 0, batch: Batch = 500, out: Out = None, device: Device = "cpu",
):
    """Edit images with a trained model (SDEdit): each noised to --strength and sampled back, towards --label or
    --prompt on a conditional run."""
    from .requests import EditRequest
    from .run import Run

    request = EditRequest(images=tuple(image or ()), test_images=test_images, strength=strength, n=n, sampler=sampler,
                          steps=steps, grid=grid, label=label, prompts=tuple(prompt or ()), seed=seed, batch=batch,
                          device=device, out=out)
    samples, written = Run.open(run).edit(request)
    typer.echo(f"wrote {written} ({samples.summary})")


@_command()
def info(run: RunArg):
    """What a run is: configuration, data, progress, and any reports it holds."""
    from .run import Run

    for line in Run.open(run).describe():
        typer.echo(line)


@_command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder for the model, pictures and report.")] = Path("runs/demo"),
    set_: Settings = [],  # noqa: B006
    n: Annotated[int, typer.Option(min=10, help="Samples to judge.")] = 1000,
    seed: Seed = 0, device: Device = "cpu",
):
    """The main job: train a pixel DDPM on the built-in 8x8 digits, sample it, judge and draw the samples."""
    from .demo import digits_demo
    from .requests import _device

    report = digits_demo(out, overrides=set_, n=n, seed=seed, device=_device(device), log=typer.echo)
    typer.echo((out / "report.md").read_text())
    typer.echo(f"pictures: {out / 'samples.png'}, {out / 'reverse.gif'}, {out / 'loss.png'}")
    _report(out, device)
    if not report["goal_met"]:
        typer.secho("the quality goal was not met (see the report)", fg=typer.colors.YELLOW, err=True)


@_command()
def report(
    run: RunArg,
    n: Annotated[int, typer.Option(min=1, max=1024, help="Samples in the report's grid.")] = 64,
    samples: Annotated[bool, typer.Option(help="Draw samples and the reverse process (--no-samples: only what the "
                                          "folder holds).")] = True,
    seed: Seed = 0, device: Device = "cpu",
):
    """Write the run's report.html: what it is, its training curves, samples, evaluations, checkpoints, stages."""
    from .report import write_report
    from .requests import _device
    from .run import Run

    typer.echo(f"wrote {write_report(Run.open(run), samples=samples, n=n, seed=seed, device=_device(device))}")


def _report(run_dir: Path, device: str | None) -> None:
    """The report at the end of training (rank 0 only under torchrun)."""
    import os

    from .report import write_report
    from .requests import _device
    from .run import Run

    if int(os.environ.get("RANK", "0")) == 0:
        run = Run.open(run_dir)
        typer.echo(f"report: {write_report(run, device=_device(device or run.config.train.device))}")


@_command("oracle-demo")
def oracle_demo(
    out: Annotated[Path, typer.Option(help="Folder for the picture and the report.")] = Path("runs/oracle-demo"),
    n: Annotated[int, typer.Option(min=100, help="Samples per sampler.")] = 4000,
    nfe: Annotated[str, typer.Option(help="Comma-separated network-evaluation budgets.")] = "10,50",
    seed: Seed = 0, device: Device = "cpu",
):
    """Every sampler on an exact 8-mode ring (no training): a picture and a table against NFE."""
    from .demo import oracle_demo as run
    from .requests import MAX_STEPS, _device

    budgets = _numbers(nfe, int, "--nfe", "10,50")
    if not all(1 <= b <= MAX_STEPS for b in budgets):
        _fail(f"--nfe takes budgets from 1 to {MAX_STEPS:,}, got {nfe!r}")
    run(out, n=n, budgets=budgets, seed=seed, device=_device(device), log=typer.echo)


@_command()
def version():
    """Print difflab's version."""
    from .. import __version__

    typer.echo(__version__)


@bench_app.command("samplers", cls=_Command)
@_clean_errors
def bench_samplers(
    run: RunArg,
    nfe: Annotated[str, typer.Option(help="Comma-separated network-evaluation budgets.")] = "5,10,20,50",
    samplers: Annotated[str, typer.Option(help="Comma-separated samplers; sampler@grid picks a grid (dpmpp_2m@karras), "
                                          "colons add options (unipc:variant=bh1:order=3).")] = ",".join(DEFAULT_SAMPLERS),
    diffusers: Annotated[bool, typer.Option("--diffusers", help="Also diffusers' DDPM, DDIM, DPM-Solver++ (ODE and SDE) "
                                            "and UniPC schedulers.")] = False,
    n: Annotated[int, typer.Option(min=10, help="Samples per sampler and budget.")] = 500,
    batch: Batch = 500, seed: Seed = 0, device: Device = "cpu",
    append: Annotated[bool, typer.Option("--append", help="Add to the run's earlier bench_samplers.json (same --n and "
                                         "--seed); a rerun sampler and NFE replaces its old row.")] = False,
    record: Annotated[bool, typer.Option("--record", help="Make the best difflab sampler at each budget of the table the "
                                         "run's default for that budget (sampler_choice.json; `difflab info` shows it).")] = False,
):
    """Quality (FD for images, W2 for toy sets) and time of every sampler against NFE; a table and a plot."""
    from .requests import BenchRequest
    from .run import Run

    request = BenchRequest(samplers=tuple(s.strip() for s in samplers.split(",") if s.strip()),
                           nfe=_numbers(nfe, int, "--nfe", "5,10,20"), diffusers=diffusers, n=n, batch=batch, seed=seed,
                           device=device, append=append, record=record, log=typer.echo)
    target = Run.open(run)
    target.bench(request)
    typer.echo((target.folder / "bench_samplers.md").read_text())
    typer.echo(f"plot: {target.folder / 'bench_samplers.png'}")
    if record:
        from .sampler_choice import describe

        for _, line in describe(target.config, target.folder):
            typer.echo(f"recorded: {line}")


def main() -> None:
    app(prog_name="difflab")


if __name__ == "__main__":
    sys.exit(main())
