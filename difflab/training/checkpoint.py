"""Checkpoints without pickle: weights and optimiser tensors in safetensors, everything else in JSON,
each file's SHA-256 recorded so damage is found when a checkpoint is read, not by a deserializer.

A checkpoint is a folder `checkpoints/step-00001000/` holding model.safetensors, ema.safetensors,
optimizer.safetensors (+ optimizer.json for its hyper-parameters), rng.safetensors (generator
states) and state.json (step, data position, ..., and `files`: the SHA-256 of every other file,
with `sha256`: the digest of state.json's own content). It is written into a temporary folder,
flushed to disk, then renamed into place, and `checkpoints/latest` is replaced atomically
afterwards: a kill at any moment leaves the previous complete checkpoint readable. Only the last K
are kept.

`verify` reads a checkpoint back and raises `CheckpointDamaged` (a ValueError with a one-line
reason) for a missing, truncated or altered file; `latest_valid_checkpoint` returns the newest
checkpoint that verifies and the damaged ones it passed over. Checkpoints written before checksums
existed carry none; their files are still checked by reading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor

_PICKLE_HINT = (
    "refusing to load {path}: it is a pickle file (torch.save), and unpickling runs arbitrary code. "
    "difflab reads weights only from .safetensors files and state from JSON."
)
TENSOR_FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors")
JSON_FILES = ("optimizer.json",)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt")


class CheckpointDamaged(ValueError):
    """A checkpoint file is missing, truncated, altered or unreadable (the message says which and how)."""


def load_tensors(path: str | Path, device="cpu") -> dict[str, Tensor]:
    """Load a safetensors file; anything that looks like a pickle (or a zip of pickles) is refused, and a
    file that is not valid safetensors is a `CheckpointDamaged` naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointDamaged(f"cannot read {path}: {e.strerror or e}") from None
    if path.suffix in PICKLE_SUFFIXES or (not is_safetensors(data) and looks_like_pickle(data)):
        raise ValueError(_PICKLE_HINT.format(path=path))
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError, OverflowError, UnicodeDecodeError) as e:
        raise CheckpointDamaged(f"{path} is not a readable safetensors file ({_one_line(e)})") from None
    return {k: v.to(device) for k, v in tensors.items()} if str(device) != "cpu" else tensors


def is_safetensors(data: bytes) -> bool:
    """Whether `data` opens as safetensors does: an 8-byte little-endian header length N, then N bytes of a JSON
    object. (Its first byte is N mod 256, anything at all: 0x80 is as valid as any.)"""
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def looks_like_pickle(data: bytes) -> bool:
    """Whether `data` carries a pickle's signature: the PROTO opcode 0x80 and a protocol 2..5 (torch.save's
    legacy format) followed by opcodes, or a zip archive (torch.save's default: pickles inside a zip). A
    safetensors header length is below 100 MB (its format's limit), so its bytes 4..7 are zero: a truncated
    safetensors file is damaged, not a pickle."""
    proto = len(data) >= 8 and data[0] == 0x80 and 2 <= data[1] <= 5 and data[4:8] != bytes(4)
    return proto or data[:4] == b"PK\x03\x04"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_bytes(path: Path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return _sha256(data)


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, indent=1).encode()


def _tensor_bytes(tensors: dict[str, Tensor]) -> bytes:
    return save_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def _state_digest(state: dict) -> str:
    """The digest of state.json's content without its own `sha256` field (canonical JSON)."""
    return _sha256(json.dumps({k: v for k, v in state.items() if k != "sha256"}, sort_keys=True).encode())


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
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError) as e:
        raise CheckpointDamaged(f"the optimiser state does not fit this model ({_one_line(e)})") from None


