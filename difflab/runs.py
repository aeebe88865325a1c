"""Run folders: creating one (`train`) and loading one (`load`, `dl.load`). The application's edge.

A run folder holds config.json (the whole configuration, with the run's `kind` and the runs it
`requires`), data.json (what it was trained on), log.csv and checkpoints/ (`training.checkpoint`).
The configuration is turned into objects here and only here: each kind of run says how to build its
model and objective for the training loop (`training.fit`, which knows nothing of either) and what
`load` gives back for it:

| kind         | trains                                  | `load(run)` gives                  |
|--------------|-----------------------------------------|------------------------------------|
| `diffusion`  | a network against `objectives.DiffusionObjective` (every path, prediction, weighting; flows with couplings; label dropout) | (denoiser, path, config) |
| `discrete`   | a network giving p(x0 given x_t) over symbols against `objectives.CategoricalObjective` (D3PM bound, hybrid, masked diffusion) | (denoiser, categorical path, config) |
| `autoregressive` | a causal transformer against `objectives.AutoregressiveObjective` (the reference for bits per symbol) | (network, None, config) |
| `autoencoder` | a KL-regularised VAE (`nets.VAE`) against `objectives.AutoencoderObjective` | (autoencoder, None, config) |
| `cascade`    | nothing: it names its stages, requires.base and requires.super_resolution (a diffusion run on data.low_res) | (cascade.Cascade, None, config) |
| `classifier` | a noise-conditional classifier against `objectives.ClassifierObjective` on the run's path | (classifier, path, config): `classifier(x_t, t, label) -> log p_t(label given x_t)` |

A run that depends on other runs names them in `requires` (role -> run folder); they must be there,
complete, before it trains or loads (`required_runs`). A diffusion run that requires an `autoencoder` is
latent diffusion (`difflab.latent`): it trains on the autoencoder's latents of its data (encoded once and
cached in the autoencoder's folder, scaled to unit variance by a factor measured on them and kept in
data.json with the autoencoder checkpoint it used), and `load` gives a `latent.LatentDenoiser` whose
`decode` turns samples into images (`decoder(run)` for any run). Anything wrong in a run folder is a
ValueError or FileNotFoundError with one line that says what and how to fix it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ._random import derive_seed
from .config import (Config, build_categorical_path, build_classifier, build_data, build_model, build_path, build_source,
                     build_time_sampler, build_token_network, load_config)
from .denoisers import as_denoiser, clipped
from .training.checkpoint import CheckpointDamaged, latest_valid_checkpoint, load_tensors, load_weights, read_state

__all__ = ["train", "load", "load_network", "decoder", "sample_shape", "latent_data", "cascade_sample", "run_config", "data_info", "run_kind", "required_runs", "source_sample",
           "sampling_settings", "load_guided", "diffusion_config", "data_record", "KINDS", "CheckpointDamaged",
           "sample_tokens", "tokens_to_values"]

def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _read_json(path: Path, what: str, fix: str) -> dict:
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} is not a difflab run (no {path.name}); {fix}") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged ({what} is not valid JSON: {str(e).splitlines()[0][:120]}); {fix}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged ({what} must be a JSON object); {fix}")
    return value


def run_config(run_dir: str | Path) -> Config:
    """The run's configuration (config.json), checked as any configuration is."""
    path = Path(run_dir) / "config.json"
    values = _read_json(path, "the configuration", "train one with `difflab train CONFIG`, or restore config.json "
                        "(every checkpoint's state.json holds a copy under \"config\")")
    try:
        return load_config(values)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} does not hold a valid configuration: {e}") from None


def data_info(run_dir: str | Path) -> dict:
    """What the run was trained on: {'name', 'shape', 'num_classes', 'class_names', 'size', 'range'}."""
    path = Path(run_dir) / "data.json"
    info = _read_json(path, "the data record", "it is written when training starts: train the run again with --fresh")
    shape = info.get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ValueError(f"{path} is damaged (no valid 'shape'); train the run again with --fresh")
    return info


def data_record(data) -> dict:
    """data.json: what a data set is, for loading a model without the data."""
    from .data import ImageData

    from .data.categorical import TokenData

    record = {"name": data.name, "shape": list(data.shape), "size": len(data), "num_classes": data.num_classes,
              "class_names": list(data.class_names), "range": [-1.0, 1.0] if isinstance(data, ImageData) else None}
    if isinstance(data, TokenData):  # categorical: how many symbols, and what they stand for
        record.update(symbols=data.num_symbols, alphabet=data.alphabet)
    from .data.captions import CaptionedImages

    from .data import LowResImages

    if isinstance(data, LowResImages):  # a super-resolution model's condition
        record["low_res"] = {"factor": data.factor, "shape": list(data.low_res_shape)}
    latent = getattr(data, "latent", None)
    if latent:  # latents, not pixels: no range to clip to; what they decode to is kept beside
        record.update(range=None, latent=latent)
    if isinstance(data, CaptionedImages):  # what a prompt must be encoded like, and the attributes' cut points
        from .text_encoder import NAME

        record["captions"] = {"split": data.split, "encoder": NAME, "dim": data.context_dim, "length": data.length,
                              "thresholds": data.cuts.to_dict()}
    return record


