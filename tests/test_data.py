"""Data loaders: shapes, ranges, labels, the inverse transform, missing files, toy densities, networks' shapes."""

import math

import numpy as np
import pytest
import torch

import difflab as dl
from conftest import gen

D = dl.data


def test_digits():
    tr, te = D.digits("train"), D.digits("test")
    assert tr.images.shape == (1438, 1, 8, 8) and te.images.shape == (359, 1, 8, 8)
    assert float(tr.images.min()) == -1.0 and float(tr.images.max()) == 1.0
    assert tr.num_classes == 10 and set(tr.labels.tolist()) == set(range(10))
    all_ = D.digits("all")
    assert len(all_) == len(tr) + len(te)
    # the splits are disjoint and their union is the data set (checked on the pixel rows)
    rows = {tuple(r) for r in all_.images.flatten(1).tolist()}
    assert {tuple(r) for r in tr.images.flatten(1).tolist()} | {tuple(r) for r in te.images.flatten(1).tolist()} <= rows


def test_fashion_mnist():
    te = D.fashion_mnist("test")
    assert te.images.shape == (10000, 1, 28, 28)
    assert float(te.images.min()) == -1.0 and float(te.images.max()) == 1.0
    assert torch.bincount(te.labels).tolist() == [1000] * 10
    assert te.class_names[0] == "T-shirt/top"
    # values are k/255 mapped to [-1, 1]: the inverse transform gives back integers exactly
    u8 = D.to_uint8(te.images[:10])
    torch.testing.assert_close(D.to_unit(u8.float() / 255), te.images[:10])


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        D.fashion_mnist("train", root=tmp_path)


def test_image_folder_resizes_crops_and_labels(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, size in [("cats", (40, 30)), ("dogs", (25, 50))]:
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    data = D.image_folder(tmp_path, 16, channels=3)
    assert data.images.shape == (6, 3, 16, 16) and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.class_names == ("cats", "dogs")
    assert -1 <= float(data.images.min()) and float(data.images.max()) <= 1
    grey = D.image_folder(tmp_path / "cats", 8, channels=1)
    assert grey.images.shape == (3, 1, 8, 8) and grey.labels is None
    # a uniform image stays uniform (resizing and cropping keep the value)
    (tmp_path / "flat").mkdir()
    Image.new("L", (20, 12), 51).save(tmp_path / "flat" / "a.png")
    flat = D.image_folder(tmp_path / "flat", 6, channels=1)
    torch.testing.assert_close(flat.images, torch.full((1, 1, 6, 6), 51 / 255 * 2 - 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .png/.jpg/.jpeg files"):
        D.image_folder(tmp_path / "empty", 6)


@pytest.mark.parametrize("name", [n for n in D.TOY_SETS if n != "cfm_moons"])
def test_toy_sets_and_their_exact_densities(name):
    model = D.toy_density(name)
    x = D.toy(name, 5000, gen(0))
    assert x.dtype == torch.float32 and x.shape == (5000, 1 if name.endswith("1d") else 2)
    lp = model.log_prob(x.double())
    assert torch.isfinite(lp).all(), "every sample lies where the density is positive"
    if x.shape[1] == 2:  # the density integrates to one (grid quadrature over [-L, L]^2)
        # steps of 0.03-0.05, at most the narrowest noise (0.05): the rule is then exact to ~exp(-2 pi^2) for Gaussian ridges
        # (the checkerboard's edges cut cells: a finer grid; it costs nothing there)
        points = 601 if name.startswith("cfm") else 401 if name == "checkerboard" else 241
        g = torch.linspace(-9, 9, points, dtype=torch.float64) if name.startswith("cfm") else torch.linspace(-6, 6, points, dtype=torch.float64)
        X, Y = torch.meshgrid(g, g, indexing="ij")
        mass = float(model.log_prob(torch.stack([X.flatten(), Y.flatten()], 1)).exp().sum() * (g[1] - g[0]) ** 2)
        assert mass == pytest.approx(1.0, abs=1e-2 if name == "checkerboard" else 2e-3)  # its edges cut grid cells


def test_torchcfm_sets_are_defined_as_torchcfm_defines_them():
    # eight Gaussians: centres at radius 5 on multiples of 45 degrees, covariance sqrt(0.1) I
    x = D.toy("cfm_8gaussians", 40_000, gen(1)).double()
    angle = torch.atan2(x[:, 1], x[:, 0])
    k = torch.round(angle / (math.pi / 4))
    centre = 5 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1)
    cov = torch.cov((x - centre).T)
    torch.testing.assert_close(cov, math.sqrt(0.1) * torch.eye(2, dtype=torch.float64), atol=0.02, rtol=0)
    # moons: y = (x + 1) / 3 minus one shift u in [0, 0.2) along (1, 1) lies on scikit-learn's arcs,
    # |y - u (1, 1) - c|^2 = 1 with c = (0, 0) (upper arc, y2 - u >= 0) or c = (1, 0.5) (lower, y2 - u <= 0.5)
    y = (D.toy_density("cfm_moons").sample(2001, gen(2)) + 1) / 3  # float64
    hits = []
    for c, upper in (((0.0, 0.0), True), ((1.0, 0.5), False)):
        d = y - torch.tensor(c, dtype=torch.float64)
        # 2 u^2 - 2 u (d1 + d2) + |d|^2 - 1 = 0
        b, cc = -2 * (d[:, 0] + d[:, 1]), (d ** 2).sum(1) - 1
        disc = (b ** 2 - 8 * cc).clamp_min(0).sqrt()
        ok = torch.zeros(len(y), dtype=torch.bool)
        for u in ((-b - disc) / 4, (-b + disc) / 4):
            on = ((d - u[:, None]) ** 2).sum(1).sub(1).abs() < 1e-9
            side = (d[:, 1] - u >= -1e-9) if upper else (d[:, 1] - u <= 1e-9)
            ok |= on & side & (u >= 0) & (u < 0.2)
        hits.append(ok)
    assert bool((hits[0] | hits[1]).all()), "every point is an arc point shifted along (1, 1) by less than 0.2"
    assert int(hits[0].sum()) >= 1000 and int(hits[1].sum()) >= 1000  # 1000 upper, 1001 lower (ties may count twice)
    assert not hasattr(D.toy_density("cfm_moons"), "log_prob")


def test_checkerboard_density_is_exactly_one_eighth_on_dark_squares():
    cb = D.Checkerboard()
    lp = cb.log_prob(torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [3.0, 0.0]]))
    assert lp.tolist()[:1] == [-math.log(8)] and lp[1] == -math.inf and lp[2] == -math.log(8) and lp[3] == -math.inf


