"""Image data sets, scaled to [-1, 1] with labels where there are any.

- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images; shipped with scikit-learn, no download).
- `fashion_mnist`: 28x28 Fashion-MNIST from Debian's `dataset-fashion-mnist` package (gzip IDX files).
- `image_folder`: PNG/JPEG files, resized (shorter side) and centre-cropped to a square; class labels
  from sub-folder names when the files sit in sub-folders.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._checks import choose

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass
class TensorData(torch.utils.data.Dataset):
    """In-memory examples `images` (N, ...) and optional integer labels (N,)."""

    images: Tensor
    labels: Tensor | None = None
    name: str = ""
    class_names: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.images.ndim < 2:
            raise ValueError(f"data must have shape (N, ...); got {tuple(self.images.shape)}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per example")

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return (self.images[i], self.labels[i]) if self.labels is not None else (self.images[i], torch.tensor(-1))

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """The examples at `index` as a training batch: {"x": examples, "label": labels (if any)}."""
        out = {"x": self.images[index]}
        if self.labels is not None:
            out["label"] = self.labels[index]
        return out

    @property
    def shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        return int(self.labels.max()) + 1 if self.labels is not None else None


class ImageData(TensorData):
    """Images (N, C, H, W) in [-1, 1] and optional integer labels (N,)."""

    def __post_init__(self):
        super().__post_init__()
        if self.images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W); got {tuple(self.images.shape)}")


def downsample(x: Tensor, factor: int) -> Tensor:
    """Block averages: (..., C, H, W) -> (..., C, H / f, W / f), each pixel the mean of an f x f block (the
    low-resolution image of a cascade; linear, so a Gaussian stays Gaussian)."""
    f = int(factor)
    H, W = x.shape[-2:]
    if f < 1 or H % f or W % f:
        raise ValueError(f"cannot average {H}x{W} images over {f}x{f} blocks: the factor must divide both sides")
    return x.unflatten(-2, (H // f, f)).unflatten(-1, (W // f, f)).mean((-3, -1))


def upsample(x: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upsampling by f (each pixel repeated over an f x f block): downsample(upsample(y)) = y."""
    f = int(factor)
    return x.repeat_interleave(f, -2).repeat_interleave(f, -1)


def to_unit(x: Tensor) -> Tensor:
    """[0, 255] or [0, 1]-scaled pixels are mapped to [-1, 1] by x -> 2x - 1 after scaling to [0, 1]."""
    return x * 2 - 1


@dataclass
class LowResImages(ImageData):
    """Images with their low-resolution versions for a super-resolution model: batch(index) -> {"x", "label",
    "low_res": `downsample(x, factor)`} (computed per batch: it is cheap)."""

    factor: int = 2

    def __post_init__(self):
        super().__post_init__()
        downsample(self.images[:1], self.factor)  # the factor must divide the sides

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        out = super().batch(index)
        out["low_res"] = downsample(out["x"], self.factor)
        return out

    @property
    def low_res_shape(self) -> tuple:
        c, h, w = self.shape
        return c, h // self.factor, w // self.factor


class PairedData(TensorData):
    """Examples paired with the noise each came from (reflow: the ends of a teacher's probability-flow ODE and their
    starts): `batch` adds "noise"; `value_range` is the examples' range when they are images ([-1, 1])."""

    def __init__(self, x: Tensor, noise: Tensor, name: str = "pairs", labels: Tensor | None = None, class_names=(),
                 value_range=None):
        if noise.shape != x.shape:
            raise ValueError(f"each example needs its noise: got {tuple(x.shape)} examples and {tuple(noise.shape)} noise")
        super().__init__(x, labels, name, tuple(class_names))
        self.noise, self.value_range = noise, value_range

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        return {**super().batch(index), "noise": self.noise[index]}


def to_uint8(x: Tensor) -> Tensor:
    """The inverse transform for saving: [-1, 1] -> {0, ..., 255} (values outside are clipped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _split(n: int, split: str, test_fraction: float = 0.2, seed: int = 0) -> Tensor:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return {"train": perm[n_test:], "test": perm[:n_test], "all": torch.arange(n)}[choose(split, ("train", "test", "all"), "split")]


def digits(split: str = "train") -> ImageData:
    """scikit-learn's 8x8 digits (values 0..16) in [-1, 1]; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    idx = _split(len(y), split)
    return ImageData(to_unit(x[idx]), y[idx], f"digits/{split}", tuple(str(i) for i in range(10)))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_DIR) -> ImageData:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey) in [-1, 1], with its labels."""
    prefix = {"train": "train", "test": "t10k"}[choose(split, ("train", "test"), "split")]
    root = Path(root)
    files = [root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install Debian's package: "
            "sudo apt-get install dataset-fashion-mnist (it puts them in /usr/share/datasets/fashion-mnist/), "
            "or pass root= a folder holding the four gzip IDX files."
        )
    x = torch.from_numpy(_read_idx(files[0]).copy()).float()[:, None] / 255.0
    y = torch.from_numpy(_read_idx(files[1]).copy()).long()
    return ImageData(to_unit(x), y, f"fashion_mnist/{split}", FASHION_MNIST_CLASSES)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


MAX_PIXELS = 50_000_000  # an image larger than this is refused before it is decoded (PIL calls 89M a bomb)


def _open_image(path: Path):
    """Open and fully decode an image (a truncated file fails here, not later); one of more than `MAX_PIXELS`
    pixels is refused from its header, before it is decoded."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
        w, h = im.size
        if w * h > MAX_PIXELS:
            im.close()
            raise ValueError(f"it is {w}x{h} pixels, more than {MAX_PIXELS:,}")
        im.load()
    return im


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header (nothing decoded); (0, 0) if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return (0, 0)


def read_image(path: str | Path, channels: int, height: int, width: int, *, exact: str | None = None) -> Tensor:
    """One image file as a (channels, height, width) tensor in [-1, 1]: grey or RGB, resized (bicubic) to the size
    asked for; with `exact` (what the size means, for the message) an image of another size is refused instead."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}")
    try:
        im = _open_image(path)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path} is not a readable image ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); "
                         "give a PNG or JPEG file") from None
    with im:
        if exact is not None and im.size != (width, height):
            raise ValueError(f"{path} is {im.size[0]}x{im.size[1]} pixels; {exact} is {width}x{height} (width x height): "
                             "give an image of that size")
        im = im.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BICUBIC)
        a = np.asarray(im, dtype=np.float32) / 255.0
    return to_unit(torch.from_numpy(a[None] if channels == 1 else a.transpose(2, 0, 1).copy()))


def image_folder(root: str | Path, size: int, channels: int = 3) -> ImageData:
    """Every PNG/JPEG under `root`, resized so the shorter side is `size` and centre-cropped to size x size."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096:
        raise ValueError(f"size must be an integer side length from 1 to 4096 pixels, got {size!r}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .png/.jpg/.jpeg files under {root}")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    labelled = classes != ["."]
    out = []
    for p in files:
        try:
            im = _open_image(p)
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
            raise ValueError(f"{p} is not a readable image ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); "
                             f"remove it from {root} or replace it") from None
        with im:
            im = im.convert("L" if channels == 1 else "RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            a = np.asarray(im, dtype=np.float32) / 255.0
        out.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    x = to_unit(torch.from_numpy(np.stack(out)))
    y = torch.tensor([classes.index(p.parent.relative_to(root).as_posix()) for p in files]) if labelled else None
    return ImageData(x, y, f"folder:{root.name}", tuple(classes) if labelled else ())