def check_unconditioned_samples(run_dir: str | Path) -> None:
    """A super-resolution run draws images only given low-resolution ones: it is sampled through a cascade."""
    if data_info(run_dir).get("low_res"):
        raise ValueError(f"{run_dir} is a super-resolution run: it draws images given low-resolution ones; sample a "
                         "cascade that names it (kind = \"cascade\" with requires.base and requires.super_resolution: "
                         "configs/fashion_mnist_cascade.toml)")


def run_kind(run_dir: str | Path) -> str:
    return run_config(run_dir).kind


def diffusion_config(run_dir: str | Path) -> Config:
    """The configuration of a run that must hold a diffusion model (to sample, evaluate or bench it)."""
    cfg = run_config(run_dir)
    if cfg.kind != "diffusion":
        hint = " (guide a diffusion run with it: --classifier " + str(run_dir) + " --guidance W)" if cfg.kind == "classifier" else ""
        if cfg.kind == "autoencoder":
            hint = (" (train a latent diffusion run on it with requires.autoencoder = \"" + str(run_dir) + "\"; measure its "
                    "reconstructions with difflab eval " + str(run_dir) + ")")
        raise ValueError(f"{run_dir} is {_a(cfg.kind)} run, not a diffusion model: it has no samples{hint}")
    return cfg


# -- runs that need other runs -------------------------------------------------------------------

def _find_run(where: str, dependent: Path) -> Path | None:
    p = Path(where)
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, dependent.parent / p, dependent / p]
    return next((c for c in candidates if (c / "config.json").is_file()), None)


def required_runs(cfg: Config, run_dir: str | Path) -> dict[str, Path]:
    """role -> folder of each run `cfg.requires`, each checked to be a run of the kind the role needs
    with a checkpoint that loads. A relative folder is looked up from the current directory, then
    beside `run_dir`."""
    run_dir = Path(run_dir)
    need = KINDS[cfg.kind].requires
    allowed = {**need, **(KINDS[cfg.kind].optional or {})}
    if need and not set(need) <= set(cfg.requires):
        raise ValueError(f"a {cfg.kind} run requires {', '.join(f'requires.{r}' for r in need)} (the run folders of its "
                         f"{', '.join(need.values())}); it names {', '.join(cfg.requires) or 'none'}")
    need = allowed  # a role of its kind must be a run of the kind it names; other roles any run
    found = {}
    for role, where in cfg.requires.items():
        path = _find_run(where, run_dir)
        if path is None:
            raise FileNotFoundError(f"{run_dir} requires the run {where!r} as its {role}, and it is not there (looked in "
                                    f"{Path.cwd()} and {run_dir.parent}); train it first or fix requires.{role}")
        kind = run_kind(path)
        if role in need and kind != need[role]:
            raise ValueError(f"requires.{role} = {where!r} is {_a(kind)} run; {_a(need[role])} run is needed")
        if latest_valid_checkpoint(path)[0] is None:
            raise FileNotFoundError(f"the run {where!r} (requires.{role}) has no checkpoint that loads yet; train it first")
        found[role] = path
    return found


# -- kinds of run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """How one kind of run is built for training and given back by `load`; `requires`: role -> kind."""

    network: Callable  # (cfg, data_info) -> the untrained network
    build: Callable  # (cfg, data, network) -> objective
    load: Callable  # (run_dir, net, cfg, data_info, clip) -> what `load` returns
    requires: dict
    optional: dict = None  # roles it may name: role -> kind


def _symbols(info: dict) -> int:
    if not info.get("symbols"):
        raise ValueError("the data record holds no number of symbols: this run's data are not categorical")
    return int(info["symbols"])


def _diffusion_network(cfg: Config, info: dict):
    low_res = (info.get("low_res") or {}).get("shape")
    return build_model(cfg.model, tuple(info["shape"]), info.get("num_classes"), (info.get("captions") or {}).get("dim"),
                       low_res[0] if low_res else 0)


TEXT_FIELDS = ("context", "context_mask", "pooled")  # a caption's conditioning, as the batch and the networks name it


def text_fields(cfg: Config) -> tuple[str, ...]:
    """The caption fields a run's network reads: the token states and the sentence embedding, or (model.text_tokens =
    false) the sentence embedding alone; none for a model without text."""
    if not cfg.model.text_conditional:
        return ()
    return TEXT_FIELDS if cfg.model.text_tokens else ("pooled",)


def _conditions(cfg: Config) -> tuple[str, ...]:
    return (("label",) if cfg.model.class_conditional else ()) + text_fields(cfg) + \
        (("low_res",) if cfg.data.low_res else ())


def _classifier_network(cfg: Config, info: dict):
    return build_classifier(cfg.model, tuple(info["shape"]), info.get("num_classes"))


def _discrete_network(cfg: Config, info: dict):
    path = build_categorical_path(cfg.discrete, _symbols(info))
    return build_token_network(cfg.model, tuple(info["shape"]), path.num_states, path.num_classes, info.get("num_classes"),
                               output=cfg.discrete.output)


def _autoregressive_network(cfg: Config, info: dict):
    K = _symbols(info)  # and a beginning-of-sequence token K
    return build_token_network(cfg.model, tuple(info["shape"]), K + 1, K, info.get("num_classes"), causal=True)


def _build_discrete(cfg: Config, data, model):
    from .objectives import CategoricalObjective

    d = cfg.discrete
    return CategoricalObjective(build_categorical_path(d, data.num_symbols), loss=d.loss_name, lam=d.lam,
                                conditions=("label",) if cfg.model.class_conditional else (), p_uncond=d.p_uncond)