@pytest.mark.parametrize("size, mult", [(8, (1, 2)), (28, (1, 2, 2)), (32, (1, 2, 2, 2))])
def test_unet_shapes_and_conditioning(size, mult):
    net = dl.nets.UNet(3, channels=8, channel_mult=mult, num_res_blocks=1, num_classes=4, dropout=0.1)
    x, t = torch.randn(3, 3, size, size), torch.rand(3)
    assert net(x, t, torch.tensor([0, 3, -1])).shape == x.shape
    assert net(x, t).shape == x.shape  # no labels: the null class
    with pytest.raises(ValueError, match="divisible by"):
        net(torch.randn(2, 3, size + 1, size + 1), torch.rand(2))
    with pytest.raises(ValueError, match="labels must lie in"):
        net(x, t, torch.tensor([0, 4, 1]))


def test_unet_patch_size_is_a_plain_unet_on_space_to_depth_patches():
    """patch_size = 2 is exactly: fold each 2x2 patch into 4 channels (channel c*4 + 2i + j holds
    pixel (2y + i, 2x + j) of channel c), run a 4-channel U-Net at half resolution, unfold."""
    torch.manual_seed(0)
    net = dl.nets.UNet(3, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=4, patch_size=2)
    plain = dl.nets.UNet(12, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=4)
    with torch.no_grad():
        for p in net.parameters():  # the output layer starts at zero: give it weights to carry
            p.normal_(0, 0.2)
    plain.load_state_dict(net.state_dict())
    x, t, y = torch.randn(2, 3, 12, 12), torch.rand(2), torch.tensor([1, -1])
    fold = x.reshape(2, 3, 6, 2, 6, 2).permute(0, 1, 3, 5, 2, 4).reshape(2, 12, 6, 6)
    h = plain(fold, t, y)
    unfold = h.reshape(2, 3, 2, 2, 6, 6).permute(0, 1, 4, 2, 5, 3).reshape(2, 3, 12, 12)
    assert torch.allclose(net(x, t, y), unfold, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4 .* patch size 2"):
        net(torch.randn(2, 3, 10, 10), t)
    with pytest.raises(ValueError, match="patch_size"):
        dl.nets.UNet(1, channels=8, patch_size=0)
    cfg = dl.config.ModelConfig(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, patch_size=2)
    with pytest.raises(ValueError, match=r"28x28 need sides divisible by model.patch_size x 2\^\(levels - 1\) = 2 x 4 = 8"):
        dl.config.build_model(cfg, (1, 28, 28), None)
    assert dl.config.build_model(cfg, (1, 32, 32), None).patch == 2


def test_unet_starts_as_zero_and_embeddings_differ_with_time():
    net = dl.nets.UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1)
    assert torch.count_nonzero(net(torch.randn(2, 1, 8, 8), torch.rand(2))) == 0  # zero-initialised output layer
    for emb in (dl.nets.SinusoidalEmbedding(16), dl.nets.FourierEmbedding(16)):
        e = emb(torch.tensor([0.1, 0.2]))
        assert e.shape == (2, 16) and not torch.allclose(e[0], e[1])
