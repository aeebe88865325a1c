r"""Captions for Fashion-MNIST made from what is known about each image: its class and two attributes measured
from its pixels, in words drawn from a vocabulary with a *seen* part (used in training) and a *held-out* part
(never trained on: new synonyms and sentence templates, to measure whether a text-conditioned model follows
the meaning of a prompt or only its wording).

Attributes (images in [-1, 1], the garment the pixels above `LIT` = 0.1 on the [0, 1] scale):

- shade: the mean intensity of the garment's pixels, cut at the class's training tertiles into dark (0),
  medium (1), light (2);
- size: the share of lit pixels, cut at the class's training tertiles into slim (0), regular (1), wide (2).

Per-class cut points make each attribute a third of every class, so "a wide sandal" exists and chance is 1/3.

`captions(split)` enumerates every distinct caption of a split (class x synonym x shade word x size word x
template), so a caption's sentence embedding is computed once; `caption_for(label, shade, size, split, rng)`
draws one at random.

A third split, *augmented*, is the seen vocabulary widened by a thesaurus (`data.thesaurus`: WordNet's names of
each class, more shade and size words, more templates) and by nothing of the held-out one. Its full product is
~10^6 sentences, so `captions("augmented")` is a fixed draw of `PER_GROUP` distinct ones for every (class, shade,
size).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from .images import ImageData

__all__ = ["CaptionedImages", "captioned", "assign", "encode_cached", "SYNONYMS", "SHADES", "SIZES", "TEMPLATES", "LIT", "Thresholds", "thresholds", "attributes", "captions",
           "caption_for", "Caption"]

LIT = 0.1
SPLITS = ("seen", "held_out", "augmented")
PER_GROUP = 120  # augmented captions drawn per (class, shade, size)

SYNONYMS = {  # Fashion-MNIST's classes in words: (seen in training, held out)
    0: (("t-shirt", "top", "tee"), ("short-sleeved top", "crew-neck tee")),
    1: (("trousers", "pants", "slacks"), ("jeans", "pair of chinos")),
    2: (("pullover", "sweater", "jumper"), ("knitted sweatshirt", "woolly cardigan")),
    3: (("dress", "gown", "frock"), ("sundress", "evening dress")),
    4: (("coat", "jacket", "overcoat"), ("parka", "winter anorak")),
    5: (("sandal", "flip-flop", "strappy shoe"), ("summer slipper", "beach footwear")),
    6: (("shirt", "blouse", "button-up shirt"), ("dress shirt", "collared top")),
    7: (("sneaker", "trainer", "running shoe"), ("footwear for jogging", "athletic shoe")),
    8: (("bag", "handbag", "purse"), ("tote", "shoulder satchel")),
    9: (("ankle boot", "boot", "bootie"), ("short leather boot", "chelsea boot")),
}
SHADES = {0: (("dark", "black"), ("charcoal", "deep-coloured")),
          1: (("grey", "medium-toned"), ("mid-grey", "muted")),
          2: (("light", "white"), ("pale", "bright"))}
SIZES = {0: (("slim", "narrow"), ("thin", "small")),
         1: (("regular", "medium-sized"), ("average-sized", "standard")),
         2: (("wide", "large"), ("bulky", "broad"))}
TEMPLATES = (("a {shade} {item}", "a photo of a {size} {shade} {item}", "{item}, {shade}, {size}",
              "a {size} {item} in {shade}", "an image of a {shade} {size} {item}"),
             ("{item} that is {shade}", "{item}, {shade}", "picture showing a {size}, {shade} {item}",
              "{item} in a {size} cut, {shade}"))


def _article(text: str) -> str:
    """'a' before a consonant sound, 'an' before a vowel (the templates say 'a')."""
    words = text.split(" ")
    for i, w in enumerate(words[:-1]):
        if w == "a" and words[i + 1][:1] in "aeiou":
            words[i] = "an"
    return " ".join(words)


@dataclass(frozen=True)
class Caption:
    text: str
    label: int
    shade: int | None  # None: the sentence does not say (a user's prompt, data.user_prompts)
    size: int | None  # None: the sentence does not say
    split: str


def _vocabulary(split: str) -> tuple[dict, dict, dict, tuple]:
    """(class words, shade words, size words, templates) of a split; the dicts map a class / shade / size to words."""
    if split not in SPLITS:
        raise ValueError(f"a caption split is one of {', '.join(SPLITS)}; got {split!r}")
    if split == "augmented":
        from .thesaurus import CLASS_WORDS, EXTRA_TEMPLATES, SHADE_WORDS, SIZE_WORDS

        # the seen names repeated to about half of the draws: the thesaurus widens the wording, the common
        # names (the ones users type most) stay common
        return ({c: v[0] * max(1, len(CLASS_WORDS[c]) // len(v[0])) + CLASS_WORDS[c] for c, v in SYNONYMS.items()},
                {k: v[0] + SHADE_WORDS[k] for k, v in SHADES.items()},
                {k: v[0] + SIZE_WORDS[k] for k, v in SIZES.items()}, TEMPLATES[0] + EXTRA_TEMPLATES)
    s = SPLITS.index(split)
    return ({c: v[s] for c, v in SYNONYMS.items()}, {k: v[s] for k, v in SHADES.items()}, {k: v[s] for k, v in SIZES.items()},
            TEMPLATES[s])


def captions(split: str = "seen") -> list[Caption]:
    """Every distinct caption of a split, in a fixed order (a sentence that does not mention the size is one
    caption, with size None); for "augmented", `PER_GROUP` draws per (class, shade, size) with a fixed seed."""
    items, shades, sizes, templates = _vocabulary(split)
    out, known = [], set()

    def add(template, item, sw, zw, label, shade, size):
        text = _article(template.format(item=item, shade=sw, size=zw))
        if text not in known:
            known.add(text)
            out.append(Caption(text, label, shade, size if "{size}" in template else None, split))

    for label in range(10):
        for shade in range(3):
            for size in range(3):
                if split == "augmented":
                    rng = random.Random(f"augmented/{label}/{shade}/{size}")
                    for _ in range(PER_GROUP):
                        add(rng.choice(templates), rng.choice(items[label]), rng.choice(shades[shade]), rng.choice(sizes[size]),
                            label, shade, size)
                    continue
                for item in items[label]:
                    for sw in shades[shade]:
                        for zw in sizes[size]:
                            for template in templates:
                                add(template, item, sw, zw, label, shade, size)
    return out


def caption_for(label: int, shade: int, size: int, split: str = "seen", rng: random.Random | None = None) -> str:
    """One caption of an image of class `label` with those attributes, words and template drawn by `rng`."""
    items, shades, sizes, templates = _vocabulary(split)
    rng = rng or random.Random(0)
    text = rng.choice(templates).format(item=rng.choice(items[int(label)]), shade=rng.choice(shades[int(shade)]),
                                        size=rng.choice(sizes[int(size)]))
    return _article(text)


@dataclass(frozen=True)
class Thresholds:
    """Per-class cut points (10, 2) of the garment's mean intensity (shade) and its share of lit pixels (size)."""
    shade: Tensor
    size: Tensor

    def to_dict(self) -> dict:
        return {"shade": self.shade.tolist(), "size": self.size.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Thresholds":
        return cls(torch.tensor(d["shade"], dtype=torch.float64), torch.tensor(d["size"], dtype=torch.float64))


def _measure(images: Tensor) -> tuple[Tensor, Tensor]:
    """(mean intensity of the lit pixels, share of lit pixels) per image, on the [0, 1] scale."""
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W) in [-1, 1], got shape {tuple(images.shape)}")
    u = ((images.double().clamp(-1, 1) + 1) / 2).mean(1).flatten(1)
    lit = u > LIT
    share = lit.double().mean(1)
    mean = (u * lit).sum(1) / lit.sum(1).clamp_min(1)
    return mean, share