def _build_autoregressive(cfg: Config, data, model):
    from .objectives import AutoregressiveObjective

    return AutoregressiveObjective(bos=data.num_symbols, conditions=("label",) if cfg.model.class_conditional else (),
                                   p_uncond=cfg.discrete.p_uncond)


def _load_discrete(run_dir, net, cfg: Config, info: dict, clip: bool):
    from .discrete import as_denoiser

    return as_denoiser(net), build_categorical_path(cfg.discrete, _symbols(info)), cfg


def _load_autoregressive(run_dir, net, cfg: Config, info: dict, clip: bool):
    return net, None, cfg


def _build_diffusion(cfg: Config, data, model):
    from .objectives import DiffusionObjective

    path = build_path(cfg.diffusion)
    source = build_source(cfg.data)
    if source is not None and tuple(source.sample(1).shape[1:]) != tuple(data.shape):
        raise ValueError(f"data.source {cfg.data.source!r} has shape {tuple(source.sample(1).shape[1:])} per example; "
                         f"the data have {tuple(data.shape)}")
    d = cfg.diffusion
    # a text model's dropout replaces the caption by the empty caption (and a label, if it has one too, by -1)
    null = None
    if cfg.model.text_conditional:
        null = {**{k: v for k, v in data.null.items() if k in text_fields(cfg)}, **({"label": -1} if cfg.model.class_conditional else {})}
    return DiffusionObjective(path, prediction=d.prediction, weighting=d.weighting, snr_gamma=d.snr_gamma,
                              time_sampler=build_time_sampler(d, path),
                              source=source, coupling=d.coupling, coupling_reg=d.coupling_reg,
                              conditions=_conditions(cfg), p_uncond=d.p_uncond, null=null, low_res_noise=d.low_res_noise)


def _build_classifier(cfg: Config, data, model):
    from .objectives import ClassifierObjective

    path = build_path(cfg.diffusion)
    return ClassifierObjective(path, time_sampler=build_time_sampler(cfg.diffusion, path))


def _load_classifier(run_dir, net, cfg: Config, info: dict, clip: bool):
    from .guidance import as_classifier

    return as_classifier(net), build_path(cfg.diffusion), cfg


def _load_diffusion(run_dir, net, cfg: Config, info: dict, clip: bool):
    path = build_path(cfg.diffusion)
    den = as_denoiser(net, path, cfg.diffusion.prediction)
    value_range = info.get("range")
    if value_range and clip:  # images live in [-1, 1], and so does E[x0 | x_t]
        den = clipped(den, *value_range)
    if info.get("latent"):
        den = _with_decoder(den, run_dir, next(net.parameters()).device)
    return den, path, cfg


def _autoencoder_network(cfg: Config, info: dict):
    from .nets import VAE

    m = cfg.model
    if len(info["shape"]) != 3:
        raise ValueError(f"an autoencoder encodes images (C, H, W); these data have shape {tuple(info['shape'])}")
    net = VAE(info["shape"][0], cfg.autoencoder.latent_channels, m.channels, m.channel_mult, m.num_res_blocks, m.patch_size)
    try:
        net.latent_shape(tuple(info["shape"]))
    except ValueError:
        raise ValueError(f"images of {info['shape'][1]}x{info['shape'][2]} need sides divisible by model.patch_size x "
                         f"2^(levels - 1) = {net.factor} (model.channel_mult has {len(m.channel_mult)} levels); use fewer "
                         "levels or a smaller patch") from None
    return net


def _build_autoencoder(cfg: Config, data, model):
    from .objectives import AutoencoderObjective

    a = cfg.autoencoder
    return AutoencoderObjective(reconstruction=a.reconstruction, kl_weight=a.kl_weight)


def _load_autoencoder(run_dir, net, cfg: Config, info: dict, clip: bool):
    return net, None, cfg


KINDS = {"diffusion": Kind(_diffusion_network, _build_diffusion, _load_diffusion, {}, {"autoencoder": "autoencoder"}),
         "autoencoder": Kind(_autoencoder_network, _build_autoencoder, _load_autoencoder, {}),
         "cascade": Kind(None, None, None, {"base": "diffusion", "super_resolution": "diffusion"}),
         "classifier": Kind(_classifier_network, _build_classifier, _load_classifier, {}),
         "discrete": Kind(_discrete_network, _build_discrete, _load_discrete, {}),
         "autoregressive": Kind(_autoregressive_network, _build_autoregressive, _load_autoregressive, {})}


# -- latent diffusion ----------------------------------------------------------------------------