def load_weights(module: torch.nn.Module, tensors: dict[str, Tensor], what: str) -> None:
    """`module.load_state_dict(tensors)`, with a one-line account of any mismatch instead of PyTorch's."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = [f"{k}: {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in own.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
        raise CheckpointDamaged(f"{what} holds weights for another model: " + ", ".join(p for p in parts if p)
                                + "; the run's config.json must be the one it was trained with")
    module.load_state_dict(tensors)


def save_checkpoint(run_dir: str | Path, step: int, *, model: torch.nn.Module, ema: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict, rng: dict[str, Tensor], keep_last: int = 3) -> Path:
    ck_root = Path(run_dir) / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    final = ck_root / f"step-{step:08d}"
    tmp = ck_root / f".tmp-step-{step:08d}-{os.getpid()}"
    for leftover in ck_root.glob(".tmp-step-*"):  # half-written checkpoints of a process that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    files = {
        "model.safetensors": _write_bytes(tmp / "model.safetensors", _tensor_bytes(model.state_dict())),
        "ema.safetensors": _write_bytes(tmp / "ema.safetensors", _tensor_bytes(ema.state_dict())),
        "optimizer.safetensors": _write_bytes(tmp / "optimizer.safetensors", _tensor_bytes(opt_tensors)),
        "optimizer.json": _write_bytes(tmp / "optimizer.json", _json_bytes(opt_meta)),
        "rng.safetensors": _write_bytes(tmp / "rng.safetensors", _tensor_bytes(rng)),
    }
    full = {**state, "step": step, "files": files}
    full["sha256"] = _state_digest(full)
    _write_bytes(tmp / "state.json", _json_bytes(full))  # written last: its presence marks completeness
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


def read_state(ckpt: Path) -> dict:
    """state.json of a checkpoint, checked against its own digest (`CheckpointDamaged` if it does not read)."""
    path = Path(ckpt) / "state.json"
    try:
        state = json.loads(path.read_bytes())
    except OSError as e:
        raise CheckpointDamaged(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointDamaged(f"{path} is not valid JSON ({_one_line(e)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointDamaged(f"{path} does not hold a checkpoint's state (no step)")
    if "sha256" in state and state["sha256"] != _state_digest(state):
        raise CheckpointDamaged(f"{path} was altered after it was written (its digest does not match)")
    return state


def verify(ckpt: str | Path) -> dict:
    """Check every file of a checkpoint against the digests in its state.json; returns the state.
    Raises `CheckpointDamaged` naming the first bad file."""
    ckpt = Path(ckpt)
    state = read_state(ckpt)
    digests = state.get("files")
    for name in TENSOR_FILES + JSON_FILES:
        path = ckpt / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CheckpointDamaged(f"{path} is missing or unreadable ({e.strerror or e})") from None
        if isinstance(digests, dict):
            if _sha256(data) != digests.get(name):
                raise CheckpointDamaged(f"{path} is damaged: its SHA-256 does not match the one recorded when it was written")
        elif name.endswith(".json"):  # a checkpoint from before checksums: at least it must parse
            try:
                json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise CheckpointDamaged(f"{path} is not valid JSON ({_one_line(e)})") from None
        else:
            load_tensors(path)
    return state


def _complete(ck_root: Path) -> list[Path]:
    return sorted(p for p in ck_root.glob("step-*") if (p / "state.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None (leftover temporary folders are ignored). It is
    not verified: `latest_valid_checkpoint` is."""
    ck_root = Path(run_dir) / "checkpoints"
    if not ck_root.is_dir():
        return None
    pointer = ck_root / "latest"
    try:
        cand = ck_root / pointer.read_text().strip()
        if cand.parent == ck_root and (cand / "state.json").is_file():
            return cand
    except (OSError, ValueError, UnicodeDecodeError):  # no pointer, or a damaged one: look at the folders
        pass
    done = _complete(ck_root)
    return done[-1] if done else None


def latest_valid_checkpoint(run_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest checkpoint whose files all verify, or None; [(damaged checkpoint, reason)] newer than it)."""
    ck_root = Path(run_dir) / "checkpoints"
    if not ck_root.is_dir():
        return None, []
    damaged = []
    for ckpt in reversed(_complete(ck_root)):
        try:
            verify(ckpt)
            return ckpt, damaged
        except CheckpointDamaged as e:
            damaged.append((ckpt, str(e)))
    return None, damaged
