"""`difflab eval` and NCSN end to end on tiny runs: the figures are written, consistent and honest."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from difflab.cli import app
from difflab.config import load_config
from difflab.evaluate import run_nll

runner = CliRunner()


def _train(tmp_path, preset, *overrides, steps=200):
    run = tmp_path / preset
    cfg = load_config(preset, [f"train.steps={steps}", "train.checkpoint_every=1000", "data.toy_size=4000", *overrides])
    dl.training.train(cfg, run, progress=False)
    return run


def test_eval_nll_and_elbo_write_a_report(tmp_path):
    run = _train(tmp_path, "toy2d", "diffusion.T=100")
    r = runner.invoke(app, ["eval", str(run), "--nll", "--elbo", "--n", "200", "--batch", "100"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval.json").read_text())["likelihood"]
    assert res["n"] == 200 and res["method"] == "exact" and res["command"].startswith("difflab eval")
    # the held-out points' true entropy: eight well-separated N(m_k, 0.2^2 I) (7.6 std apart), log 8 + log(2 pi e 0.04)
    exact = math.log(8) + math.log(2 * math.pi * math.e * 0.04)
    assert abs(res["entropy_nats"] - exact) < 4 * res["entropy_nats_se"], (res["entropy_nats"], exact)
    # the NLL is the model's own probability-flow likelihood of those points, computed here by the library directly
    den, path, _ = dl.load(run, clip=False)
    from difflab.evaluate import held_out

    x, _, _ = held_out(run, n=200)
    # (in the same batches of 100: the adaptive solver's steps are chosen per batch)
    direct = -torch.cat([dl.log_likelihood(den, path, xb, method="exact", t_start=path.t_min) for xb in x.split(100)]).mean()
    assert abs(res["nll_nats"] - float(direct)) < 1e-4
    # a model's NLL exceeds the true entropy (KL >= 0) by far more than its standard error after 200 steps
    assert res["kl_gap_nats"] > 3 * res["kl_gap_nats_se"]
    assert res["nelbo_nats"] > res["entropy_nats"]  # the ELBO bounds the model's likelihood from below
    assert "KL gap" in (run / "eval.md").read_text()
    r = runner.invoke(app, ["eval", str(run)])
    assert r.exit_code == 2 and "--nll" in r.output


def test_eval_of_an_image_run_reports_bits_per_dim(tmp_path):
    run = _train(tmp_path, "digits", "model.channels=8", "model.num_res_blocks=1", "train.batch_size=16", steps=5)
    res = run_nll(run, n=4, batch_size=4, method="hutchinson", rtol=1e-3, atol=1e-3, with_elbo=True, elbo_terms=3,
                  progress=False)
    # (the conversion to bits/dim is checked against exact answers in test_likelihood.py)
    assert 0 < res["elbo_bpd"] and 0 < res["bpd"] < 20 and res["n"] == 4 and res["method"] == "hutchinson"


@pytest.mark.slow  # a training run of ~10 s
def test_ncsn_preset_trains_and_samples_with_annealed_langevin(tmp_path):
    run = _train(tmp_path, "ncsn2d", "data.toy_size=20000", steps=1000)
    den, path, cfg = dl.load(run)
    assert isinstance(path, dl.paths.DiscreteVE) and path.T == 10
    assert cfg.sample.options == {"steps_per_level": 100}
    x = dl.sample(den, path, (2000, 2), sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                  generator=torch.Generator().manual_seed(0), steps_per_level=40)
    data = dl.data.toy_density("eight_gaussians")
    ref = data.sample(2000, torch.Generator().manual_seed(1)).float()
    floor = float(dl.metrics.sliced_wasserstein(data.sample(2000, torch.Generator().manual_seed(2)).float(), ref))
    sw = float(dl.metrics.sliced_wasserstein(x, ref))
    assert sw < 3 * floor + 0.05, (sw, floor)  # measured: 0.064 against a floor of 0.062 after 5000 steps
    shares = torch.bincount(data.classify(x.double()), minlength=8).float() / len(x)
    assert float(shares.min()) > 0.06  # every mode found (1/8 = 0.125 each)


@pytest.mark.slow  # a training run of ~10 s
def test_one_trained_ve_model_samples_with_every_score_sde_sampler(tmp_path):
    """Same trained model, any sampler: reverse-SDE Euler-Maruyama, predictor-corrector, probability flow."""
    run = _train(tmp_path, "toy2d", 'diffusion.path="ve"', 'diffusion.prediction="eps"', "data.toy_size=20000",
                 "diffusion.sigma_max=10.0", steps=1500)
    den, path, _ = dl.load(run)
    data = dl.data.toy_density("eight_gaussians")
    ref = data.sample(2000, torch.Generator().manual_seed(1)).float()
    out = {}
    for sampler, steps in (("euler_maruyama", 200), ("pc", 100), ("ode_heun", 50), ("ode_rk45", None)):
        out[sampler] = dl.sample(den, path, (2000, 2), sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
        sw = float(dl.metrics.sliced_wasserstein(out[sampler], ref))
        # measured after 1500 steps: 0.14 (SDEs) and 0.27 (the model's probability flow, any ODE solver; the SDEs
        # correct part of the score error, the flow does not); an untrained model is above 1
        assert sw < (0.2 if sampler in ("euler_maruyama", "pc") else 0.35), (sampler, sw)
    # from the same noise, two ODE solvers follow the same probability flow to the same points
    assert float((out["ode_heun"] - out["ode_rk45"]).norm(dim=1).median()) < 0.02


def test_eval_sample_metrics_on_a_toy_run_sit_above_their_floors(tmp_path):
    run = _train(tmp_path, "toy2d", "diffusion.T=100", steps=100)
    r = runner.invoke(app, ["eval", str(run), "--metrics", "w2,sw,mmd,energy,nll_samples", "--n", "300",
                            "--sampler", "ddim", "--steps", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "eval.json").read_text())["samples: ddim, 1 steps, log_snr grid"]  # the preset's grid
    assert res["nfe"] == 1 and res["n"] == 300
    for m in ("w2", "sw", "energy", "mmd"):  # one DDIM step lands on the mean: far above the floor
        assert res[m] > 1.5 * res[m + "_floor"] > 0, (m, res[m], res[m + "_floor"])
    assert res["nll_samples"] > res["nll_samples_floor"]
    assert "Frechet" not in (run / "eval.md").read_text() and "W2 (exact)" in (run / "eval.md").read_text()
    r = runner.invoke(app, ["eval", str(run), "--metrics", "fid"])
    assert r.exit_code != 0 and "image metrics" in r.output
    r = runner.invoke(app, ["eval", str(run), "--metrics", "fidd"])
    assert r.exit_code != 0 and "unknown metric" in r.output


def test_eval_image_metrics_of_a_class_conditional_digits_run(tmp_path):
    run = _train(tmp_path, "digits", "model.channels=8", "model.num_res_blocks=1", "train.batch_size=16",
                 "model.class_conditional=true", steps=5)
    from difflab.evaluate import run_sample_metrics

    res = run_sample_metrics(run, ["fid", "prdc"], sampler="ddim", steps=3, n=40, batch_size=20)
    assert res["nfe"] == 3 and len(res["class_fractions"]) == 10 and res["grid"] == "trailing"  # a discrete path's default
    assert res["fd"] > 3 * res["fd_floor"]  # 5 training steps: nothing like digits
    assert res["recall"] < 0.5 * res["recall_floor"] and 0 <= res["accuracy"] <= 1
    r = runner.invoke(app, ["eval", str(run), "--metrics", "fid", "--sampler", "ddim", "--steps", "3", "--grid", "karras",
                            "--n", "20"])
    assert r.exit_code == 0, r.output
    assert "3 steps on the karras grid" in (run / "eval.md").read_text()
    r = runner.invoke(app, ["eval", str(run), "--metrics", "fid", "--steps", "3", "--grid", "karas", "--n", "20"])
    assert r.exit_code == 2 and "unknown grid 'karas'" in r.output


def test_sampler_specs():
    from difflab.sampling import SamplerSpec, parse_sampler_spec

    assert parse_sampler_spec("ddim") == SamplerSpec("ddim", None, {}, {}, "ddim")
    spec = parse_sampler_spec("unipc@karras:variant=bh1:order=3:rho=5")
    assert (spec.sampler, spec.grid, spec.options, spec.grid_options) == ("unipc", "karras", {"variant": "bh1", "order": 3},
                                                                         {"rho": 5})
    assert parse_sampler_spec("ddim:eta=0.5").options == {"eta": 0.5} and parse_sampler_spec("ddim:eta=0.5").stochastic
    assert not parse_sampler_spec("ddim").stochastic and parse_sampler_spec("pc").stochastic
    assert parse_sampler_spec("pc:corrector_steps=2").steps_for_nfe(12) == {"steps": 4}  # 3 evaluations per step
    for bad, message in [("unipc:bh1", "key=value"), ("dpm", "unknown sampler 'dpm'"), ("ddim@karas", "unknown grid 'karas'"),
                         ("ddim:rho=3", "neither an option of ddim"), ("ddim@uniform:rho=3", "nor of the uniform grid"),
                         ("ddim:eta=fast", "must be a number"), ("", "name")]:
        with pytest.raises(ValueError, match=message):
            spec = parse_sampler_spec(bad)
            dl.sampling.sample(lambda x, t: x, dl.paths.VP(), (2, 2), steps=2, **spec.kwargs())


def test_bench_samplers_table_and_the_same_answers_as_diffusers(tmp_path):
    run = _train(tmp_path, "toy2d", "diffusion.T=100", steps=100)
    r = runner.invoke(app, ["bench", "samplers", str(run), "--nfe", "4,10,150", "--n", "200", "--samplers",
                            "ddim,dpmpp_2m,dpmpp_2m_sde,unipc,ode_heun,ddim@trailing,ddim@leading,unipc:variant=bh1,unipc@leading:order=3",
                            "--diffusers"])
    assert r.exit_code == 0, r.output
    res = json.loads((run / "bench_samplers.json").read_text())
    assert (run / "bench_samplers.png").is_file() and "| ddim | difflab | 4 |" in (run / "bench_samplers.md").read_text()
    rows = {(row["sampler"], row["nfe_budget"]): row for row in res["rows"]}
    assert "error" in rows[("ddim", 150)] and "error" in rows[("diffusers DDIM", 150)]  # T = 100 steps at most
    for nfe in (4, 10):
        assert rows[("ode_heun", nfe)]["nfe"] <= nfe
        # the same start, the same trailing grid, the same update: the same samples as diffusers (when the steps
        # divide T: diffusers' DDIM steps back by T // N, not to the grid's next time, and differs otherwise)
        assert abs(rows[("ddim", nfe)]["W2"] - rows[("diffusers DDIM", nfe)]["W2"]) < 1e-4
        assert abs(rows[("dpmpp_2m", nfe)]["W2"] - rows[("diffusers DPM-Solver++", nfe)]["W2"]) < 1e-4
        assert abs(rows[("unipc", nfe)]["W2"] - rows[("diffusers UniPC", nfe)]["W2"]) < 1e-4
        assert abs(rows[("dpmpp_2m_sde", nfe)]["W2"] - rows[("diffusers SDE-DPM-Solver++", nfe)]["W2"]) < 1e-4  # same noise
        assert len({rows[(s, nfe)]["W2"] for s in ("unipc", "unipc:variant=bh1", "unipc@leading:order=3")}) == 3
        assert rows[("ddim@trailing", nfe)]["W2"] == rows[("ddim", nfe)]["W2"]  # trailing is the default grid here
        assert rows[("ddim@leading", nfe)]["W2"] != rows[("ddim", nfe)]["W2"]
    assert res["floor"] > 0
    # --append adds budgets to the same table (a rerun sampler and budget replaces its row, nothing else moves)
    r = runner.invoke(app, ["bench", "samplers", str(run), "--nfe", "20,10", "--n", "200", "--samplers", "ddim", "--append"])
    assert r.exit_code == 0, r.output
    res2 = json.loads((run / "bench_samplers.json").read_text())
    rows2 = {(row["sampler"], row["nfe_budget"]): row for row in res2["rows"]}
    assert set(rows2) == set(rows) | {("ddim", 20)} and len(res2["rows"]) == len(res["rows"]) + 1
    assert [row["nfe_budget"] for row in res2["rows"]] == sorted(row["nfe_budget"] for row in res2["rows"])
    assert rows2[("ddim", 10)]["W2"] == rows[("ddim", 10)]["W2"]  # the same starting noise: the same samples
    assert rows2[("unipc", 4)] == rows[("unipc", 4)] and res2["floor"] == res["floor"]
    assert "| ddim | difflab | 20 |" in (run / "bench_samplers.md").read_text()
    r = runner.invoke(app, ["bench", "samplers", str(run), "--nfe", "20", "--n", "100", "--samplers", "ddim", "--append"])
    assert r.exit_code == 2 and "n=200, seed=0" in r.output and "--n 200" in r.output


def test_over_seeds_averages_each_job_and_spreads_the_fds():
    """One row per (library, sampler, budget) from rows of several seeds: means, the sample standard deviation
    (n - 1) and the values, failed rows left out; a single seed has spread 0."""
    import statistics

    seeds = [[{"library": "difflab", "sampler": "a", "nfe_budget": 10, "nfe": 10, "fd": v, "fd_b": 2 * v, "precision": 0.5},
              {"library": "diffusers", "sampler": "a", "nfe_budget": 10, "error": "failed"},
              {"library": "difflab", "sampler": "a", "nfe_budget": 20, "nfe": 20, "fd": v / 2}] for v in (1.0, 2.0, 4.0)]
    rows = dl.bench.over_seeds(seeds)
    assert [(r["library"], r["nfe_budget"]) for r in rows] == [("difflab", 10), ("difflab", 20)]
    r10, r20 = rows
    assert r10["fd"] == pytest.approx(7 / 3) and r10["fd_b"] == pytest.approx(14 / 3) and r10["precision"] == 0.5
    assert r10["fd_std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0])) and r10["fd_per_seed"] == [1.0, 2.0, 4.0]
    assert r10["seeds"] == 3 and r20["fd"] == pytest.approx(7 / 6) and "fd_b_std" not in r20
    one = dl.bench.over_seeds(seeds[:1])
    assert one[0]["fd_std"] == 0.0 and one[0]["seeds"] == 1