def latent_data(data, autoencoder_dir: Path, device="cpu"):
    """`data` with its images replaced by the autoencoder's scaled latents (module doc of `difflab.latent`); the
    latents of each (data set, autoencoder checkpoint) are encoded once and cached in the autoencoder's folder."""
    import copy

    from .data import ImageData
    from .latent import encode_images, measure_scale
    from safetensors.torch import save_file

    if not isinstance(data, ImageData):
        raise ValueError(f"latent diffusion encodes images; these data ({data.name}) are not images")
    ae, ae_cfg, state = load_network(autoencoder_dir, device=device)
    ae_shape = tuple(data_info(autoencoder_dir)["shape"])
    if ae_shape != tuple(data.shape):
        raise ValueError(f"the autoencoder {autoencoder_dir} was trained on images of shape {ae_shape}; these data have "
                         f"shape {tuple(data.shape)}")
    step = int(state.get("step", 0))
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{data.name}-{len(data)}")
    cache = Path(autoencoder_dir) / "latents" / f"{safe}-step-{step}.safetensors"
    latents = None
    if cache.is_file():
        try:
            latents = load_tensors(cache)["latents"]
        except (CheckpointDamaged, KeyError, ValueError, OSError):
            latents = None
        if latents is not None and tuple(latents.shape) != (len(data), *ae.latent_shape(data.shape)):
            latents = None
    if latents is None:
        latents = encode_images(ae, data.images, device=device, progress=_is_main_process())
        if _is_main_process():  # written whole, then renamed: a crash leaves no half file
            cache.parent.mkdir(exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            save_file({"latents": latents.contiguous()}, str(tmp))
            tmp.replace(cache)
    scale = measure_scale(latents)
    z = latents * scale
    out = copy.copy(data)
    out.images = z
    out.name = f"{data.name} (latents)"
    out.latent = {"autoencoder": str(autoencoder_dir), "autoencoder_step": step, "scale": scale,
                  "image_shape": list(data.shape), "image_range": [-1.0, 1.0],
                  "channel_mean": [round(float(v), 6) for v in z.double().mean((0, 2, 3))],
                  "channel_std": [round(float(v), 6) for v in z.double().std((0, 2, 3))]}
    return out


def _latent_of(run_dir: Path, info: dict, device="cpu"):
    """The `latent.Latent` (autoencoder at the checkpoint the run was trained with, and scale) of a latent run."""
    from .latent import Latent

    rec = info["latent"]
    cfg = run_config(run_dir)
    ae_dir = required_runs(cfg, run_dir)["autoencoder"]
    ae, _, _ = load_network(ae_dir, device=device, step=int(rec["autoencoder_step"]))
    return Latent(ae, float(rec["scale"]))


def _with_decoder(den, run_dir, device="cpu"):
    from .latent import LatentDenoiser

    return LatentDenoiser(den, _latent_of(Path(run_dir), data_info(run_dir), device))


def decoder(run_dir: str | Path, device="cpu"):
    """z -> images for a latent diffusion run's samples (`Latent.decode`), the identity for any other run."""
    info = data_info(run_dir)
    if not info.get("latent"):
        return lambda x: x
    latent = _latent_of(Path(run_dir), info, device)

    @torch.no_grad()
    def decode(z):
        return latent.decode(z.to(device)).clamp(-1, 1)
    return decode


def sample_shape(run_dir: str | Path) -> tuple:
    """The shape of one sample as the sampler draws it (a latent run's latents) and as it ends up (images)."""
    info = data_info(run_dir)
    return tuple(info["latent"]["image_shape"]) if info.get("latent") else tuple(info["shape"])


# -- cascades --------------------------------------------------------------------------------------

def _cascade_record(cfg: Config, run_dir: Path) -> dict:
    """data.json of a cascade: its stages checked to fit (the super-resolution run takes the base's images, a
    level it was trained with), and what it draws."""
    stages = required_runs(cfg, run_dir)
    base, sr = stages["base"], stages["super_resolution"]
    bi, si = data_info(base), data_info(sr)
    low = (si.get("low_res") or {})
    if not low:
        raise ValueError(f"requires.super_resolution = {cfg.requires['super_resolution']!r} is not a super-resolution run "
                         "(train one with data.low_res = 2)")
    if tuple(sample_shape(base)) != tuple(low["shape"]):
        raise ValueError(f"the base {cfg.requires['base']!r} draws images of shape {tuple(sample_shape(base))}; the "
                         f"super-resolution run takes low-resolution images of shape {tuple(low['shape'])}")
    trained = run_config(sr).diffusion.low_res_noise
    if cfg.cascade.low_res_noise > trained:
        raise ValueError(f"cascade.low_res_noise = {cfg.cascade.low_res_noise} is above the levels the super-resolution "
                         f"run was trained with (diffusion.low_res_noise = {trained}): at most {trained}")
    if run_config(base).model.text_conditional or run_config(sr).model.text_conditional:
        raise ValueError("a cascade of text-conditional stages is not supported yet: use class-conditional or unconditional stages")
    return {"name": f"cascade: {bi['name']} -> {si['name']}", "shape": list(si["shape"]), "size": si["size"],
            "num_classes": si.get("num_classes"), "class_names": si.get("class_names", []), "range": si.get("range"),
            "cascade": {"base": str(base), "super_resolution": str(sr), "factor": low["factor"],
                        "low_res_shape": list(low["shape"])}}


def _write_cascade(cfg: Config, run_dir: Path, resume: bool):
    """A cascade trains nothing: its folder holds config.json and data.json naming its stages."""
    from .training import TrainResult

    record = _cascade_record(cfg, run_dir)
    if resume and (run_dir / "config.json").is_file() and _identity(_filled(run_config(run_dir).to_dict())) != \
            _identity(json.loads(json.dumps(cfg.to_dict()))):
        raise ValueError(f"{run_dir} holds a different cascade; use a new run folder or --fresh")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, obj in (("config.json", cfg.to_dict()), ("data.json", record)):
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, indent=1))
        tmp.replace(run_dir / name)
    if _is_main_process():
        _say(f"{run_dir}: a cascade of {cfg.requires['base']} and {cfg.requires['super_resolution']} (it trains nothing; "
             "sample it with difflab sample)")
    return TrainResult(run_dir, 0, float("nan"), 0.0)


