"""The run-folder side of latent diffusion (`difflab.latent` holds the mathematics): the scaled latents a diffusion
run that requires an autoencoder trains on, and the autoencoder it decodes its samples with.

- `plan`: the facts a latent run's network is built from (the latent shape, from the autoencoder's network alone),
  every check done before any image is encoded: the data are images of the autoencoder's shape, and a resumed run
  keeps the autoencoder checkpoint it started with.
- `latent_data`: the data with its images replaced by s E(x), encoded once per (data set, autoencoder weights) and
  cached in difflab's cache folder (`app.cache`), never in a run folder: a run does not write into the folder of a
  run it uses. data.json keeps the scale, the autoencoder's step and the
  SHA-256 of its weights.
- `latent_of`: the `Latent` (autoencoder at the recorded step, and scale) of a trained latent run, refused when the
  autoencoder folder now holds another autoencoder (other weights at that step, or latents of another shape).
"""

from __future__ import annotations

import copy
from pathlib import Path

from .folders import is_main_process

__all__ = ["plan", "latent_data", "latent_of"]


def _check_images(data, ae_run) -> None:
    from ..data import ImageData

    if not isinstance(data, ImageData):
        raise ValueError(f"latent diffusion encodes images; these data ({data.name}) are not images")
    ae_shape = tuple(ae_run.facts["shape"])
    if ae_shape != tuple(data.shape):
        raise ValueError(f"the autoencoder {ae_run.folder} was trained on images of shape {ae_shape}; these data have "
                         f"shape {tuple(data.shape)}")


def plan(data, ae_run, resuming: Path | None) -> dict:
    """data.json's facts for a latent run on `data` under the autoencoder run `ae_run`, without encoding (module doc)."""
    from .build import data_record

    _check_images(data, ae_run)
    step = int(ae_run.state.get("step", 0))
    if resuming is not None and (resuming / "data.json").is_file() and (resuming / "checkpoints").is_dir():
        from ..training.checkpoint import latest_valid_checkpoint
        from .folders import read_json

        if latest_valid_checkpoint(resuming)[0] is not None:
            before = (read_json(resuming / "data.json", "the data record", "start over with --fresh").get("latent") or {})
            if before.get("autoencoder_step") is not None and before["autoencoder_step"] != step:
                raise ValueError(f"{resuming} was trained on the latents of its autoencoder at step {before['autoencoder_step']}; "
                                 f"the autoencoder is now at step {step}: start over with --fresh, or use a new run folder")
    facts = data_record(data)
    facts.update(shape=list(ae_run.network().latent_shape(tuple(data.shape))), range=None)
    return facts


def _encoded(data, ae, digest: str, device) -> "torch.Tensor":  # noqa: F821
    """E(x) of every image, from difflab's cache when it holds them (module doc)."""
    from ..latent import encode_images
    from .cache import cached

    key = f"{data.name}-{len(data)}-{digest[:16]}"
    shape = (len(data), *ae.latent_shape(data.shape))
    return cached("latents", key, lambda: {"latents": encode_images(ae, data.images, device=device, progress=is_main_process())},
                  {"latents": shape})["latents"]


def latent_data(data, ae_run, device="cpu"):
    """`data` with its images replaced by the autoencoder's scaled latents and a `latent` record (module doc)."""
    from ..latent import measure_scale

    _check_images(data, ae_run)
    ckpt = ae_run.checkpoint[0]
    digest = ae_run.weights_digest(ckpt)
    ae = ae_run.network(device=device)
    latents = _encoded(data, ae, digest, device)
    scale = measure_scale(latents)
    z = latents * scale
    out = copy.copy(data)
    out.images = z
    out.name = f"{data.name} (latents)"
    out.latent = {"autoencoder": str(ae_run.folder), "autoencoder_step": int(ae_run.state.get("step", 0)),
                  "autoencoder_sha256": digest, "scale": scale, "image_shape": list(data.shape), "image_range": [-1.0, 1.0],
                  "channel_mean": [round(float(v), 6) for v in z.double().mean((0, 2, 3))],
                  "channel_std": [round(float(v), 6) for v in z.double().std((0, 2, 3))]}
    return out


def latent_of(run, device="cpu"):
    """The `latent.Latent` of a trained latent run: its autoencoder at the checkpoint it was trained with, checked to
    be the same autoencoder (module doc), and the scale."""
    from ..latent import Latent

    rec = run.facts["latent"]
    ae_run = run.requires["autoencoder"]
    step = int(rec["autoencoder_step"])
    ckpt = ae_run.checkpoint_at(step, "a latent run was trained on it", "retrain the latent run with --fresh")
    where = run.config.requires["autoencoder"]
    if rec.get("autoencoder_sha256") and ae_run.weights_digest(ckpt) != rec["autoencoder_sha256"]:
        raise ValueError(f"the autoencoder {where!r} is not the one {run.folder} was trained on (its weights at step {step} "
                         "differ): restore that autoencoder, or retrain the latent run on this one with --fresh")
    ae = ae_run.network(device=device, step=step)
    shape = tuple(ae.latent_shape(tuple(rec["image_shape"])))
    if shape != tuple(run.facts["shape"]):
        raise ValueError(f"the autoencoder {where!r} makes latents of shape {shape}; {run.folder} was trained on latents of "
                         f"shape {tuple(run.facts['shape'])}: it is another autoencoder now. Restore the one it was "
                         "trained on, or retrain the latent run with --fresh")
    return Latent(ae, float(rec["scale"]))
