"""No input ends in a traceback, and nothing is lost: damaged checkpoints and run files, random configurations
and command lines, runs from before this version, runs that need other runs."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import difflab as dl
from _cli import one_error_line as _one_error_line
from _stored import assert_close_to_stored
from difflab.cli import app
from difflab.config import load_config
from difflab.training import checkpoint as ck

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"
TINY = {"name": "tiny", "data": {"name": "digits"},
        "model": {"kind": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "dropout": 0.1},
        "diffusion": {"path": "ddpm_linear", "T": 50},
        "train": {"steps": 8, "batch_size": 50, "lr": 1e-3, "warmup": 2, "checkpoint_every": 4, "keep_last": 3, "log_every": 2,
                  "device": "cpu"},
        "sample": {"sampler": "ddim", "steps": 4}}


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny digits U-Net with checkpoints at steps 4 and 8."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    dl.training.train(load_config(TINY), run, progress=False)
    return run


# -- damaged checkpoints -------------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":  # one bit in the middle: same size, still parses for most formats
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
    elif how == "delete":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


FILES = ["model.safetensors", "ema.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors", "state.json"]
DAMAGE = [(f, how) for f in FILES for how in ("truncate", "flip")] + [("model.safetensors", "delete"), ("state.json", "empty")]


@pytest.mark.parametrize("file, how", DAMAGE, ids=[f"{f}-{h}" for f, h in DAMAGE])
def test_a_damaged_newest_checkpoint_is_passed_over_and_resume_is_exact(tiny_run, tmp_path, capsys, file, how):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    newest, older = run / "checkpoints" / "step-00000008", run / "checkpoints" / "step-00000004"
    _damage(newest / file, how)
    with pytest.raises(ck.CheckpointDamaged, match=file):
        ck.verify(newest)  # the damage is found by its digest, not by a deserializer
    den, path, _ = dl.load(run)  # loading uses the newest checkpoint that loads, and says so
    assert "damaged" in capsys.readouterr().err
    net = dl.runs.load_network(run)[0]
    for k, v in ck.load_tensors(older / "ema.safetensors").items():
        assert torch.equal(net.state_dict()[k], v)
    # resuming continues from step 4 and ends where an uninterrupted run ends, bit for bit
    more = load_config(TINY, ["train.steps=10"])
    dl.training.train(more, run, progress=False)
    assert "resuming" in capsys.readouterr().err
    dl.training.train(more, tmp_path / "straight", progress=False)
    for name in ("model", "ema", "optimizer"):
        a = ck.load_tensors(dl.training.latest_checkpoint(run) / f"{name}.safetensors")
        b = ck.load_tensors(dl.training.latest_checkpoint(tmp_path / "straight") / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_every_checkpoint_damaged_is_one_clear_error_that_changes_nothing(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for ckpt in (run / "checkpoints").glob("step-*"):
        _damage(ckpt / "ema.safetensors", "truncate")
    (run / "checkpoints" / "latest").write_bytes(b"\x00garbage")  # and the pointer too
    before = _snapshot(run)
    r = runner.invoke(app, ["sample", str(run), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "no checkpoint" in _one_error_line(r)
    with pytest.raises(ValueError, match="no checkpoint .* loads"):
        dl.training.train(load_config(TINY), run, progress=False)
    assert _snapshot(run) == before and not (tmp_path / "x.png").exists()
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and r.output.count("damaged   step-") == 2


@pytest.mark.parametrize("file", ["config.json", "data.json"])
def test_damaged_run_files_are_one_clear_error(tiny_run, tmp_path, file):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for content in (b'{"name": "tiny", "model": {', b"\xff\xfe not json", b"[1, 2]", b""):
        (run / file).write_bytes(content)
        before = _snapshot(run)
        for args in (["sample", str(run), "--out", str(tmp_path / "x.png")], ["info", str(run)],
                     ["eval", str(run), "--metrics", "fid", "--n", "10"], ["bench", "samplers", str(run), "--n", "10"]):
            r = runner.invoke(app, args)
            assert r.exit_code == 2, (args, r.output)
            assert file in _one_error_line(r)
        assert _snapshot(run) == before


def test_a_fresh_start_that_fails_deletes_nothing(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = _snapshot(run)
    for bad in (["train.batch_size=5000"], ["model.patch_size=3"], ['data.name="fashion_mnist"', 'data.root="/nowhere"']):
        with pytest.raises((ValueError, FileNotFoundError)):
            dl.training.train(load_config(TINY, bad), run, resume=False, progress=False)
        assert _snapshot(run) == before, bad


def test_weights_for_another_model_are_named_not_a_pytorch_dump(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["channels"] = 16  # config.json edited after training: the weights are for another network
    (run / "config.json").write_text(json.dumps(cfg))
    r = runner.invoke(app, ["sample", str(run), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "weights for another model" in _one_error_line(r) and "of another shape" in r.output
    with pytest.raises(ck.CheckpointDamaged, match="weights for another model"):
        dl.load(run)


def test_files_that_are_not_images_in_an_image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 12), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.png").write_text("this is not a picture")
    with pytest.raises(ValueError, match="notes.png is not a readable image"):
        dl.data.image_folder(folder, 8, 1)
    r = runner.invoke(app, ["train", "digits", "--set", 'data.name="folder"', "--set", f'data.root="{folder}"',
                            "--set", "data.size=8", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "notes.png" in _one_error_line(r) and not (tmp_path / "run").exists()


# -- runs from before this version, runs that need other runs -----------------------------------

@pytest.mark.stored
def test_a_run_written_before_objectives_and_checksums_still_loads_samples_and_resumes(tmp_path):
    """tests/fixtures/run_before_objectives was written by difflab 8494171 (the loop before objectives, labels
    passed as `cond`, checkpoints without digests), with the samples that version drew from it."""
    run = tmp_path / "old"
    shutil.copytree(FIXTURES / "run_before_objectives", run)
    den, path, cfg = dl.load(run)
    expected = np.load(run / "expected_samples.npz")
    x = dl.sample(den, path, (4, 1, 8, 8), sampler="ddim", steps=5, generator=torch.Generator().manual_seed(0),
                  cond={"label": torch.as_tensor(expected["labels"])})
    assert_close_to_stored(x.numpy(), expected["samples"], "samples")
    cfg = load_config(json.loads((run / "config.json").read_text()), ["train.steps=5"])
    assert dl.training.train(cfg, run, progress=False).step == 5
    assert "sha256" in dl.training.checkpoint.read_state(dl.training.latest_checkpoint(run))


def test_a_run_names_the_runs_it_requires_and_they_must_be_there(tiny_run, tmp_path):
    cfg = load_config(TINY, ["train.steps=2", f'requires.teacher="{tiny_run}"'])
    dl.training.train(cfg, tmp_path / "student", progress=False)
    assert dl.runs.required_runs(cfg, tmp_path / "student") == {"teacher": tiny_run}
    assert "requires teacher" in runner.invoke(app, ["info", str(tmp_path / "student")]).output
    moved = tmp_path / "moved-teacher"
    shutil.copytree(tiny_run, moved)
    cfg = load_config(TINY, ["train.steps=2", f'requires.teacher="{moved}"'])
    dl.training.train(cfg, tmp_path / "student2", progress=False)
    shutil.rmtree(moved)
    r = runner.invoke(app, ["sample", str(tmp_path / "student2"), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "requires the run" in _one_error_line(r) and "teacher" in r.output
    with pytest.raises(FileNotFoundError, match="requires the run"):
        dl.training.train(load_config(TINY, [f'requires.teacher="{tmp_path / "nowhere"}"']), tmp_path / "s3", progress=False)
    assert not (tmp_path / "s3").exists()
    with pytest.raises(ValueError, match="requires.teacher must name a run folder"):
        load_config(TINY, ["requires.teacher=3"])


def test_a_weighting_the_path_cannot_honour_is_refused_when_the_configuration_is_read():
    with pytest.raises(ValueError, match="elbo weighting .* needs its betas"):
        load_config("ncsn2d", ["diffusion.weighting=elbo"])
    with pytest.raises(ValueError, match="needs times on its grid"):
        load_config("digits", ["diffusion.weighting=elbo", "diffusion.time_sampler=log_normal"])
    assert load_config("digits", ["diffusion.weighting=elbo"]).diffusion.weighting == "elbo"
    assert load_config(None, ["diffusion.path=vp", "diffusion.weighting=elbo", "diffusion.time_sampler=log_normal"])


# -- random configurations and command lines ------------------------------------------------------

def _keys(cls, prefix=""):
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


KEYS = _keys(dl.config.Config)
VALUES = st.one_of(
    st.integers(-10**20, 10**20).map(str), st.sampled_from(["0", "-1", "1", "2", "3", "1e308", "inf", "nan", "-inf", "0.5",
                                                           "true", "false", "[]", "[1, 2]", "[0]", "{}", "{a = 1}",
                                                           '"x"', '""', '"cpu"', '"cuda:3"', '"karras"', '"elbo"', "\"\\u0000\""]),
    st.text(max_size=12), st.sampled_from(['"' + v + '"' for v in ("ddpm", "ve", "ncsn", "linear", "toy", "mlp", "unet", "folder",
                                                                    "eps", "velocity", "exact", "log_normal", "cosine")]))
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=15), st.sampled_from(KEYS).map(lambda k: k + "x"),
                st.sampled_from(["sample.options.eta", "sample.options.bogus", "sample.grid_options.rho", "requires.teacher",
                                 "train", "model.channels.x", "=", ".", ""]))


WORDS = ["ddpm_linear", "ddpm_cosine", "vp", "subvp", "ve", "ncsn", "cosine", "linear", "eps", "x0", "v", "score", "velocity",
         "simple", "elbo", "sigma2", "likelihood", "min_snr", "default", "log_normal", "independent", "exact", "sinkhorn",
         "digits", "fashion_mnist", "folder", "toy", "moons", "cfm_8gaussians", "unet", "mlp", "fourier", "cpu", "auto",
         "cosine", "none", "ddim", "pc", "unipc", "karras", "trailing", "train", "test", "all", "diffusion", "x"]


def _typed(key: str):
    """Values of the key's own type, mostly plausible (the keys' defaults tell the type)."""
    section, _, name = key.rpartition(".")
    default = getattr(getattr(dl.config.Config(), section) if section else dl.config.Config(), name)
    if isinstance(default, bool):
        return st.sampled_from(["true", "false"])
    if isinstance(default, int):
        return st.integers(-3, 3000).map(str)
    if isinstance(default, float):
        return st.floats(allow_nan=True, allow_infinity=True).map(lambda v: repr(v).replace("inf", "inf"))
    if isinstance(default, str):
        return st.sampled_from(WORDS).map(lambda w: f'"{w}"')
    if isinstance(default, tuple):
        return st.lists(st.integers(-3, 5), max_size=4).map(str)
    return st.sampled_from(["{}", "{eta = 0.5}", "{rho = 3}", "{steps_per_level = 2}", "{variance = \"beta\"}", '{a = "b"}'])


PAIR = st.one_of(st.tuples(KEY, VALUES), st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), _typed(k))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PAIR, max_size=3), st.sampled_from(["toy2d", "ncsn2d", "flow2d", "digits", "fashion_mnist"]))
def test_random_configurations_load_or_are_refused_in_one_clear_line(pairs, preset):
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        cfg = load_config(preset, overrides)
    except (ValueError, FileNotFoundError) as e:
        message = str(e)
        assert message and "\n" not in message and "Traceback" not in message, message
        event("refused")
        return
    event("loaded")
    assert cfg.to_dict() == load_config(json.loads(json.dumps(cfg.to_dict()))).to_dict()  # it survives config.json


COMMANDS = {
    "sample": st.fixed_dictionaries({}, optional={
        "--sampler": st.sampled_from(["ddim", "ddpm", "pc", "dpmpp_2m@karras:rho=3", "ddim:eta=2", "unipc:order=5", "euler",
                                      "ddim@bogus", "ddim:eta=x", "ode_rk45:rtol=0", "annealed_langevin:steps_per_level=0",
                                      "ddpm:variance=big", "dpmpp_2m@trailing:rho=2", ""]),
        "--steps": st.sampled_from(["1", "3", "0", "-2", "51", "x"]), "--grid": st.sampled_from(["trailing", "karras", "log_snr",
                                                                                               "linspace", "karas"]),
        "--n": st.sampled_from(["1", "3", "0", "-1", "x"]), "--label": st.sampled_from(["0", "9", "10", "-1", "x"]),
        "--batch": st.sampled_from(["1", "2", "0"]), "--seed": st.sampled_from(["0", "-5", "x"]),
        "--device": st.sampled_from(["cpu", "cuda", "cuda:9", "tpu", "auto"]),
        "--out": st.sampled_from(["s.png", "s.npz", "s.txt", "folder", "folder/"])}),
    "eval": st.fixed_dictionaries({}, optional={
        "--metrics": st.sampled_from(["fid", "prdc", "w2", "fid,w2", "bogus", "", "nll"]), "--n": st.sampled_from(["2", "0", "x"]),
        "--sampler": st.sampled_from(["ddim", "ddim:eta=0.5", "nope"]), "--steps": st.sampled_from(["2", "0", "100"]),
        "--method": st.sampled_from(["exact", "hutchinson", "magic"]), "--rtol": st.sampled_from(["1e-2", "0", "-1", "nan"]),
        "--split": st.sampled_from(["test", "train", "valid"]), "--batch": st.sampled_from(["2", "0"]),
        "--grid": st.sampled_from(["karras", "bogus"]), "--elbo-terms": st.sampled_from(["1", "0"])}),
    "bench samplers": st.fixed_dictionaries({}, optional={
        "--nfe": st.sampled_from(["2", "2,3", "0", "x", ",", "100"]), "--samplers": st.sampled_from(["ddim", "ddim@karras:rho=2",
                                                                                                 "bogus", "ddim:eta", ",", "ode_rk45"]),
        "--n": st.sampled_from(["10", "5", "x"]), "--batch": st.sampled_from(["3", "0"]), "--device": st.sampled_from(["cpu", "gpu"])}),
    "info": st.just({}),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(COMMANDS)), data=st.data())
def test_random_command_lines_end_in_success_or_one_clear_error_and_failures_change_nothing(tiny_run, tmp_path, command, data):
    """The command line with random options on a real run: exit 0, or exit 2 with one `error:` line, never a
    traceback, and a failed command leaves the run folder and the output as they were."""
    options = data.draw(COMMANDS[command])
    work = tmp_path / f"w{abs(hash(json.dumps(options, sort_keys=True))) % 10**8}"
    work.mkdir(exist_ok=True)
    args = command.split() + [str(tiny_run)]
    for key, value in options.items():
        if key == "--out":
            value = str(work / value)
        if key == "--metrics" and value in ("fid", "prdc", "fid,w2"):
            args += ["--n", "2"]
        args += [key, value]
    if command == "sample" and "--n" not in options:
        args += ["--n", "2"]
    if command in ("eval", "bench samplers") and "--n" not in options:
        args += ["--n", "10"]
    if command == "bench samplers" and "--nfe" not in options:
        args += ["--nfe", "2"]
    before = _snapshot(tiny_run)
    r = runner.invoke(app, args)
    event(f"{command}: exit {r.exit_code}")
    assert r.exit_code in (0, 2), (args, r.exit_code, r.output)
    if r.exit_code == 2:
        assert "Traceback" not in r.output
        lines = [line for line in r.output.splitlines() if line.startswith("error:") or line.startswith("Error:")
                 or "Error" in line]
        assert lines, (args, r.output)
        assert _snapshot(tiny_run) == before, args
        assert not any(p.name.startswith("s.") for p in work.rglob("*")), args
    # restore what a successful eval or bench wrote, so every example starts from the same run
    for extra in ("eval.json", "eval.md", "bench_samplers.json", "bench_samplers.md", "bench_samplers.png"):
        (tiny_run / extra).unlink(missing_ok=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(["train.steps", "train.batch_size", "train.lr", "model.channels",
                                                 "model.channel_mult", "model.attention_levels", "model.kind",
                                                 "model.class_conditional", "model.patch_size", "diffusion.path",
                                                 "diffusion.prediction", "diffusion.weighting", "diffusion.coupling",
                                                 "data.name", "train.grad_clip", "train.ema_decay", "bogus", "train.device"]),
                                st.sampled_from(["1", "2", "0", "-1", "3", "1e9", "[1]", "[1, 2]", "[0]", "[5]", "true", "nan",
                                                 '"mlp"', '"unet"', '"ncsn"', '"linear"', '"velocity"', '"elbo"', '"exact"',
                                                 '"toy"', '"cuda"', '"x"'])), max_size=4))
def test_random_training_commands_train_or_refuse_in_one_line_and_leave_no_folder(tmp_path, pairs):
    run = tmp_path / f"run{abs(hash(str(pairs))) % 10**8}"
    args = ["train", "digits", "--out", str(run), "--set", "train.steps=2", "--set", "model.channels=8",
            "--set", "model.num_res_blocks=1", "--set", "train.batch_size=16", "--set", "train.checkpoint_every=2"]
    for k, v in pairs:
        args += ["--set", f"{k}={v}"]
    r = runner.invoke(app, args)
    event(f"exit {r.exit_code}")
    assert r.exit_code in (0, 2), (args, r.output)
    if r.exit_code == 2:
        _one_error_line(r)
        assert not run.exists(), args
    else:
        assert dl.training.latest_valid_checkpoint(run)[0] is not None


# -- the README's jobs end to end -----------------------------------------------------------------

def test_the_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--out", str(out), "--n", "20", "--set", "train.steps=30", "--set", "model.channels=16",
                            "--set", "train.checkpoint_every=30"])
    assert r.exit_code == 0, r.output
    for f in ("samples.png", "reverse.gif", "loss.png", "report.md", "report.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 100, f
    report = json.loads((out / "report.json").read_text())
    preset = load_config("digits").sample
    assert report["train_steps"] == 30 and report["samples"] == 20
    assert report["nfe"] == dl.sampling.about(preset.sampler).nfe(preset.steps, preset.options)
    assert "Goal met" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()  # the page a new user opens first, with the demo's pictures and table
    assert str(out / "report.html") in r.output and "Goal met" in page and page.count("data:image/") >= 2


def test_image_sampling_end_to_end_grids_folders_labels(tmp_path):
    run = tmp_path / "cond"
    dl.training.train(load_config(TINY, ["model.class_conditional=true", "train.steps=4"]), run, progress=False)
    from PIL import Image

    r = runner.invoke(app, ["sample", str(run), "--n", "20", "--out", str(tmp_path / "grid.png")])  # every class in turn
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "grid.png").size == (16 * (10 * 9 + 1), 16 * (2 * 9 + 1))  # one column per class, 16x
    r = runner.invoke(app, ["sample", str(run), "--n", "5", "--label", "3", "--sampler", "dpmpp_2m@karras:rho=5", "--steps", "4",
                            "--out", str(tmp_path / "pngs")])
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(pngs) == 5 and Image.open(pngs[0]).size == (8, 8)
    r = runner.invoke(app, ["sample", str(run), "--n", "6", "--label", "3", "--out", str(tmp_path / "a.npz"), "--batch", "4"])
    assert r.exit_code == 0
    saved = np.load(tmp_path / "a.npz")
    assert saved["samples"].shape == (6, 1, 8, 8) and (saved["labels"] == 3).all()
    # the same samples whatever the batch size
    runner.invoke(app, ["sample", str(run), "--n", "6", "--label", "3", "--out", str(tmp_path / "b.npz"), "--batch", "6"])
    np.testing.assert_allclose(np.load(tmp_path / "b.npz")["samples"], saved["samples"], atol=1e-6)
    r = runner.invoke(app, ["sample", str(run), "--label", "10", "--out", str(tmp_path / "c.png")])
    assert r.exit_code == 2 and "not a class of this run" in _one_error_line(r)
    r = runner.invoke(app, ["sample", str(FIXTURES / "run_before_objectives"), "--n", "2", "--grid", "linspace", "--steps", "3",
                            "--out", str(tmp_path / "old.png")])
    assert r.exit_code == 0, r.output


def test_a_label_for_an_unconditional_model_is_refused(tiny_run, tmp_path):
    r = runner.invoke(app, ["sample", str(tiny_run), "--label", "3", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "unconditional" in _one_error_line(r) and not (tmp_path / "x.png").exists()


def test_an_interrupted_command_says_what_was_kept(tiny_run, tmp_path, monkeypatch):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dl.sampling, "sample_batched", interrupt)
    r = runner.invoke(app, ["sample", str(tiny_run), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 130 and "interrupted" in r.output and "Traceback" not in r.output


def test_derandomised_hypothesis_in_ci():
    from hypothesis import settings as current

    if os.environ.get("CI"):
        assert current.default.derandomize