def _load_cascade(run_dir: Path, *, device="cpu", scale: float | None = None, sampler: str | None = None,
                  steps: int | None = None, base_sampler: str | None = None, base_steps: int | None = None,
                  level: float | None = None):
    """(cascade.Cascade, None, config) of a cascade run: each stage loaded (guided by `scale` where it is
    class-conditional with label dropout) with its sampling settings: the base's own unless cascade.base_sampler /
    base_steps or `base_sampler` / `base_steps` say otherwise, the super-resolution stage's from the cascade's
    [sample] section and `sampler` / `steps`."""
    from .cascade import Cascade

    cfg = run_config(run_dir)
    rec = _cascade_record(cfg, run_dir)
    base_dir, sr_dir = Path(rec["cascade"]["base"]), Path(rec["cascade"]["super_resolution"])
    stage = {}
    configs = {"base": run_config(base_dir), "super_resolution": run_config(sr_dir)}
    guided = {role: scale is not None and c.model.class_conditional and c.diffusion.p_uncond > 0 for role, c in configs.items()}
    if scale is not None and not any(guided.values()):
        raise ValueError(f"{run_dir}: neither stage is class-conditional with label dropout (diffusion.p_uncond > 0), so "
                         "there is nothing for classifier-free guidance to steer")
    for role, d in (("base", base_dir), ("super_resolution", sr_dir)):
        den, path, _ = load_guided(d, scale=scale if guided[role] else None, device=device)
        stage[role] = (den, path, configs[role])
    b = cfg.cascade
    base_cfg = stage["base"][2]
    base_settings = sampling_settings(base_cfg, base_sampler or b.base_sampler or None, base_steps or b.base_steps or None)
    sr_settings = sampling_settings(cfg, sampler, steps)
    level = b.low_res_noise if level is None else float(level)
    trained = stage["super_resolution"][2].diffusion.low_res_noise
    if level > trained:
        raise ValueError(f"the augmentation level {level} is above the levels the super-resolution run was trained with "
                         f"(up to {trained})")
    base_den = stage["base"][0]
    cascade = Cascade(base_den, stage["base"][1], stage["super_resolution"][0], stage["super_resolution"][1],
                      rec["cascade"]["low_res_shape"], rec["shape"], level=level, base_settings=base_settings,
                      sr_settings=sr_settings, base_shape=data_info(base_dir)["shape"],
                      decode_base=getattr(base_den, "decode", None), clip=tuple(rec["range"]) if rec.get("range") else None)
    cascade.conditional = {role: stage[role][2].model.class_conditional for role in stage}
    return cascade, None, cfg


def cascade_sample(run_dir: str | Path, n: int, *, labels=None, guidance: float | None = None, sampler: str | None = None,
                   steps: int | None = None, base_sampler: str | None = None, base_steps: int | None = None,
                   level: float | None = None, seed: int = 0, batch_size: int = 500, device="cpu", progress: bool = False):
    """(x, y, info): n samples of a cascade run and the low-resolution images they came from; `labels` go to each
    class-conditional stage, `guidance` (classifier-free w) to each stage trained with label dropout."""
    import time

    cascade, _, cfg = _load_cascade(Path(run_dir), device=device, scale=guidance, sampler=sampler, steps=steps,
                                    base_sampler=base_sampler, base_steps=base_steps, level=level)
    if labels is not None and not any(cascade.conditional.values()):
        raise ValueError(f"{run_dir}: neither stage is class-conditional: labels do not apply")
    cond = {role: ({"label": labels} if labels is not None and on else None) for role, on in cascade.conditional.items()}
    t0 = time.time()
    x, y = cascade.sample(n, seed=seed, batch_size=batch_size, base_cond=cond["base"], sr_cond=cond["super_resolution"],
                          device=device, progress=progress)
    return x, y, {"base": cascade.base_settings, "super_resolution": cascade.sr_settings, "level": cascade.level,
                  "sample_seconds": round(time.time() - t0, 1)}


# -- training ------------------------------------------------------------------------------------

# Keys that may change when a run is resumed: they do not change what is computed.
_OPERATIONAL = ("steps", "device", "checkpoint_every", "keep_last", "log_every", "max_minutes")


def _identity(cfg: dict) -> dict:
    """What must match to resume a run: everything but the operational train keys, the name and [sample]."""
    kept = {k: v for k, v in cfg.items() if k not in ("sample", "name")}
    return {**kept, "train": {k: v for k, v in cfg.get("train", {}).items() if k not in _OPERATIONAL}}


