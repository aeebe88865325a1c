"""Categorical data: integer tokens for discrete diffusion.

- `text`: character-level English normalised as text8 is (lowercase a-z and space: 27 symbols, every
  other character a space, runs of spaces collapsed), from Debian's `fortunes` package
  (/usr/share/games/fortunes, about 2.6 MB) or Python's own `pydoc_data.topics` (about 465k characters,
  always present), or any text file. The first 90% is for training, the last 10% held out; examples are
  windows of `length` characters, every `stride` characters (overlapping windows in training, disjoint
  ones held out).
- `quantize(x, levels)`: values in [-1, 1] (images, toy points) to `levels` ordinal levels; `dequantize`
  back to the level centres, for pictures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .images import TensorData

__all__ = ["ALPHABET", "TokenData", "normalise_text", "text_corpus", "text", "encode", "decode", "quantize", "dequantize",
           "FORTUNES_DIR", "TEXT_SOURCES"]

ALPHABET = "abcdefghijklmnopqrstuvwxyz "
FORTUNES_DIR = Path("/usr/share/games/fortunes")
TEXT_SOURCES = ("pydoc", "fortunes")


@dataclass
class TokenData(TensorData):
    """Integer tokens (N, ...) in 0 .. num_symbols - 1, with optional labels; `alphabet` for text."""

    num_symbols: int = 0
    alphabet: str = ""

    def __post_init__(self):
        super().__post_init__()
        if self.images.dtype != torch.long:
            raise ValueError(f"tokens must be integers (torch.long), got {self.images.dtype}")
        if self.num_symbols < 2:
            raise ValueError(f"categorical data need at least 2 symbols, got {self.num_symbols}")
        if self.images.numel() and (int(self.images.min()) < 0 or int(self.images.max()) >= self.num_symbols):
            raise ValueError(f"tokens must lie in 0 .. {self.num_symbols - 1}")


def normalise_text(raw: str) -> str:
    """text8's normalisation: lowercase; every character but a-z becomes a space; runs of spaces collapse."""
    return re.sub(r" +", " ", re.sub(r"[^a-z]", " ", raw.lower())).strip()


def text_corpus(source: str = "pydoc") -> str:
    """The normalised text of `source`: "pydoc", "fortunes" or the path of a text file."""
    if source == "pydoc":
        from pydoc_data.topics import topics

        return normalise_text("\n".join(topics[k] for k in sorted(topics)))
    if source == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise FileNotFoundError(f"no fortunes in {FORTUNES_DIR}; install them with `sudo apt-get install fortunes`, "
                                    "or use data.text = \"pydoc\" (always present)")
        files = sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.suffix and not p.is_symlink()
                       and p.name != "ascii-art")  # pictures, not English
        return normalise_text("\n".join(p.read_text(encoding="utf-8", errors="replace").replace("\n%\n", "\n") for p in files))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"data.text must be pydoc, fortunes or a text file; {source!r} is none of them")
    return normalise_text(_read_text(path))


def _read_text(path: Path) -> str:
    """A file's text, refused in one line when it is not UTF-8 text (binary data would train on stray letters)."""
    data = path.read_bytes()
    fix = "give a UTF-8 text file, or data.text = \"pydoc\" / \"fortunes\""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"data.text = {str(path)!r} is not a text file (byte {e.start} is not UTF-8); {fix}") from None
    control = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f\v")
    if control > 0.001 * len(text):
        raise ValueError(f"data.text = {str(path)!r} is not a text file ({control} control characters); {fix}")
    return text


def encode(s: str) -> Tensor:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return torch.tensor([index[c] for c in normalise_text(s)] if s.strip() else [], dtype=torch.long)


def decode(tokens) -> str:
    return "".join(ALPHABET[int(i)] if 0 <= int(i) < len(ALPHABET) else "_" for i in torch.as_tensor(tokens).reshape(-1))


def text(source: str = "pydoc", length: int = 128, split: str = "train", stride: int | None = None,
         held_out: float = 0.1) -> TokenData:
    """Windows of `length` characters of the normalised corpus (module doc): the first 1 - held_out of it
    for "train" (every `stride` characters, default length // 4), the rest for "test" (disjoint windows)."""
    if split not in ("train", "test"):
        raise ValueError(f"text has the splits train and test, got {split!r}")
    if length < 2:
        raise ValueError(f"data.length must be at least 2 characters, got {length}")
    corpus = encode(text_corpus(source))
    cut = int(len(corpus) * (1 - held_out))
    part = corpus[:cut] if split == "train" else corpus[cut:]
    step = (stride or max(1, length // 4)) if split == "train" else length
    if len(part) < length:
        raise ValueError(f"the {split} part of {source!r} has {len(part)} characters, fewer than data.length = {length}")
    windows = part.unfold(0, length, step).contiguous()
    return TokenData(windows, name=f"text:{Path(source).name}:{length}", num_symbols=len(ALPHABET), alphabet=ALPHABET)


def quantize(x: Tensor, levels: int, low: float = -1.0, high: float = 1.0) -> Tensor:
    """Values in [low, high] to `levels` ordinal tokens 0 .. levels - 1 (nearest level centre; outside, clamped)."""
    if levels < 2:
        raise ValueError(f"quantizing needs at least 2 levels, got {levels}")
    u = (x.double() - low) / (high - low)
    return torch.round(u.clamp(0, 1) * (levels - 1)).long()


def dequantize(tokens: Tensor, levels: int, low: float = -1.0, high: float = 1.0) -> Tensor:
    """The value of each level, in [low, high] (float32)."""
    return (tokens.float() / (levels - 1)) * (high - low) + low