def thresholds(images: Tensor, labels: Tensor) -> Thresholds:
    """The tertiles of each attribute within each class of a training set."""
    mean, share = _measure(images)
    q = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
    shade, size = torch.zeros(10, 2, dtype=torch.float64), torch.zeros(10, 2, dtype=torch.float64)
    for c in range(10):
        pick = labels == c
        if int(pick.sum()) < 3:
            raise ValueError(f"class {c} has {int(pick.sum())} images: the attribute tertiles need at least 3 of each class")
        shade[c], size[c] = torch.quantile(mean[pick], q), torch.quantile(share[pick], q)
    return Thresholds(shade, size)


def attributes(images: Tensor, labels: Tensor, cuts: Thresholds) -> tuple[Tensor, Tensor]:
    """(shade, size) in {0, 1, 2} per image, measured from its pixels against its class's cut points (for samples,
    the class they were asked for)."""
    mean, share = _measure(images)
    labels = labels.long().cpu()
    shade = (mean[:, None] > cuts.shade[labels]).sum(1)
    size = (share[:, None] > cuts.size[labels]).sum(1)
    return shade, size


# -- captioned images: the training data of a text-to-image model ------------------------------------------

def assign(labels: Tensor, shade: Tensor, size: Tensor, table: list[Caption], seed: int = 0) -> Tensor:
    """For each image one caption of `table` that is true of it (its class and shade, and its size or no size
    at all), drawn uniformly with a fixed seed: the caption index per image (N,)."""
    groups: dict[tuple, list[int]] = {}
    for j, c in enumerate(table):
        for z in ((c.size,) if c.size is not None else (0, 1, 2)):
            groups.setdefault((c.label, c.shade, z), []).append(j)
    u = torch.rand(labels.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = torch.full((labels.shape[0],), -1, dtype=torch.long)
    key = labels.long() * 9 + shade.long() * 3 + size.long()
    for (c, s, z), members in groups.items():
        pick = key == c * 9 + s * 3 + z
        if pick.any():
            m = torch.tensor(members)
            out[pick] = m[(u[pick] * len(members)).long().clamp_max(len(members) - 1)]
    if (out < 0).any():
        raise ValueError("some images have no caption that fits them (labels must be Fashion-MNIST's 0..9)")
    return out


def _encoder_name(encoder) -> str:
    """The model name of `encoder`: a loaded SentenceEncoder, a key or name of one, or None (the default, MiniLM)."""
    from ..text_encoder import NAME, encoder_spec

    if encoder is None or isinstance(encoder, str):
        return encoder_spec(encoder or NAME).name
    return getattr(encoder, "name", NAME)


def _encoded_whole(out: dict, n: int, length: int | None) -> bool:
    """Whether a cached encoding is one of `n` texts: context (n, L, d), mask (n, L), pooled (n, d'), finite."""
    if set(out) != {"context", "mask", "pooled"}:
        return False
    c, m, p = out["context"], out["mask"], out["pooled"]
    return (c.ndim == 3 and c.shape[0] == n and tuple(m.shape) == tuple(c.shape[:2]) and p.ndim == 2 and p.shape[0] == n
            and (length is None or c.shape[1] == length) and bool(torch.isfinite(c).all() and torch.isfinite(p).all()))


def encode_cached(encoder, texts: list[str], length: int | None = None) -> dict[str, Tensor]:
    """encoder(texts, length) through a cache on disk (text_encoder.cache_root()/captions, safetensors keyed
    by the texts and the encoder's name), so a training set's captions are encoded once. `encoder`: a loaded
    `text_encoder.SentenceEncoder`, or the name of one (None: the default, MiniLM), loaded only when the cache
    misses."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from ..text_encoder import SentenceEncoder, cache_root

    named = encoder is None or isinstance(encoder, str)
    name = _encoder_name(encoder)
    key = hashlib.sha256("\n".join([name, str(length), *texts]).encode()).hexdigest()[:24]
    file = cache_root() / "captions" / f"{key}.safetensors"
    if file.exists():
        try:
            out = load_file(str(file))
            out["mask"] = out["mask"].bool()
            if _encoded_whole(out, len(texts), length):
                return out
        except Exception:  # a damaged cache file is encoded again
            pass
        file.unlink(missing_ok=True)
    if named:
        encoder = SentenceEncoder(name=name)
    out = encoder(texts, length=length)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    save_file({"context": out["context"].contiguous(), "mask": out["mask"].to(torch.uint8), "pooled": out["pooled"]}, str(tmp))
    tmp.replace(file)
    return out


@dataclass
class CaptionedImages(ImageData):
    """Images with a caption each: batch(index) -> {"x", "label", "context", "context_mask", "pooled"}, the
    caption's token states, their mask and its sentence embedding (`text_encoder`); `null` holds the empty
    caption's (one row each), the null condition of classifier-free guidance."""

    texts: tuple = ()
    caption_index: Tensor | None = None
    encoded: dict | None = None
    null: dict | None = None
    cuts: Thresholds | None = None
    split: str = "seen"
    encoder: str = "all-MiniLM-L6-v2"  # the sentence encoder's name (text_encoder.ENCODERS)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        out = super().batch(index)
        j = self.caption_index[index]
        out.update(context=self.encoded["context"][j], context_mask=self.encoded["mask"][j], pooled=self.encoded["pooled"][j])
        return out

    def caption(self, i: int) -> str:
        return self.texts[int(self.caption_index[i])]

    @property
    def length(self) -> int:
        return int(self.encoded["mask"].shape[1])

    @property
    def context_dim(self) -> int:
        return int(self.encoded["context"].shape[2])


def captioned(images: ImageData, encoder=None, split: str = "seen", seed: int = 0, cuts: Thresholds | None = None) -> CaptionedImages:
    """Fashion-MNIST images with one true caption each (module doc); every caption of the split is encoded once
    (`encode_cached`, the same cache for every set of images) by `encoder` (a loaded `SentenceEncoder` or the name
    of one; None: MiniLM). The attribute cut points are measured on these images unless `cuts` are given (a test
    split uses the training split's)."""
    name = _encoder_name(encoder)
    if images.labels is None or tuple(images.images.shape[1:]) != (1, 28, 28) or int(images.labels.max()) > 9:
        raise ValueError("captions are made for Fashion-MNIST (28x28 grey images, classes 0..9): data.name = 'fashion_mnist'")
    cuts = cuts or thresholds(images.images, images.labels)
    shade, size = attributes(images.images, images.labels, cuts)
    table = captions(split)
    texts = tuple(c.text for c in table)
    enc = encode_cached(encoder, [*texts, ""])
    encoded = {k: v[:-1] for k, v in enc.items()}
    null = {"context": enc["context"][-1:], "context_mask": enc["mask"][-1:], "pooled": enc["pooled"][-1:]}
    return CaptionedImages(images.images, images.labels, f"{images.name}+captions:{split}", images.class_names,
                           texts=texts, caption_index=assign(images.labels, shade, size, table, seed), encoded=encoded,
                           null=null, cuts=cuts, split=split, encoder=name)