def _filled(saved: dict) -> dict:
    """A saved configuration read back through load_config, so keys added to difflab since (with their
    defaults) do not make an old run look different."""
    try:
        return json.loads(json.dumps(load_config(saved).to_dict()))
    except (ValueError, TypeError):  # a config this version cannot read: compare it as it is
        return saved


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _resume_point(run_dir: Path, cfg: Config) -> Path | None:
    """The newest checkpoint of `run_dir` that loads (saying which damaged ones it passed over), checked
    to belong to the same configuration; None for a run that has not checkpointed yet."""
    ckpt, damaged = latest_valid_checkpoint(run_dir)
    for bad, why in damaged:
        if _is_main_process():
            _say(f"note: skipping the damaged checkpoint {bad.name} ({why})")
    if ckpt is None and damaged:
        raise ValueError(f"no checkpoint of {run_dir} loads (the newest: {damaged[0][1]}); start over with --fresh "
                         "(resume=False), which deletes them")
    if ckpt is None:
        return None
    if damaged and _is_main_process():
        _say(f"note: resuming {run_dir} from {ckpt.name}, the newest checkpoint that loads")
    saved = read_state(ckpt).get("config", {})
    if _identity(_filled(saved)) != _identity(json.loads(json.dumps(cfg.to_dict()))):
        raise ValueError(f"{run_dir} holds a run with a different configuration; use a new run folder or --fresh "
                         "(only name, [sample] and train.steps, device, checkpoint_every, keep_last, log_every, "
                         "max_minutes may change)")
    return ckpt


def train(cfg: Config, run_dir: str | Path, *, resume: bool = True, progress: bool = True, stop_after: int | None = None,
          data=None):
    """Train the run `cfg` describes into `run_dir`, continuing from its newest checkpoint that loads
    when `resume` (else starting over: its checkpoints are deleted, once everything else checked out).

    Everything is built and checked before anything in `run_dir` changes: the required runs, the data
    (`data` replaces the configured set, for tests), the model and its objective, the checkpoint to
    resume. Then `training.fit` runs. `stop_after` ends the run after that many total steps, as a
    crash would but cleanly.
    """
    from .training import fit

    run_dir = Path(run_dir)
    if cfg.kind == "cascade":
        return _write_cascade(cfg, run_dir, resume)
    needed = required_runs(cfg, run_dir)
    data = data if data is not None else build_data(cfg.data)
    if "autoencoder" in needed:
        data = latent_data(data, needed["autoencoder"])
        _check_same_latents(run_dir, data, resume)
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the run's seed alone
        torch.manual_seed(derive_seed(cfg.train.seed, "init"))
        model = KINDS[cfg.kind].network(cfg, data_record(data))
        objective = KINDS[cfg.kind].build(cfg, data, model)
    ckpt = _resume_point(run_dir, cfg) if resume else None
    return fit(model, objective, data, run_dir, cfg.train, resume_from=ckpt, start_over=not resume, state={"config": cfg.to_dict()},
               files={"config.json": cfg.to_dict(), "data.json": data_record(data)}, name=cfg.name, progress=progress,
               stop_after=stop_after)


# -- loading -------------------------------------------------------------------------------------

def _check_same_latents(run_dir: Path, data, resume: bool) -> None:
    """A latent run resumes on the latents it started with: not if its autoencoder has been trained since."""
    if not resume or not (run_dir / "data.json").is_file() or latest_valid_checkpoint(run_dir)[0] is None:
        return
    before = (data_info(run_dir).get("latent") or {}).get("autoencoder_step")
    if before is not None and before != data.latent["autoencoder_step"]:
        raise ValueError(f"{run_dir} was trained on the latents of its autoencoder at step {before}; the autoencoder is now "
                         f"at step {data.latent['autoencoder_step']}: start over with --fresh, or use a new run folder")


