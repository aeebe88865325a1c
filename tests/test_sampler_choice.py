"""The sampler a run uses when none is named: the best measured at the budget (app.sampler_choice)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from difflab.app.sampler_choice import FILE, measured, record, settle
from difflab.cli import app
from difflab.config import load_config
from difflab.sampling import steps_for_nfe

runner = CliRunner()
TABLE = {"5": "unipc@karras", "10": "ode_heun@karras", "20": "ddim:eta=0.5"}


def _cfg(*overrides):
    return load_config("toy2d", list(overrides))


def test_without_a_table_the_configuration_decides_as_before():
    cfg = _cfg("sample.sampler=dpmpp_2m", "sample.steps=12", "sample.grid=karras", "sample.grid_options={rho=5}")
    s = settle(cfg)
    assert s.kwargs == {"sampler": "dpmpp_2m", "steps": 12, "grid": "karras", "grid_options": {"rho": 5}} and s.source == "config"
    assert settle(cfg, steps=7).kwargs["steps"] == 7
    # a named sampler keeps its own grid and options, and --nfe gives it the most steps that fit
    s = settle(cfg, "ode_heun@uniform", nfe=9)
    assert s.kwargs["sampler"] == "ode_heun" and s.kwargs["grid"] == "uniform" and s.source == "named"
    assert s.kwargs["steps"] == steps_for_nfe("ode_heun", 9)["steps"]
    assert settle(cfg, "ode_rk45").kwargs["steps"] is None  # adaptive: no steps


def test_a_table_chooses_by_budget_and_runs_the_choice_as_measured():
    cfg = _cfg(*(f'sample.by_nfe.{k}="{v}"' for k, v in TABLE.items()), "sample.sampler=ddim", "sample.steps=20",
               "sample.grid=linspace")
    for budget, at in [(5, 5), (7, 5), (10, 10), (19, 10), (20, 20), (50, 20), (3, 5), (1, 5)]:
        spec = dl.sampling.parse_sampler_spec(TABLE[str(at)])
        for s in (settle(cfg, nfe=budget), settle(cfg, steps=budget)):  # no --sampler: --steps N is a budget
            assert s.kwargs["sampler"] == spec.sampler and s.source == "preset" and s.budget == budget
            assert s.kwargs["steps"] == steps_for_nfe(spec.sampler, budget, **spec.options)["steps"]
            assert s.kwargs["grid"] == spec.grid  # never the configuration's linspace: the choice runs as measured
            assert f"{at} NFE" in s.reason
    assert settle(cfg).kwargs["sampler"] == "ddim"  # the default budget: sample.steps
    assert settle(cfg, nfe=20).kwargs["eta"] == 0.5 and settle(cfg, nfe=10).kwargs["steps"] < 10  # Heun: 2 NFE a step
    # the user's grid overrides the choice's, and is named in the label
    s = settle(cfg, nfe=10, grid="uniform")
    assert s.kwargs["grid"] == "uniform" and s.label == "ode_heun@uniform"
    # a named sampler is taken as named
    assert settle(cfg, "ddim", steps=10).kwargs == {"sampler": "ddim", "steps": 10, "grid": "linspace", "grid_options": {}}


def test_the_spent_budget_never_exceeds_the_one_asked_for(tmp_path):
    cfg = _cfg(*(f'sample.by_nfe.{k}="{v}"' for k, v in TABLE.items()), "diffusion.T=100")
    path = dl.paths.VP()
    den = lambda x, t, **_: torch.zeros_like(x)  # noqa: E731 - any denoiser: only the counting matters here
    for budget in (1, 4, 5, 9, 10, 11, 20, 21):
        kw = settle(cfg, nfe=budget).kwargs
        _, info = dl.sampling.sample(den, path, (4, 2), return_info=True, generator=torch.Generator().manual_seed(0),
                                     **{**kw, "grid": kw["grid"] or "uniform"})
        assert 1 <= info.nfe <= budget


def test_record_keeps_the_best_difflab_sampler_per_budget_and_precedes_the_preset(tmp_path):
    rows = [{"sampler": "ddim", "library": "difflab", "nfe_budget": 10, "nfe": 10, "FD": 2.0},
            {"sampler": "unipc@karras", "library": "difflab", "nfe_budget": 10, "nfe": 10, "FD": 1.5},
            {"sampler": "diffusers UniPC", "library": "diffusers", "nfe_budget": 10, "nfe": 10, "FD": 0.1},
            {"sampler": "ode_rk4", "library": "difflab", "nfe_budget": 10, "error": "too few"},
            {"sampler": "ddim", "library": "difflab", "nfe_budget": 20, "nfe": 20, "FD": 0.9},
            {"sampler": "unipc@karras", "library": "difflab", "nfe_budget": 20, "nfe": 20, "FD": 1.1}]
    out = record(tmp_path, {"quality": "FD", "n": 500, "seed": 0, "floor": 0.05, "rows": rows})
    assert {b: v["spec"] for b, v in out["budgets"].items()} == {"10": "unipc@karras", "20": "ddim"}
    assert out["budgets"]["10"]["candidates"] == 2 and out["budgets"]["10"]["value"] == 1.5
    assert measured(tmp_path) == json.loads((tmp_path / FILE).read_text()) == json.loads(json.dumps(out))
    cfg = _cfg(*(f'sample.by_nfe.{k}="{v}"' for k, v in TABLE.items()))
    s = settle(cfg, nfe=20, folder=tmp_path)
    assert s.kwargs["sampler"] == "ddim" and "eta" not in s.kwargs and s.source == "measured" and "FD 0.9" in s.reason
    assert "500" in s.reason
    assert settle(cfg, nfe=20).kwargs["sampler"] == "ddim" and settle(cfg, nfe=20).source == "preset"  # no folder
    assert record(tmp_path / "none", {"quality": "FD", "n": 1, "rows": rows[2:4]}) == {}
    for bad in ("{not json", "[]", '{"budgets": {"10": {"spec": "ddim"}}}', json.dumps({**out, "n": "many"}),
                json.dumps({**out, "budgets": {"10": {"spec": "nosuch", "value": 1.0}}}), json.dumps({**out, "budgets": {}})):
        (tmp_path / FILE).write_text(bad)
        with pytest.raises(ValueError, match="damaged.*--record"):
            settle(cfg, folder=tmp_path)


@pytest.mark.parametrize("key, value, message", [("ten", "ddim", "not a number of network evaluations"),
                                                  ("0", "ddim", "not a number"), ("10", "nosuch", "nosuch"),
                                                  ("10", "ddim@nogrid", "nogrid"), ("10", 3, "sampler spec")])
def test_a_bad_table_is_refused_with_its_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        load_config({"sample": {"by_nfe": {key: value}}})


def test_steps_and_nfe_together_are_refused():
    from difflab.app.requests import EvalRequest, SampleRequest

    for request in (SampleRequest(steps=10, nfe=10), EvalRequest(steps=10, nfe=10)):
        with pytest.raises(ValueError, match="--steps and --nfe both given"):
            request.check()


def test_bench_record_then_sample_and_info_use_the_measured_choice(tmp_path):
    run = tmp_path / "toy"
    cfg = load_config("toy2d", ["train.steps=100", "train.checkpoint_every=1000", "data.toy_size=4000", "diffusion.T=100"])
    dl.training.train(cfg, run, progress=False)
    r = runner.invoke(app, ["bench", "samplers", str(run), "--nfe", "4,8", "--n", "200", "--samplers", "ddim,ode_heun,unipc",
                            "--record"])
    assert r.exit_code == 0, r.output
    bench = json.loads((run / "bench_samplers.json").read_text())
    best = {b: min((row for row in bench["rows"] if row["nfe_budget"] == b), key=lambda row: row["W2"])["sampler"] for b in (4, 8)}
    assert {int(b): v["spec"] for b, v in measured(run)["budgets"].items()} == best and "recorded:" in r.output
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and "measured on this run" in r.output and f"8 NFE: {best[8]}" in r.output
    r = runner.invoke(app, ["sample", str(run), "--nfe", "8", "--n", "50", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 0, r.output
    assert f"sampler: {best[8]}" in r.output and "measured on this run at 8 NFE" in r.output
    assert int(np.load(tmp_path / "s.npz")["nfe"]) <= 8
    r = runner.invoke(app, ["sample", str(run), "--nfe", "8", "--steps", "3", "--n", "5"])
    assert r.exit_code == 2 and "--steps and --nfe both given" in r.output
    r = runner.invoke(app, ["eval", str(run), "--metrics", "w2", "--nfe", "4", "--n", "100"])
    assert r.exit_code == 0, r.output
    report = json.loads((run / "eval.json").read_text())
    assert [r["sampler"] for r in report.values()] == [best[4]] and all(r["nfe"] <= 4 for r in report.values())
