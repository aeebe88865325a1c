"""The shipped feature networks and the image metrics in their feature space."""

import json

import pytest
import torch
import torch.nn.functional as F

import difflab as dl
from difflab.features import FEATURE_SETS, features, image_metrics, load_feature_net


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _test_split(name):
    return dl.data.digits("test") if name == "digits" else dl.data.fashion_mnist("test")


@pytest.mark.stored
@pytest.mark.parametrize("name", list(FEATURE_SETS))
def test_shipped_feature_net_has_its_recorded_accuracy(name):
    net, info = load_feature_net(name)
    test = _test_split(name)
    _, probs = features(net, test.images)
    acc = float((probs.argmax(1) == test.labels).double().mean())
    # the weights are the ones measured, on another machine: at most two borderline images decided otherwise
    assert abs(acc - info["test_accuracy"]) * len(test.labels) <= 2 + 1e-6, (acc, info["test_accuracy"])
    assert acc > (0.97 if name == "digits" else 0.88)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "digits" else n for n in FEATURE_SETS])
def test_frechet_distance_of_real_halves_is_small_against_blurred_or_shuffled_images(name):
    net, _ = load_feature_net(name)
    x = _test_split(name).images
    x = x[torch.randperm(len(x), generator=gen(0))]
    a, b = x[: len(x) // 2], x[len(x) // 2:]
    blurred = F.avg_pool2d(F.pad(b, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    perm = torch.stack([torch.randperm(b[0].numel(), generator=gen(i)) for i in range(len(b))])
    shuffled = torch.gather(b.flatten(1), 1, perm).reshape(b.shape)
    halves = image_metrics(net, a, b)
    assert halves["precision"] > 0.8 and halves["recall"] > 0.8
    for other in (blurred, shuffled):
        m = image_metrics(net, a, other)
        assert m["fd"] > 3 * halves["fd"], (halves["fd"], m["fd"])  # digits: 8.3 vs 33 (blurred), 51 (shuffled)
        assert min(m["precision"], m["recall"]) < 0.5, m  # they leave the manifold of real images


def test_missing_feature_net_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_feature_nets.py"):
        load_feature_net("digits", directory=tmp_path)
    info = json.loads((dl.features.WEIGHTS_DIR / "digits.json").read_text())
    assert info["seed"] == 0 and info["feature_dim"] == 64


def test_the_second_fashion_judge_is_another_network_with_another_seed():
    from difflab.features import second_feature_net

    name = second_feature_net("fashion_mnist")
    assert name == "fashion_mnist_b" and second_feature_net("digits") is None
    a, info_a = load_feature_net("fashion_mnist")
    b, info_b = load_feature_net(name)
    assert type(a) is not type(b) and info_a["seed"] != info_b["seed"] and info_b["data"] == "fashion_mnist"
    x = dl.data.fashion_mnist("test").images[:500]
    fa, fb = features(a, x)[0], features(b, x)[0]
    assert fa.shape[1] == info_a["feature_dim"] and fb.shape[1] == info_b["feature_dim"]
    # both judges agree on most labels (they learned the same classes), yet embed differently
    pa, pb = features(a, x)[1].argmax(1), features(b, x)[1].argmax(1)
    assert float((pa == pb).double().mean()) > 0.85