def load_network(run_dir: str | Path, *, ema: bool = True, device="cpu", step: int | None = None):
    """The run's network with its EMA (or raw) weights from the newest checkpoint that loads (saying so
    when it passes over damaged ones), or from the checkpoint of `step`, in eval mode: (net, config,
    checkpoint state)."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    info = data_info(run_dir)
    required_runs(cfg, run_dir)
    if step is not None:
        ckpt, damaged = run_dir / "checkpoints" / f"step-{step:08d}", []
        try:
            from .training.checkpoint import verify

            verify(ckpt)
        except (CheckpointDamaged, FileNotFoundError, OSError) as e:
            raise ValueError(f"the checkpoint of step {step} of {run_dir} is needed (a latent run was trained on it) and does "
                             f"not load ({str(e).splitlines()[0][:160]}); retrain the latent run with --fresh") from None
    else:
        ckpt, damaged = latest_valid_checkpoint(run_dir)
    if ckpt is None:
        if damaged:
            raise ValueError(f"no checkpoint of {run_dir} loads (the newest: {damaged[0][1]}); train it again with --fresh")
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint yet; train it (difflab train) until it writes one")
    if damaged:
        _say(f"note: the newest checkpoint of {run_dir} is damaged ({damaged[0][1]}); using {ckpt.name}")
    try:
        net = KINDS[cfg.kind].network(cfg, info)
    except ValueError as e:
        raise ValueError(f"{run_dir}: its config.json and data.json do not make a model ({e})") from None
    file = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    load_weights(net, load_tensors(file), str(file))
    return net.to(device).eval().requires_grad_(False), cfg, read_state(ckpt)


def load(run_dir: str | Path, *, ema: bool = True, device="cpu", clip: bool = True):
    """What a trained run holds, by its kind. A diffusion run gives (denoiser, path, config): the
    denoiser takes `label=` when class-conditional and, for image data, is clipped to the data's range
    [-1, 1] (`denoisers.clipped`) unless `clip=False` (likelihoods need the smooth, unclipped
    denoiser: clipping zeroes its Jacobian)."""
    if run_kind(run_dir) == "cascade":
        return _load_cascade(Path(run_dir), device=device)
    net, cfg, _ = load_network(run_dir, ema=ema, device=device)
    return KINDS[cfg.kind].load(Path(run_dir), net, cfg, data_info(run_dir), clip)


def _path_identity(cfg: Config) -> dict:
    d = cfg.diffusion
    return {"path": d.path, "T": d.T, "sigma_min": d.sigma_min, "sigma_max": d.sigma_max, "flow_sigma_min": d.flow_sigma_min}


def load_guided(run_dir: str | Path, *, scale: float | None = None, classifier: str | Path | None = None, interval=None,
                negative: int | None = None, rescale: float = 0.0, threshold: float | None = None, device="cpu"):
    """(denoiser, path, config) of a diffusion run with the guidance asked for (`difflab.guidance`), the
    result clipped to the data's range like `load`'s:

    - `scale` alone: classifier-free guidance of a class-conditional run trained with label dropout
      (`diffusion.p_uncond` > 0), towards `label=` and away from the null label, or from class `negative`;
    - `scale` and `classifier` (a classifier run on the same path): classifier guidance of any run;
    - `interval=(lo, hi)`: guide only where sigma/alpha lies in [lo, hi]; `rescale`: Lin et al.'s phi;
    - `threshold`: Imagen's dynamic thresholding at that percentile (pixel data, with or without guidance).
    With neither `scale` nor `threshold` it is `load(run)` (and the other options are refused)."""
    from . import guidance

    run_dir = Path(run_dir)
    if scale is None and (classifier is not None or interval is not None or negative is not None or rescale):
        raise ValueError("--classifier, --guidance-interval, --negative-label and --guidance-rescale shape guidance: "
                         "give its scale with --guidance W")
    if scale is None and threshold is None:
        return load(run_dir, device=device)
    den, path, cfg = load(run_dir, device=device, clip=False)
    value_range = data_info(run_dir).get("range")
    if cfg.kind != "diffusion":
        raise ValueError(f"{run_dir} is a {cfg.kind} run; guidance steers a diffusion run's samples")
    if threshold is not None and not value_range:
        raise ValueError("dynamic thresholding keeps pixel values in [-1, 1]: it applies to image runs only")
    if scale is not None and classifier is not None:
        if data_info(run_dir).get("latent"):
            raise ValueError(f"{run_dir} samples latents; a classifier run judges images, so it cannot guide it (train the "
                             "latent run class-conditional with diffusion.p_uncond = 0.1 for classifier-free guidance)")
        den = _classifier_guided(den, path, cfg, scale, classifier, interval, negative, rescale, device)
    elif scale is not None:
        if not (cfg.model.class_conditional or cfg.model.text_conditional):
            raise ValueError(f"{run_dir} is unconditional: classifier-free guidance needs a class-conditional run trained "
                             "with label dropout; for this run give a classifier with --classifier CLF_RUN")
        if not cfg.diffusion.p_uncond:
            raise ValueError(f"{run_dir} was trained without label dropout (diffusion.p_uncond = 0), so its unconditional "
                             "pass never learned anything: train with diffusion.p_uncond = 0.1 for classifier-free guidance")
        null = None
        if cfg.model.text_conditional:  # the empty caption, as in training (and the null label too, if any)
            null = {**prompt_condition(run_dir, [""], device), **({"label": -1} if cfg.model.class_conditional else {})}
        if negative is not None and not cfg.model.class_conditional:
            raise ValueError("--negative-label needs a class-conditional run")
        den = guidance.classifier_free(den, scale, null=null, negative=None if negative is None else {**(null or {}), "label": int(negative)},
                                       path=path, interval=interval, rescale=rescale)
    if threshold is not None:
        den = guidance.dynamic_threshold(den, threshold)
    den = clipped(den, *value_range) if value_range else den
    if data_info(run_dir).get("latent"):
        den = _with_decoder(den, run_dir, device)
    return den, path, cfg


def prompt_condition(run_dir: str | Path, prompts, device="cpu") -> dict:
    """The conditioning of a text-conditional run for `prompts` (one row each): {"context", "context_mask",
    "pooled"} from the run's sentence encoder, padded to the length of its training captions."""
    info = data_info(run_dir).get("captions")
    if not info:
        raise ValueError(f"{run_dir} is not text-conditional (trained without data.captions): it takes no prompt")
    from .text_encoder import NAME, shared

    if info.get("encoder") != NAME:
        raise ValueError(f"{run_dir} was trained on captions encoded by {info.get('encoder')}; this difflab has {NAME}")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    encoder = shared(str(device))
    longest = max(len(encoder.tokenizer(p)["input_ids"]) for p in prompts)
    if longest > info["length"]:
        _say(f"note: a prompt of {longest} tokens is cut to the {info['length']} the run was trained on")
    enc = encoder(prompts, length=int(info["length"]))
    out = {"context": enc["context"], "context_mask": enc["mask"], "pooled": enc["pooled"]}
    return {k: out[k] for k in text_fields(run_config(run_dir))}


