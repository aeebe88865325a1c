"""Run folders as functions, under the names earlier versions gave them (`dl.runs.*`). Each is one call into the
application (`difflab.app`: `Run`, its kind, `trainer.train`); new code can use `difflab.app.Run` directly."""

from __future__ import annotations

from pathlib import Path

from .app.build import data_record
from .app.build import source_sample as _source_sample
from .app.kinds import KINDS
from .app.kinds.diffusion import TEXT_FIELDS, text_fields
from .app.requests import sampling_settings
from .app.run import Run, open_requires, read_config, read_facts
from .app.trainer import train
from .training.checkpoint import CheckpointDamaged

__all__ = ["train", "load", "load_network", "decoder", "sample_shape", "latent_data", "cascade_sample", "run_config", "data_info",
           "run_kind", "required_runs", "source_sample", "sampling_settings", "load_guided", "diffusion_config", "data_record",
           "KINDS", "CheckpointDamaged", "sample_tokens", "tokens_to_values", "prompt_condition", "text_fields", "TEXT_FIELDS",
           "check_unconditioned_samples", "Run"]


def load(run_dir, *, ema: bool = True, device="cpu", clip: bool = True):
    """What a trained run holds, by its kind (`Run.load`; `dl.load`)."""
    return Run.open(run_dir).load(ema=ema, device=device, clip=clip)


def load_network(run_dir, *, ema: bool = True, device="cpu", step: int | None = None):
    """(network in eval mode, config, state of the checkpoint it came from) of a run (`Run.network`)."""
    from .training.checkpoint import read_state

    run = Run.open(run_dir)
    net = run.network(ema=ema, device=device, step=step)
    state = run.state if step is None else read_state(run.checkpoint_at(step))
    return net, run.config, state


def run_config(run_dir):
    return read_config(Path(run_dir))


def data_info(run_dir) -> dict:
    return read_facts(Path(run_dir))


def run_kind(run_dir) -> str:
    return run_config(run_dir).kind


def required_runs(cfg, run_dir) -> dict[str, Path]:
    """role -> folder of each run `cfg.requires`, each checked (`run.open_requires`)."""
    return {role: run.folder for role, run in open_requires(cfg, Path(run_dir)).items()}


def _diffusion(run_dir) -> Run:
    run = Run.open(run_dir)
    if not run.kind.diffusion_model:
        raise ValueError(run.kind.no_samples(run))
    return run


def diffusion_config(run_dir):
    """The configuration of a run that must hold a diffusion model."""
    return _diffusion(run_dir).config


def check_unconditioned_samples(run_dir) -> None:
    """A super-resolution run draws images only given low-resolution ones: it is sampled through a cascade."""
    run = _diffusion(run_dir)
    run.kind.refuse_unconditioned(run)


def load_guided(run_dir, *, scale=None, classifier=None, interval=None, negative=None, rescale: float = 0.0, threshold=None,
                device="cpu"):
    """(denoiser, path, config) of a diffusion run with the guidance asked for (`kinds.diffusion.Diffusion.load_guided`)."""
    run = Run.open(run_dir)
    if scale is None and threshold is None and classifier is None and interval is None and negative is None and not rescale:
        return run.load(device=device)
    if not run.kind.diffusion_model:
        raise ValueError(f"{run_dir} is a {run.config.kind} run; guidance steers a diffusion run's samples")
    return run.kind.load_guided(run, scale=scale, classifier=classifier, interval=interval, negative=negative, rescale=rescale,
                                threshold=threshold, device=device)


def prompt_condition(run_dir, prompts, device="cpu") -> dict:
    run = _diffusion(run_dir)
    return run.kind.prompt_condition(run, prompts, device)


def decoder(run_dir, device="cpu"):
    """z -> images for a latent diffusion run's samples (`Latent.decode`), the identity for any other run."""
    import torch

    from .app.latents import latent_of

    run = Run.open(run_dir)
    if not run.facts.get("latent"):
        return lambda x: x
    latent = latent_of(run, device)

    @torch.no_grad()
    def decode(z):
        return latent.decode(z.to(device)).clamp(-1, 1)
    return decode


def sample_shape(run_dir) -> tuple:
    """The shape of one sample as it ends up (a latent run's decoded images)."""
    info = data_info(run_dir)
    return tuple(info["latent"]["image_shape"]) if info.get("latent") else tuple(info["shape"])


def latent_data(data, autoencoder_dir, device="cpu"):
    """`data` with its images replaced by the autoencoder run's scaled latents (`app.latents.latent_data`)."""
    from .app.latents import latent_data as encode

    return encode(data, Run.open(autoencoder_dir), device)


def source_sample(cfg, n: int, generator=None, device="cpu"):
    """n starting points at t = 1 from a flow's data source (`data.source`), or None for the path's Gaussian prior."""
    return _source_sample(cfg.data, n, generator, device)


def cascade_sample(run_dir, n: int, **kwargs):
    """(x, y, info): n samples of a cascade run and the low-resolution images they came from."""
    run = Run.open(run_dir)
    if not hasattr(run.kind, "draw"):
        raise ValueError(f"{run_dir} is a {run.config.kind} run, not a cascade")
    return run.kind.draw(run, n, **kwargs)


def sample_tokens(run_dir, n: int, *, sampler=None, steps=None, labels=None, guidance=None, seed: int = 0, batch_size: int = 500,
                  device="cpu", progress: bool = False):
    """n samples (integer tokens) of a discrete or autoregressive run: (tokens, {"nfe", "sampler", "steps"})."""
    run = Run.open(run_dir)
    if not run.kind.categorical:
        raise ValueError(f"{run_dir} is a {run.config.kind} run, not a categorical one")
    cfg = run.config
    if guidance is not None and not (cfg.model.class_conditional and cfg.discrete.p_uncond):
        raise ValueError(f"classifier-free guidance needs a class-conditional run trained with label dropout "
                         f"(model.class_conditional = true, discrete.p_uncond = 0.1); {run_dir} is not one")
    if labels is not None and not cfg.model.class_conditional:
        raise ValueError(f"{run_dir} is unconditional: labels do not apply")
    return run.kind.tokens(run, n, sampler=sampler, steps=steps, labels=labels, guidance=guidance, seed=seed,
                           batch_size=batch_size, device=device, progress=progress)


def tokens_to_values(run_dir, tokens):
    """What sampled tokens stand for: strings (text), images in [-1, 1] or points."""
    run = Run.open(run_dir)
    return run.kind.values(run, tokens)
