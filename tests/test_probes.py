"""The newest commands probed with bad input (restore, edit, distill, report, --nfe and sampler_choice.json, the
caches): each test stands for a class of mistake found by probing them, and every member of the class ends in one
line (exit 2), before any work, with nothing written and nothing of a run it uses touched."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import difflab as dl
from _cli import TINY, one_error_line, refused, runner, snapshot
from difflab.app.config import load_config
from difflab.app.trainer import train
from difflab.cli import app



@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny trained digits model (unconditional, DDPM's discrete path of T = 1000)."""
    root = tmp_path_factory.mktemp("probes")
    train(load_config("digits", TINY), root / "teacher", progress=False)
    return root / "teacher"


# -- a run never writes into a run it uses, and a plan is checked whole -------------------------------------------

def test_distill_never_writes_into_or_around_its_teacher(teacher, tmp_path):
    for method, out, extra in [("consistency", teacher / "student", []), ("consistency", teacher / "checkpoints" / "s", []),
                               ("reflow", teacher, []), ("progressive", teacher, ["--fresh"]),
                               ("consistency", teacher.parent, [])]:
        refused(["distill", teacher, "--method", method, "--out", out, *extra], "uses", folders=[teacher])
    # train itself: a student configuration whose folder lies inside its teacher
    values = json.loads((teacher / "config.json").read_text())
    cfg = load_config({**values, "kind": "consistency", "requires": {"teacher": str(teacher)}})
    before = snapshot(teacher)
    with pytest.raises(ValueError, match="inside the run"):
        train(cfg, teacher / "inner", progress=False)
    assert snapshot(teacher) == before


def test_every_round_of_a_distillation_is_checked_before_the_first_trains(teacher, tmp_path):
    """Progressive distillation from 3 steps to 1 trains a 2-step round into OUT-steps2, then OUT: a run of another
    configuration at OUT is refused before the first round starts."""
    out = tmp_path / "student"
    shutil.copytree(teacher, out)  # a diffusion run, not this student
    refused(["distill", teacher, "--method", "progressive", "--steps", "1", "--out", out], "different configuration",
            folders=[teacher, out])
    assert not (tmp_path / "student-steps2").exists()
    refused(["distill", teacher, "--method", "consistency", "--steps", "4096", "--out", tmp_path / "c"], "at most T=1000",
            "--steps", folders=[teacher])
    assert not (tmp_path / "c").exists()


