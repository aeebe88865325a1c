"""Measuring runs, under the names earlier versions gave them (`dl.evaluate.*`): the toolkit of
`difflab.app.evaluate`, and the `run_*` functions, each handing a run folder to its kind."""

from .app.evaluate import (FEATURE_SETS, HELD_OUT_SEED, IMAGE_METRICS, SAMPLE_METRICS, check_metrics, guidance_sweep, mean_se,
                           prompt_set, sample_metrics, scorer, write_report)
from .app.evaluate import held_out as _held_out
from .app.evaluate import held_out_tokens as _held_out_tokens
from .app.run import Run

__all__ = ["run_nll", "run_sample_metrics", "run_discrete_nll", "run_autoencoder_metrics", "run_guidance_sweep",
           "run_text_metrics", "held_out", "held_out_tokens", "prompt_set", "write_report", "scorer", "check_metrics",
           "guidance_sweep", "sample_metrics", "mean_se", "SAMPLE_METRICS", "IMAGE_METRICS", "FEATURE_SETS", "HELD_OUT_SEED"]


def held_out(run, split: str = "test", n: int | None = None, seed: int = 0):
    """(x, true log-density or None, is_image) for `n` held-out examples of a run's data."""
    return _held_out(Run.of(run), split, n, seed)


def held_out_tokens(run, split: str = "test", n: int | None = None, seed: int = 0):
    """(tokens, labels or None) of `n` held-out examples of a categorical run."""
    return _held_out_tokens(Run.of(run), split, n, seed)


def run_sample_metrics(run, metrics=("fid", "prdc"), *, sampler: str | None = None, steps: int | None = None,
                       grid: str | None = None, n: int = 1000, seed: int = 0, device: str = "cpu", batch_size: int = 500,
                       guide: dict | None = None) -> dict:
    """`n` samples of a run (guided as `guide` asks) scored against held-out data (module doc)."""
    return sample_metrics(Run.of(run), metrics, sampler=sampler, steps=steps, grid=grid, n=n, seed=seed, device=device,
                          batch_size=batch_size, guide=guide)


def run_guidance_sweep(run, scales, metrics=("accuracy", "fid", "prdc"), *, guide: dict | None = None, name: str = "guidance",
                       **kwargs) -> dict:
    return guidance_sweep(Run.of(run), scales, metrics, guide=guide, name=name, **kwargs)


def _measure(run, method: str, what: str):
    run = Run.of(run)
    fn = getattr(run.kind, method, None)
    if fn is None:
        raise ValueError(f"{run} is a {run.config.kind} run; {what}")
    return run, fn


def run_nll(run, **kwargs) -> dict:
    """The negative log-likelihood of a diffusion run on held-out data (`kinds.diffusion.Diffusion.likelihood`)."""
    run, fn = _measure(run, "likelihood", "the likelihood by the probability flow is for diffusion runs")
    return fn(run, **kwargs)


def run_discrete_nll(run, **kwargs) -> dict:
    """Bits per symbol of a discrete or autoregressive run on held-out data."""
    run, fn = _measure(run, "bits_per_symbol", "bits per symbol are for discrete and autoregressive runs")
    return fn(run, **kwargs)


def run_autoencoder_metrics(run, **kwargs) -> dict:
    """Reconstruction figures of an autoencoder run."""
    run, fn = _measure(run, "reconstruction", "reconstructions are measured on autoencoder runs")
    return fn(run, **kwargs)


def run_text_metrics(run, prompts: list, scales, **kwargs) -> list[dict]:
    """What a text-conditional run's samples follow of their prompts (`kinds.diffusion.Diffusion.text_metrics`)."""
    run, fn = _measure(run, "text_metrics", "it takes no prompts")
    return fn(run, prompts, scales, **kwargs)
