"""Loading a trained run: `dl.load(run_dir)` gives back (denoiser, path, config), sampling with EMA weights."""

from __future__ import annotations

import json
from pathlib import Path

from .config import Config, build_model, build_path, build_source, load_config
from .denoisers import as_denoiser, clipped
from .training.checkpoint import latest_checkpoint, load_tensors, read_state


def run_config(run_dir: str | Path) -> Config:
    cfg_file = Path(run_dir) / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a difflab run (no config.json); train one with `difflab train CONFIG`")
    return load_config(json.loads(cfg_file.read_text()))


def data_info(run_dir: str | Path) -> dict:
    """What the run was trained on: {'name', 'shape', 'num_classes', 'class_names', 'size'}."""
    return json.loads((Path(run_dir) / "data.json").read_text())


def load_network(run_dir: str | Path, *, ema: bool = True, device="cpu"):
    """The run's network with its EMA (or raw) weights from the latest checkpoint, in eval mode."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint yet")
    info = data_info(run_dir)
    net = build_model(cfg.model, tuple(info["shape"]), info["num_classes"]).to(device)
    net.load_state_dict(load_tensors(ckpt / ("ema.safetensors" if ema else "model.safetensors"), device))
    return net.eval().requires_grad_(False), cfg, read_state(ckpt)


def load(run_dir: str | Path, *, ema: bool = True, device="cpu", clip: bool = True):
    """(denoiser, path, config) of a trained run; the denoiser takes `cond=labels` when class-conditional
    and, for image data, is clipped to the data's range [-1, 1] (`denoisers.clipped`) unless `clip=False`
    (likelihoods need the smooth, unclipped denoiser: clipping zeroes its Jacobian)."""
    net, cfg, _ = load_network(run_dir, ema=ema, device=device)
    path = build_path(cfg.diffusion)
    den = as_denoiser(net, path, cfg.diffusion.prediction)
    value_range = data_info(run_dir).get("range")
    if value_range and clip:  # images live in [-1, 1], and so does E[x0 | x_t]
        den = clipped(den, *value_range)
    return den, path, cfg




def source_sample(cfg: Config, n: int, generator=None, device="cpu"):
    """n starting points at t = 1 drawn from a flow's data source (`data.source`), or None when the run
    starts from its path's Gaussian prior (`dl.sample` draws that itself)."""
    source = build_source(cfg.data)
    return None if source is None else source.sample(n, generator).float().to(device)
