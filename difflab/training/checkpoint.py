"""Checkpoints without pickle: weights and optimiser tensors in safetensors, everything else in JSON.

A checkpoint is a folder `checkpoints/step-00001000/` holding model.safetensors, ema.safetensors,
optimizer.safetensors (+ optimizer.json for its hyper-parameters), rng.safetensors (generator
states) and state.json (step, data position, ...). It is written into a temporary folder, flushed
to disk, then renamed into place, and `checkpoints/latest` is replaced atomically afterwards: a
kill at any moment leaves the previous complete checkpoint readable. Only the last K are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

_PICKLE_HINT = (
    "refusing to load {path}: it is a pickle file (torch.save), and unpickling runs arbitrary code. "
    "difflab reads weights only from .safetensors files and state from JSON."
)


def load_tensors(path: str | Path, device="cpu") -> dict[str, Tensor]:
    """Load a safetensors file; anything that looks like a pickle (or a zip of pickles) is refused."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == b"\x80" or head[:2] == b"PK" or path.suffix in (".pt", ".pth", ".pkl", ".bin", ".ckpt"):
        raise ValueError(_PICKLE_HINT.format(path=path))
    return load_file(str(path), device=str(device))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _save_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    sd = optimizer.state_dict()
    tensors = {f"{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    extra = {f"{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if not torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"], "non_tensor_state": extra}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta.get("non_tensor_state", {}).items()):
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(run_dir: str | Path, step: int, *, model: torch.nn.Module, ema: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict, rng: dict[str, Tensor], keep_last: int = 3) -> Path:
    ck_root = Path(run_dir) / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    final = ck_root / f"step-{step:08d}"
    tmp = ck_root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _save_tensors(tmp / "model.safetensors", model.state_dict())
    _save_tensors(tmp / "ema.safetensors", ema.state_dict())
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    _save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    _write_json(tmp / "optimizer.json", opt_meta)
    _save_tensors(tmp / "rng.safetensors", rng)
    _write_json(tmp / "state.json", {**state, "step": step})  # written last: its presence marks completeness
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(ck_root)
    latest_tmp = ck_root / f".latest-{os.getpid()}"
    latest_tmp.write_text(final.name)
    os.replace(latest_tmp, ck_root / "latest")
    _fsync_dir(ck_root)
    for old in sorted(p for p in ck_root.glob("step-*") if p.is_dir())[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None (leftover temporary folders are ignored)."""
    ck_root = Path(run_dir) / "checkpoints"
    if not ck_root.is_dir():
        return None
    pointer = ck_root / "latest"
    if pointer.is_file():
        cand = ck_root / pointer.read_text().strip()
        if (cand / "state.json").is_file():
            return cand
    done = sorted(p for p in ck_root.glob("step-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def read_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / "state.json").read_text())
