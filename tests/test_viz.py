"""Pictures are written and show what they should (pixel values and layout, frame counts)."""

import pytest
import torch
from PIL import Image

import difflab as dl


def test_image_grid_layout_and_values(tmp_path):
    x = torch.stack([torch.full((1, 4, 4), v) for v in (-1.0, 1.0, 0.0)])
    im = dl.viz.image_grid(x, nrow=2, pad=1)
    assert im.size == (2 * 5 + 1, 2 * 5 + 1) and im.mode == "L"
    assert im.getpixel((1, 1)) == 0 and im.getpixel((6, 1)) == 255 and im.getpixel((1, 6)) == 128
    rgb = dl.viz.image_grid(torch.zeros(4, 3, 2, 2), scale=3)
    assert rgb.mode == "RGB" and rgb.size == (3 * 7, 3 * 7)


def test_save_images_writes_one_lossless_png_per_image(tmp_path):
    import numpy as np

    x = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rgb = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    dl.viz.save_images(x, tmp_path / "grey")
    dl.viz.save_images(rgb, tmp_path / "rgb")
    files = sorted((tmp_path / "grey").glob("*.png"))
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    for f, im in zip(files, dl.data.to_uint8(x)):
        assert np.array_equal(np.asarray(Image.open(f)), im[0].numpy())
    back = np.asarray(Image.open(tmp_path / "rgb" / "000001.png"))
    assert np.array_equal(back, dl.data.to_uint8(rgb)[1].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="N, 1 or 3, H, W"):
        dl.viz.save_images(torch.zeros(2, 2), tmp_path / "bad")


def test_gif_and_loss_curve(tmp_path):
    frames = [torch.rand(4, 1, 8, 8) * 2 - 1 for _ in range(5)]
    out = dl.viz.save_gif(frames, tmp_path / "a.gif", hold_last=3)
    with Image.open(out) as im:
        assert im.n_frames >= 2  # Pillow may merge identical trailing frames
    (tmp_path / "log.csv").write_text("step,loss,lr,grad_norm,it_per_s\n1,1.0,0.1,1,1\n2,0.5,0.1,1,1\n")
    png = dl.viz.loss_curve(tmp_path / "log.csv", tmp_path / "loss.png")
    assert png.stat().st_size > 1000
    sc = dl.viz.scatter_grid({"row": {"a": torch.randn(50, 2)}}, tmp_path / "s.png", reference=torch.randn(50, 2))
    assert sc.stat().st_size > 1000


def test_score_fields_trajectories_and_density_over_time(tmp_path):
    mix = dl.oracles.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64), 0.5)
    out = dl.viz.score_fields({"true": mix.score, "zero": lambda x: torch.zeros_like(x)}, tmp_path / "f.png", lim=4,
                              log_prob=mix.log_prob, n=9)
    with Image.open(out) as im:
        assert im.size[0] > 1.8 * im.size[1]  # two panels side by side
    tr = dl.viz.trajectories({"a": torch.randn(20, 5, 2)}, tmp_path / "t.png", lim=3, log_prob=mix.log_prob)
    assert tr.stat().st_size > 1000
    one = dl.oracles.GaussianMixture([-1.0, 1.0], [0.3, 0.3])
    path = dl.paths.VP()
    d = dl.viz.density_over_time(lambda x, t: one.log_prob(x, t, path), tmp_path / "d.png", lim=3,
                                 paths={"p": torch.randn(11, 3)}, times=torch.linspace(1, 0, 11).numpy(), res=50)
    assert d.stat().st_size > 1000
