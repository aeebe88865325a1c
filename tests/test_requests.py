"""Careless or hostile requests end in one line that names the problem and the fix (exit 2, no traceback), before
any work and with nothing written anywhere; a legitimate but surprising one gets a one-line note. Each test stands
for a class of mistake: a kind declares what it accepts, a `Run` checks a request whole before it starts."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from _cli import TINY
from _cli import refused as _refused
from _cli import snapshot as _snapshot
from difflab.cli import app
from difflab.config import load_config

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train = lambda name, *over, preset="digits": dl.training.train(load_config(preset, [*TINY, *over]), root / name,  # noqa: E731
                                                                    progress=False)
    train("cond", "model.class_conditional=true", "diffusion.p_uncond=0.2")
    train("uncond")
    train("clf_small", "kind=classifier", "data.downsample=2")
    train("clf", "kind=classifier")
    train("ae", "kind=autoencoder", "model.kind=vae", "autoencoder.latent_channels=2")
    train("ae3", "kind=autoencoder", "model.kind=vae", "autoencoder.latent_channels=3")
    dl.training.train(load_config("text_masked", ["model.width=16", "model.depth=1", "model.heads=2", "data.length=16",
                                                  "train.steps=2", "train.batch_size=16", "train.checkpoint_every=2"]),
                      root / "masked", progress=False)
    return root


def test_guidance_that_overflows_is_refused_and_no_sample_is_ever_written_non_finite(runs, tmp_path):
    out = tmp_path / "x.png"
    _refused(["sample", runs / "cond", "--label", "3", "--guidance", "1e300", "--out", out], "--guidance", "within",
             folders=[runs / "cond"], out=out)
    _refused(["sample", runs / "cond", "--guidance", "nan", "--out", out], "--guidance", folders=[runs / "cond"], out=out)
    _refused(["eval", runs / "cond", "--metrics", "fid", "--guidance", "0,inf", "--n", "4"], "--guidance", folders=[runs / "cond"])
    # whatever produced them, non-finite samples are not written
    from difflab.app import outputs

    with pytest.raises(ValueError, match="NaN or infinite"):
        outputs.write(outputs.Samples("images", torch.full((2, 1, 8, 8), float("nan"))), out)
    assert not out.exists()


def test_guidance_towards_and_away_from_the_same_class_is_refused(runs, tmp_path):
    out = tmp_path / "x.png"
    _refused(["sample", runs / "cond", "--guidance", "2", "--negative-label", "3", "--label", "3", "--out", out],
             "--negative-label 3", "cancels", out=out)
    _refused(["sample", runs / "cond", "--guidance", "2", "--negative-label", "3", "--out", out], "every class in turn", out=out)
    r = runner.invoke(app, ["sample", str(runs / "cond"), "--guidance", "2", "--negative-label", "3", "--label", "4", "--n", "2",
                            "--out", str(tmp_path / "ok.npz")])
    assert r.exit_code == 0, r.output


def test_a_classifier_of_other_data_does_not_guide(runs, tmp_path):
    out = tmp_path / "x.png"
    _refused(["sample", runs / "uncond", "--classifier", runs / "clf_small", "--label", "3", "--guidance", "2", "--out", out],
             "saw other data", out=out)
    _refused(["sample", runs / "uncond", "--classifier", runs / "cond", "--label", "3", "--guidance", "2", "--out", out],
             "diffusion run", "kind = \"classifier\"", out=out)
    _refused(["sample", runs / "uncond", "--classifier", runs / "uncond", "--label", "3", "--guidance", "2", "--out", out],
             "the run itself", out=out)
    r = runner.invoke(app, ["sample", str(runs / "uncond"), "--classifier", str(runs / "clf"), "--label", "3", "--guidance", "2",
                            "--n", "2", "--out", str(tmp_path / "ok.npz")])
    assert r.exit_code == 0, r.output


def test_a_latent_run_checks_its_network_before_encoding_and_never_writes_into_its_autoencoder(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    before = _snapshot(runs / "ae")
    over = [f'requires.autoencoder="{runs / "ae"}"', 'model.kind="dit"', "model.patch_size=3", "model.width=32",
            "model.depth=1", "model.heads=2"]
    r = runner.invoke(app, ["train", "digits", "--out", str(tmp_path / "lat"), *sum((["--set", o] for o in [*TINY, *over]), [])])
    assert r.exit_code == 2 and "patch_size" in r.output, r.output
    assert _snapshot(runs / "ae") == before and not (tmp_path / "cache").exists() and not (tmp_path / "lat").exists()


def test_a_latent_run_whose_autoencoder_was_replaced_says_so(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    shutil.copytree(runs / "ae", tmp_path / "ae")
    dl.training.train(load_config("digits", [*TINY, f'requires.autoencoder="{tmp_path / "ae"}"']), tmp_path / "lat",
                      progress=False)
    r = runner.invoke(app, ["sample", str(tmp_path / "lat"), "--n", "2", "--out", str(tmp_path / "ok.png")])
    assert r.exit_code == 0, r.output
    shutil.rmtree(tmp_path / "ae")
    shutil.copytree(runs / "ae3", tmp_path / "ae")  # another autoencoder (3 latent channels) in its place
    _refused(["sample", tmp_path / "lat", "--n", "2", "--out", tmp_path / "x.png"], "autoencoder", "not the one",
             out=tmp_path / "x.png")
    with pytest.raises(ValueError, match="not the one"):
        dl.load(tmp_path / "lat")
    # an old run (no digest recorded) is caught by the latents' shape
    facts = json.loads((tmp_path / "lat" / "data.json").read_text())
    del facts["latent"]["autoencoder_sha256"]
    (tmp_path / "lat" / "data.json").write_text(json.dumps(facts))
    _refused(["sample", tmp_path / "lat", "--n", "2", "--out", tmp_path / "x.png"], "latents of shape", out=tmp_path / "x.png")


def test_absurd_requests_are_refused_at_once_with_the_bound(runs, tmp_path, monkeypatch):
    def no_work(*args, **kwargs):  # "at once": refused before any network runs (not a wall-clock bound)
        raise AssertionError("a network ran before the request was refused")

    monkeypatch.setattr(torch.nn.Module, "__call__", no_work)
    out = tmp_path / "x.txt"
    _refused(["sample", runs / "masked", "--steps", "1000000000", "--out", out], "1 .. 100,000", folders=[runs / "masked"], out=out)
    _refused(["sample", runs / "cond", "--steps", "10000000", "--out", tmp_path / "x.png"], "1 .. 100,000")
    _refused(["sample", runs / "cond", "--n", "1000000000000", "--out", tmp_path / "x.png"], "--n", "memory")
    _refused(["eval", runs / "cond", "--metrics", "fid", "--n", "1000000000000"], "--n", "memory", folders=[runs / "cond"])
    _refused(["bench", "samplers", runs / "cond", "--nfe", "100000000"], "--nfe", folders=[runs / "cond"])
    _refused(["sample", runs / "cond", "--steps", "1001", "--grid", "trailing", "--out", tmp_path / "x.png"], "at most T=1000")
    _refused(["sample", runs / "cond", "--steps", "1001", "--grid", "karras", "--out", tmp_path / "x.png"], "at most T=1000")


def test_a_file_that_is_not_text_is_refused_as_text(tmp_path):
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 65536, dtype=np.uint8).tobytes())
    r = runner.invoke(app, ["train", "text_masked", "--out", str(tmp_path / "run"), "--set",
                            f'data.text="{tmp_path / "random.bin"}"', "--set", "train.steps=1"])
    assert r.exit_code == 2 and "not a text file" in r.output and not (tmp_path / "run").exists(), r.output


def test_eval_checks_every_option_before_measuring_anything(runs, tmp_path):
    for extra in (["--guidance", "1"], ["--classifier", str(runs / "clf")], ["--guidance", "1", "--classifier", str(runs / "clf")]):
        _refused(["eval", runs / "cond", "--nll", "--n", "4", *extra], folders=[runs / "cond"])
    _refused(["eval", runs / "cond", "--nll", "--split", "valid"], "split", folders=[runs / "cond"])
    _refused(["eval", runs / "uncond", "--metrics", "accuracy", "--n", "4"], "accuracy judges", folders=[runs / "uncond"])
    assert not (runs / "cond" / "eval.json").exists()


def test_a_run_that_requires_itself_is_a_loop(runs, tmp_path):
    base, sr = tmp_path / "base", tmp_path / "sr"
    dl.training.train(load_config("digits", [*TINY, "data.downsample=2"]), base, progress=False)
    dl.training.train(load_config("digits", [*TINY, "data.low_res=2", "diffusion.low_res_noise=0.5"]), sr, progress=False)
    dl.training.train(load_config(None, ["kind=cascade", f'requires.base="{base}"', f'requires.super_resolution="{sr}"']),
                      tmp_path / "c", progress=False)
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    cfg["requires"]["base"] = str(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps(cfg))
    for args in (["info", tmp_path / "c"], ["sample", tmp_path / "c", "--out", tmp_path / "x.png"]):
        _refused(args, "loop", "requires.base", folders=[tmp_path / "c"])
    with pytest.raises(ValueError, match="loop"):
        dl.training.train(load_config(None, ["kind=cascade", f'requires.base="{tmp_path / "d"}"',
                                             f'requires.super_resolution="{sr}"']), tmp_path / "d", progress=False)


def test_unclear_paths_are_named_for_what_they_are(runs, tmp_path):
    (tmp_path / "afile").write_text("x")
    _refused(["sample", runs / "cond", "--out", tmp_path / "afile" / "x.png"], "afile is a file")
    _refused(["sample", runs / "uncond", "--classifier", tmp_path / "nowhere", "--label", "1", "--guidance", "1"], "does not exist")
    line = _refused(["sample", tmp_path / "nowhere"], "does not exist")
    assert "--fresh" not in line
    _refused(["train", "digits", "--out", tmp_path / "afile" / "run"], "afile is a file")


def test_options_a_kind_does_not_take_say_which_kinds_take_them(runs, tmp_path):
    _refused(["sample", runs / "masked", "--grid", "karras", "--out", tmp_path / "x.txt"], "not available for a discrete run",
             "for diffusion runs only")
    _refused(["sample", runs / "ae", "--out", tmp_path / "x.png"], "no samples")
    _refused(["eval", runs / "ae", "--nll"], "--nll", "not available for an autoencoder run")
    _refused(["bench", "samplers", runs / "masked"], "bench samplers")


def test_sample_opens_the_run_configuration_once(runs, tmp_path, monkeypatch):
    reads = []
    original = Path.read_bytes

    def counting(self):
        if self.name in ("config.json", "data.json") and self.parent == runs / "cond":
            reads.append(self.name)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    r = runner.invoke(app, ["sample", str(runs / "cond"), "--n", "2", "--label", "1", "--guidance", "1",
                            "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output
    assert sorted(reads) == ["config.json", "data.json"], reads


def test_command_line_mistakes_are_one_line_too(runs):
    for args in (["sample", runs / "cond", "--steps", "0"], ["sample", runs / "cond", "--bogus"], ["bogus"], ["sample"],
                 ["eval", runs / "cond", "--n", "x"], ["bench", "bogus"]):
        _refused(args, "--help", folders=[runs / "cond"])
    r = runner.invoke(app, ["sample", "--help"])
    assert r.exit_code == 0 and "--guidance" in r.output


def test_outputs_take_any_case_and_reports_accumulate(runs, tmp_path):
    run = tmp_path / "u"
    shutil.copytree(runs / "uncond", run)
    for out in ("A.NPZ", "b.PNG"):
        r = runner.invoke(app, ["sample", str(run), "--n", "2", "--out", str(tmp_path / out)])
        assert r.exit_code == 0 and (tmp_path / out).is_file(), r.output
    assert np.load(tmp_path / "A.NPZ")["samples"].shape == (2, 1, 8, 8)
    for args in (["--metrics", "fid", "--n", "20", "--steps", "2"], ["--nll", "--n", "2", "--rtol", "1e-2", "--atol", "1e-2"]):
        r = runner.invoke(app, ["eval", str(run), *args])
        assert r.exit_code == 0, r.output
    report = json.loads((run / "eval.json").read_text())
    assert "likelihood" in report and any(k.startswith("samples") for k in report)
