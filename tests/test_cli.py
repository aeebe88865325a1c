"""The `difflab` command end to end on a tiny run: train, info, sample (.png and .npz), errors."""

import numpy as np
from typer.testing import CliRunner

from difflab.cli import app

runner = CliRunner()


def test_train_info_sample(tmp_path):
    run = tmp_path / "toy"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--set", "train.steps=20", "--set", "train.checkpoint_every=10",
                            "--set", "data.toy_size=2000"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and "20 / 20 steps" in r.output and "toy:eight_gaussians" in r.output
    r = runner.invoke(app, ["sample", str(run), "--sampler", "ddim", "--steps", "5", "--n", "50", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "s.npz")["samples"].shape == (50, 2)
    r = runner.invoke(app, ["sample", str(run), "--n", "200", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 1000
    r = runner.invoke(app, ["sample", str(run), "--n", "5", "--out", str(tmp_path / "pngs")])
    assert r.exit_code == 2 and "a folder of PNGs holds images" in r.output


def test_errors_are_one_clear_line(tmp_path):
    r = runner.invoke(app, ["train", "toy2d", "--set", "train.lr=fast", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "train.lr must be a number" in r.output
    r = runner.invoke(app, ["sample", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not a difflab run" in r.output
    r = runner.invoke(app, ["train", "no_such_preset"])
    assert r.exit_code == 2 and "preset" in r.output
