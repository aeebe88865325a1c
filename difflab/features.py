"""Feature networks for image metrics, shipped with difflab so every figure is reproducible offline.

One small CNN classifier (`nets.SmallCNN`: four 3x3 conv blocks, global average pooling, a linear
head) per built-in image set, trained on that set's own training split with a fixed seed by
`scripts/train_feature_nets.py`. Its 64 pooled features define the space of the Frechet distance
and of precision / recall (`difflab.metrics`); its class probabilities judge class-conditional
samples (accuracy) and unconditional ones (class histogram). Weights live in
`difflab/weights/<name>.safetensors`, with `<name>.json` recording the test accuracy, seed, epochs
and training time.

A figure that holds in one embedding only may be an artefact of that network, so Fashion-MNIST also
ships a second judge, `fashion_mnist_b` (`SECOND_NETS`): another architecture (`nets.ResidualCNN`)
trained with another seed on the same split; benchmarks report the Frechet distance in both. These are not Inception features: figures are comparable within difflab (same
network, same data set), not with published FIDs. For Inception FID bring your own weights file:
difflab never downloads anything.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import Tensor

from ._checks import choose

__all__ = ["FEATURE_SETS", "SECOND_NETS", "WEIGHTS_DIR", "second_feature_net", "train_feature_net", "save_feature_net", "load_feature_net", "features",
           "image_metrics"]

WEIGHTS_DIR = Path(__file__).parent / "weights"
# feature network -> its recipe (data set, architecture, seed; "data" and "arch" default to the name and small_cnn)
FEATURE_SETS = {"digits": {"epochs": 30, "batch_size": 64}, "fashion_mnist": {"epochs": 4, "batch_size": 128},
                "fashion_mnist_b": {"epochs": 4, "batch_size": 128, "data": "fashion_mnist", "arch": "residual_cnn", "seed": 1}}
SECOND_NETS = {"fashion_mnist": "fashion_mnist_b"}  # image set -> its second, independently trained feature network


def _data(name: str, split: str):
    from . import data

    return data.digits(split) if name == "digits" else data.fashion_mnist(split)


def second_feature_net(data_name: str) -> str | None:
    """The name of the second feature network of an image set, or None when it ships only one."""
    return SECOND_NETS.get(data_name)


def train_feature_net(name: str, *, seed: int | None = None, progress: bool = True):
    """Train the feature network `name` (its fixed recipe; `seed` defaults to the recipe's, else 0); returns (net, info)."""
    from .metrics import fit_cnn_classifier

    choose(name, FEATURE_SETS, "feature network")
    recipe = {"data": name, "arch": "small_cnn", "seed": 0, **FEATURE_SETS[name]}
    seed = recipe["seed"] if seed is None else seed
    t0 = time.time()
    net, acc = fit_cnn_classifier(_data(recipe["data"], "train"), _data(recipe["data"], "test"), epochs=recipe["epochs"],
                                  batch_size=recipe["batch_size"], seed=seed, progress=progress, arch=recipe["arch"])
    info = {"name": name, "test_accuracy": acc, **recipe, "seed": seed, "train_seconds": round(time.time() - t0, 1),
            "feature_dim": net.head.in_features, "num_classes": net.head.out_features,
            "in_channels": next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)).in_channels, "torch": torch.__version__}
    return net, info


def save_feature_net(net, info: dict, directory: str | Path = WEIGHTS_DIR) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, directory / f"{info['name']}.safetensors")
    (directory / f"{info['name']}.json").write_text(json.dumps(info, indent=1) + "\n")
    return directory / f"{info['name']}.safetensors"


def load_feature_net(name: str, directory: str | Path = WEIGHTS_DIR, device="cpu"):
    """A shipped feature network (`FEATURE_SETS`: an image set's name, or a second net such as "fashion_mnist_b"):
    (net in eval mode, info)."""
    from safetensors.torch import load_file

    from .nets import ResidualCNN, SmallCNN

    choose(name, FEATURE_SETS, "feature network")
    directory = Path(directory)
    weights, meta = directory / f"{name}.safetensors", directory / f"{name}.json"
    if not (weights.is_file() and meta.is_file()):
        raise FileNotFoundError(f"no feature network for {name!r} in {directory}; train it with "
                                f"`python scripts/train_feature_nets.py {name}`")
    info = json.loads(meta.read_text())
    net = {"small_cnn": SmallCNN, "residual_cnn": ResidualCNN}[info.get("arch", "small_cnn")](info["in_channels"],
                                                                                             info["num_classes"])
    net.load_state_dict(load_file(weights, device=str(device)))
    return net.to(device).eval().requires_grad_(False), info


@torch.no_grad()
def features(net, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """(pooled features (N, 64), class probabilities (N, K)) of images in [-1, 1]."""
    device = next(net.parameters()).device
    feats, probs = [], []
    for xb in images.split(batch_size):
        f = net.embed(xb.to(device, torch.float32))
        feats.append(f.cpu())
        probs.append(net.head(f).softmax(1).cpu())
    return torch.cat(feats), torch.cat(probs)


def image_metrics(net, real: Tensor, fake: Tensor, *, labels: Tensor | None = None, k: int = 3) -> dict:
    """Frechet distance, precision / recall / density / coverage, the class report of `fake` and, with
    the labels the samples were conditioned on, the classifier's accuracy on them."""
    from .metrics import class_report, frechet_distance, precision_recall

    f_real, _ = features(net, real)
    f_fake, p_fake = features(net, fake)
    out = {"fd": frechet_distance(f_real, f_fake), **precision_recall(f_real, f_fake, k=k), **class_report(p_fake)}
    if labels is not None:
        out["accuracy"] = float((p_fake.argmax(1) == labels.cpu()).double().mean())
    return out
