"""Run folders written by earlier versions keep loading and give the same samples: tests/fixtures/runs_5b44d08 holds
tiny runs of every kind written by difflab 5b44d08 (before the application was split into kinds) and what that
version drew from them (tests/fixtures/make_runs_5b44d08.py)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from _stored import assert_close_to_stored, assert_matches_stored
from difflab.cli import app

pytestmark = pytest.mark.stored  # compared with what another machine stored: CI runs these again on AVX2 kernels

FIXTURE = Path(__file__).parent / "fixtures" / "runs_5b44d08"
EXPECTED = np.load(FIXTURE / "expected.npz")
SAMPLES = {"cond": ["--label", "3", "--guidance", "1"], "uncond": ["--classifier", "classifier", "--label", "2", "--guidance", "1"],
           "latent": [], "cascade": ["--label", "1"], "masked": [], "ar": []}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The fixture's run folders copied elsewhere (their data.json files name the folders they were written in)."""
    root = tmp_path_factory.mktemp("old") / "runs"
    shutil.copytree(FIXTURE, root)
    return root


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_an_old_run_samples_what_it_sampled_then(runs, tmp_path, monkeypatch, name):
    monkeypatch.chdir(runs)  # the runs name each other relative to here
    out = tmp_path / f"{name}.npz"
    r = CliRunner().invoke(app, ["sample", name, "--n", "3", "--seed", "1", "--out", str(out), *SAMPLES[name]])
    assert r.exit_code == 0, r.output
    for key, value in np.load(out).items():
        assert_matches_stored(value, EXPECTED[f"{name}.{key}"], f"{name}.{key}")
    assert CliRunner().invoke(app, ["info", name]).exit_code == 0


def test_old_classifier_and_autoencoder_runs_load(runs):
    x = torch.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8)
    clf, _, _ = dl.load(runs / "classifier")
    assert_close_to_stored(clf(x, torch.tensor([0.3, 0.6]), label=torch.tensor([1, 2])).numpy(), EXPECTED["classifier.log_p"],
                           "classifier.log_p")
    ae, _, _ = dl.load(runs / "ae")
    assert_close_to_stored(ae.encode(x).detach().numpy(), EXPECTED["ae.encode"], "ae.encode")