def _classifier_guided(den, path, cfg: Config, scale, classifier, interval, negative, rescale, device):
    """Classifier guidance of `den` by the classifier run `classifier`, checked to be one on the same path."""
    from . import guidance

    if negative is not None or rescale:
        raise ValueError("--negative-label and --guidance-rescale are options of classifier-free guidance, not of --classifier")
    clf, _, clf_cfg = load(classifier, device=device)
    if clf_cfg.kind != "classifier":
        raise ValueError(f"--classifier {classifier} is a {clf_cfg.kind} run; train one with kind = \"classifier\"")
    if _path_identity(clf_cfg) != _path_identity(cfg):
        raise ValueError(f"the classifier {classifier} was trained on the path {_path_identity(clf_cfg)}, this run on "
                         f"{_path_identity(cfg)}: its p_t(c | x_t) is for other noise levels")
    return guidance.classifier(den, path, clf, scale, interval=interval)


def sampling_settings(cfg: Config, sampler: str | None = None, steps: int | None = None, grid: str | None = None) -> dict:
    """Keywords for `dl.sample` / `sample_batched`: the run's [sample] settings, with `sampler` (a name or a
    spec name[@grid][:key=value...]), `steps` and `grid` overriding them. The run's own sampler options and
    grid options apply only while its own sampler (and grid) is used."""
    from ._checks import choose
    from .samplers.grids import GRIDS
    from .sampling import parse_sampler_spec

    s = cfg.sample
    spec = parse_sampler_spec(sampler or s.sampler)
    if grid is not None:
        choose(grid, GRIDS, "grid")
    own = spec.sampler == s.sampler and not spec.options
    grid = grid or spec.grid or s.grid or None
    steps = steps or (None if spec.sampler == "ode_rk45" else s.steps)
    grid_options = spec.grid_options or (s.grid_options if own and grid == (s.grid or None) and steps else {})
    return {"sampler": spec.sampler, "steps": steps, "grid": grid, "grid_options": grid_options,
            **(s.options if own else {}), **spec.options}


def source_sample(cfg: Config, n: int, generator=None, device="cpu"):
    """n starting points at t = 1 drawn from a flow's data source (`data.source`), or None when the run
    starts from its path's Gaussian prior (`dl.sample` draws that itself)."""
    source = build_source(cfg.data)
    return None if source is None else source.sample(n, generator).float().to(device)



def sample_tokens(run_dir: str | Path, n: int, *, sampler: str | None = None, steps: int | None = None, labels=None,
                  guidance: float | None = None, seed: int = 0, batch_size: int = 500, device="cpu", progress: bool = False):
    """n samples (integer tokens) of a discrete or autoregressive run, example i from its own generator:
    (tokens, {"nfe": network evaluations per sample, "sampler", "steps"}). A discrete run samples with its
    [discrete] sampler and sample_steps unless `sampler` / `steps` say otherwise; `guidance` is the
    classifier-free scale w (a class-conditional run trained with discrete.p_uncond > 0)."""
    from . import discrete

    cfg = run_config(run_dir)
    if cfg.kind not in ("discrete", "autoregressive"):
        raise ValueError(f"{run_dir} is a {cfg.kind} run, not a categorical one")
    info = data_info(run_dir)
    shape = tuple(info["shape"])
    if guidance is not None and not (cfg.model.class_conditional and cfg.discrete.p_uncond):
        raise ValueError(f"classifier-free guidance needs a class-conditional run trained with label dropout "
                         f"(model.class_conditional = true, discrete.p_uncond = 0.1); {run_dir} is not one")
    if labels is not None and not cfg.model.class_conditional:
        raise ValueError(f"{run_dir} is unconditional: labels do not apply")
    model, path, cfg = load(run_dir, device=device)
    cond = {"label": labels} if labels is not None else None
    if cfg.kind == "autoregressive":
        if sampler is not None or steps is not None or guidance is not None:
            raise ValueError("an autoregressive run samples one position at a time: --sampler, --steps and --guidance do not apply")
        bos = _symbols(info)

        def draw(m, gens, **cb):
            return discrete.autoregressive.sample(model, (m, *shape), bos=bos, generator=gens, device=device, **cb), {}
        tokens, _ = discrete.in_batches(draw, n, seed=seed, batch_size=batch_size, cond=cond, device=device, progress=progress)
        positions = math.prod(shape)  # one network call per position
        return tokens, {"nfe": positions, "sampler": "autoregressive", "steps": positions}
    d = cfg.discrete
    name = sampler or d.sampler_name
    count = steps or d.sample_steps or path.steps or 1000
    if guidance is not None:
        model = discrete.classifier_free(model, guidance)
    with torch.no_grad():
        tokens, out = discrete.sample_batched(model, path, n, shape, seed=seed, batch_size=batch_size, cond=cond,
                                              device=device, progress=progress, steps=count, sampler=name)
    return tokens, {"nfe": out.get("nfe"), "sampler": name, "steps": count}


def tokens_to_values(run_dir: str | Path, tokens: torch.Tensor):
    """What sampled tokens stand for: a list of strings (text), images in [-1, 1] (quantized images) or points
    (quantized toy points)."""
    from .config import TOY_RANGE
    from .data.categorical import decode, dequantize

    cfg, info = run_config(run_dir), data_info(run_dir)
    if info.get("alphabet"):
        return [decode(t) for t in tokens.reshape(tokens.shape[0], -1)]
    low, high = TOY_RANGE if cfg.data.name == "toy" else (-1.0, 1.0)
    return dequantize(tokens, _symbols(info), low, high)