def test_a_resumed_student_follows_a_changed_step_count_and_says_so(teacher, tmp_path):
    out = tmp_path / "s"
    assert runner.invoke(app, ["distill", str(teacher), "--steps", "1", "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["distill", str(teacher), "--steps", "4", "--out", str(out)])
    assert r.exit_code == 0 and "sample.steps: 1 -> 4" in r.output, r.output
    assert json.loads((out / "config.json").read_text())["sample"]["steps"] == 4
    r = runner.invoke(app, ["sample", str(out), "--n", "2", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 0 and int(np.load(tmp_path / "s.npz")["nfe"]) == 4, r.output


# -- a valid request is validated whole before any work ----------------------------------------------------------

def test_the_nfe_budget_is_never_exceeded(teacher, tmp_path):
    out = tmp_path / "x.npz"
    refused(["sample", teacher, "--nfe", "1", "--sampler", "ode_rk4", "--out", out], "--nfe 1", "cost 3", out=out)
    refused(["sample", teacher, "--nfe", "1", "--sampler", "ode_rk45", "--out", out], "adaptive", out=out)
    refused(["sample", teacher, "--nfe", "1", "--sampler", "annealed_langevin", "--out", out], "--nfe 1", out=out)
    refused(["sample", teacher, "--nfe", "5", "--sampler", "annealed_langevin:steps_per_level=10", "--out", out], "cost 11",
            out=out)
    with pytest.raises(ValueError, match="cost 3"):
        dl.sampling.steps_for_nfe("ode_rk4", 2)
    r = runner.invoke(app, ["sample", str(teacher), "--nfe", "3", "--sampler", "ode_heun", "--n", "2", "--out", str(out)])
    assert r.exit_code == 0 and int(np.load(out)["nfe"]) <= 3, r.output


@pytest.mark.parametrize("damage", [{"value": float("nan")}, {"value": float("inf")}, {"n": -5}, {"n": 0}, {"n": True},
                                    {"quality": ""}, {"candidates": -1}, {"nfe": 0}])
def test_a_hand_damaged_sampler_choice_is_refused_with_the_fix(teacher, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(teacher, run)
    good = {"quality": "fd", "n": 100, "seed": 0, "floor": 0.1,
            "budgets": {"3": {"spec": "ddim", "value": 0.5, "nfe": 3, "candidates": 2}}}
    bad = json.loads(json.dumps(good))
    for key, value in damage.items():
        (bad if key in ("n", "quality") else bad["budgets"]["3"])[key] = value
    (run / "sampler_choice.json").write_text(json.dumps(bad))  # NaN and Infinity as Python's json writes them
    refused(["sample", run, "--nfe", "3", "--out", tmp_path / "x.png"], "sampler_choice.json is damaged", folders=[run])
    (run / "sampler_choice.json").write_text(json.dumps(good))
    assert runner.invoke(app, ["sample", str(run), "--nfe", "3", "--n", "2", "--out", str(tmp_path / "x.png")]).exit_code == 0


def _png(path, width, height, mode="L"):
    Image.new(mode, (width, height), 128).save(path)
    return path


def test_an_observation_is_taken_as_it_is_or_refused(teacher, tmp_path):
    """The run's images are 8x8: an sr observation (factor 2) is 4x4, any other task's 8x8; nothing is resized."""
    out = tmp_path / "r.png"
    full, thin, dot = _png(tmp_path / "full.png", 8, 8), _png(tmp_path / "thin.png", 40, 10), _png(tmp_path / "dot.png", 1, 1)
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(huge)  # 100 million pixels, refused from its header before decoding
    refused(["restore", teacher, "--task", "sr", "--image", full, "--out", out], "is 8x8 pixels", "low-resolution", "4x4",
            folders=[teacher], out=out)
    for image in (thin, dot):
        for task in ("inpaint", "sr", "deblur"):
            refused(["restore", teacher, "--task", task, "--image", image, "--out", out], "pixels", folders=[teacher], out=out)
    r = runner.invoke(app, ["restore", str(teacher), "--image", str(huge), "--out", str(out)])
    assert r.exit_code == 2 and "more than" in one_error_line(r) and "DecompressionBomb" not in r.output, r.output
    small = _png(tmp_path / "small.png", 4, 4)
    r = runner.invoke(app, ["restore", str(teacher), "--task", "sr", "--image", str(small), "--n", "1", "--steps", "2",
                            "--out", str(tmp_path / "r.npz")])
    assert r.exit_code == 0 and np.load(tmp_path / "r.npz")["restorations"].shape == (1, 1, 8, 8), r.output
    # edit resizes an image of another size, and says so
    r = runner.invoke(app, ["edit", str(teacher), "--image", str(thin), "--n", "1", "--steps", "2", "--out",
                            str(tmp_path / "e.npz")])
    assert r.exit_code == 0 and "40x10 pixels" in r.output and "proportions not kept" in r.output, r.output


def test_every_option_is_checked_even_where_it_does_not_apply(teacher, tmp_path):
    out = tmp_path / "r.png"
    for blur in ("nan", "inf", "-1", "0"):
        refused(["restore", teacher, "--task", "inpaint", "--blur", blur, "--test-images", "1", "--out", out], "--blur",
                folders=[teacher], out=out)
    for command in (["sample", teacher], ["restore", teacher, "--test-images", "1"], ["edit", teacher, "--test-images", "1"]):
        refused([*command, "--out", ""], "empty path", folders=[teacher])
    refused(["sample", "", "--out", out], "empty path")
    for spec, fragment in [("ddim:eta=1e300", "[0, 1]"), ("ddim:eta=nan", "finite"), ("dpmpp_2m_sde:eta=inf", "finite")]:
        refused(["sample", teacher, "--sampler", spec, "--out", out], fragment, out=out)
    refused(["report", teacher, "--seed", str(2**70)], "--seed", folders=[teacher])
    refused(["demo", "--seed", str(2**70), "--out", tmp_path / "demo"], "--seed", out=tmp_path / "demo")


def test_long_requests_are_held_to_the_path(teacher, tmp_path):
    """A discrete path of T = 1000 times has no more to visit: every grid takes at most T steps (a restore with
    100,000 karras steps or a RePaint of 5,000 would otherwise run for minutes)."""
    out = tmp_path / "r.png"
    for extra in (["--steps", "100000", "--grid", "karras"], ["--steps", "1001", "--grid", "log_snr"],
                  ["--method", "repaint", "--steps", "5000", "--grid", "karras"]):
        refused(["restore", teacher, "--test-images", "1", *extra, "--out", out], "at most T=1000", folders=[teacher], out=out)
    path = dl.paths.DiscreteVP.linear(10)
    for grid in dl.samplers.grids.GRIDS:
        assert len(dl.samplers.grids.make_grid(grid, path, 10)) == 11
        with pytest.raises(ValueError, match="at most T=10"):
            dl.samplers.grids.make_grid(grid, path, 11)


# -- what a run folder holds is never trusted blindly ------------------------------------------------------------

def test_a_report_escapes_every_value_it_shows(teacher, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(teacher, run)
    mark = "<script>alert(1)</script>"
    ckpt = dl.training.latest_checkpoint(run)
    state = json.loads((ckpt / "state.json").read_text())
    state.update(step=mark, budget_seconds=mark)
    (ckpt / "state.json").write_text(json.dumps(state))
    (run / "checkpoints" / mark.replace("/", "_")).mkdir()  # a stray folder named with markup
    (run / "checkpoints" / "list").mkdir()
    (run / "checkpoints" / "list" / "state.json").write_text("[1, 2]")  # a state that is not an object
    (run / "eval.md").write_text(f"# {mark}\n\n| a | b |\n|---|---|\n| {mark} | <img src=x onerror=alert(1)> |\n")
    with open(run / "log.csv", "a") as f:
        f.write(f"1e400,{mark},nan,0,1\n")  # a step no float holds, a loss that is markup
    values = json.loads((run / "config.json").read_text())
    values["name"] = mark
    (run / "config.json").write_text(json.dumps(values))
    r = runner.invoke(app, ["report", str(run), "--n", "4"])
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;" in page


def test_a_damaged_cache_is_computed_again(tmp_path, monkeypatch):
    from difflab.app.cache import cache_file, cached

    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    calls = []

    def compute():
        calls.append(1)
        return {"x0": torch.ones(4, 2), "z": torch.zeros(4, 2)}

    shapes = {"x0": (4, 2), "z": (4, 2)}
    assert torch.equal(cached("reflow", "k", compute, shapes)["x0"], torch.ones(4, 2)) and len(calls) == 1
    cached("reflow", "k", compute, shapes)
    assert len(calls) == 1  # read back
    from safetensors.torch import save_file

    for damaged in ({"x0": torch.ones(4, 2)}, {"x0": torch.ones(3, 2), "z": torch.zeros(3, 2)},
                    {"x0": torch.full((4, 2), math.nan), "z": torch.zeros(4, 2)}):
        save_file(damaged, str(cache_file("reflow", "k")))
        out = cached("reflow", "k", compute, shapes)
        assert set(out) == {"x0", "z"} and torch.equal(out["x0"], torch.ones(4, 2))
    assert len(calls) == 4
    cache_file("reflow", "k").write_bytes(b"\x80\x02 not a tensor file")
    assert torch.equal(cached("reflow", "k", compute, shapes)["z"], torch.zeros(4, 2)) and len(calls) == 5
