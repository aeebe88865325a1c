"""Few-step generation against exact teachers: the progressive-distillation target is the exact two-step DDIM map, the
exact consistency function of a Gaussian is where the consistency loss vanishes, consistency sampling with it draws
the Gaussian, reflow pairs noise with the teacher's ODE ends; and (slow) 2-D students of exact teachers reach their
teachers' distribution."""

import numpy as np
import pytest
import torch

import difflab as dl
from difflab import distillation as D

from conftest import gen, test_mixture

PATHS = {"VP": dl.paths.VP(), "DiscreteVP": dl.paths.DiscreteVP.linear(100), "Linear": dl.paths.Linear(), "VE": dl.paths.VE()}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_the_progressive_target_is_the_teachers_two_ddim_steps_in_one(name):
    path, mix = PATHS[name], test_mixture()
    teacher = mix.denoiser(path)
    t, mid, nxt = D.student_times(path, 5)
    for k in (4, 2, 0):  # the last: down to t = 0
        x_t = path.perturb(mix.sample(6, gen(1), dtype=torch.float64), t[k], torch.randn(6, 2, generator=gen(2), dtype=torch.float64))
        two = dl.samplers.ddim(teacher, path, x_t, torch.tensor([t[k], mid[k], nxt[k]]))
        target = D.two_step_target(teacher, path, x_t, t[k].expand(6), mid[k].expand(6), nxt[k].expand(6))
        one = dl.samplers.ddim(lambda x, s: target, path, x_t, torch.tensor([t[k], nxt[k]]))
        torch.testing.assert_close(one, two, atol=1e-9, rtol=1e-9)


def test_student_grids_lie_on_a_discrete_path_and_need_twice_their_steps():
    path = dl.paths.DiscreteVP.linear(100)
    t, mid, nxt = D.student_times(path, 8)
    for v in (t, mid, nxt):
        assert torch.equal(v, torch.round(v * 100) / 100)
    assert float(t[-1]) == 1.0 and float(nxt[0]) == 0.0 and bool((mid < t).all() and (nxt < mid).all())
    with pytest.raises(ValueError, match="teacher of 128"):
        D.student_times(path, 64)


def test_the_progressive_loss_vanishes_at_its_target():
    """A student whose x0 prediction is the target itself (computed from its own t) has zero loss: the objective uses
    the two-step target at the times it draws."""
    path, mix = PATHS["DiscreteVP"], test_mixture()
    teacher = mix.denoiser(path)
    objective = D.ProgressiveObjective(teacher, path, 4, prediction="x0")
    t, mid, nxt = D.student_times(path, 4)

    def student(x, s):
        k = torch.searchsorted(t, s.double().clamp_max(1.0) - 1e-9)
        return D.two_step_target(teacher, path, x, t[k], mid[k], nxt[k])

    loss = objective(student, {"x": mix.sample(64, gen(3), dtype=torch.float64)}, gen(4))
    assert loss.shape == (64,) and float(loss.abs().max()) < 1e-10
    off = objective(lambda x, s: student(x, s) + 0.1, {"x": mix.sample(64, gen(3), dtype=torch.float64)}, gen(4))
    assert float(off.min()) > 0.009  # 0.1^2, times a weight >= 1


def _exact_consistency(gauss, path, ts):
    """f*(x, t) = Phi_{t -> t_min}(x) / alpha(t_min), written as the x0-predicting network of a ConsistencyDenoiser."""
    t_min = float(ts[-1])
    f = D.ConsistencyDenoiser(None, path, t_min)
    a_min = float(path.alpha(torch.tensor(t_min, dtype=torch.float64)))

    def net(x, t):
        c = dl._checks.append_dims(f.skip(t), x.ndim).to(x)
        a = dl._checks.append_dims(path.alpha(t.double()), x.ndim).to(x)
        star = gauss.flow(x, t, torch.full_like(t, t_min), path) / a_min
        return torch.where(c < 1 - 1e-12, (star - c * x / a) / (1 - c).clamp_min(1e-12), torch.zeros_like(x))
    return net


@pytest.mark.parametrize("name", ["VP", "DiscreteVP", "VE"])
def test_the_consistency_loss_vanishes_at_the_exact_consistency_function_of_a_gaussian(name):
    """With the teacher's step the exact flow map (a Gaussian's probability flow is linear), the exact consistency
    function f*(x, t) = Phi_{t -> t_min}(x) / alpha(t_min) has zero loss, and any other function a positive one."""
    path = PATHS[name]
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    ts = D.consistency_grid(path, 10)
    nxt = {round(float(a), 12): float(b) for a, b in zip(ts[:-1], ts[1:])}

    def exact_step(x, t):  # the x0 whose DDIM step t -> s is the exact flow map (`two_step_target`'s formula)
        s = torch.tensor([nxt[round(float(v), 12)] for v in t], dtype=torch.float64)
        a_t, s_t, a_s, s_s = (dl._checks.append_dims(f(u), 2) for f, u in ((path.alpha, t), (path.sigma, t), (path.alpha, s),
                                                                             (path.sigma, s)))
        return (gauss.flow(x, t, s, path) - (s_s / s_t) * x) / (a_s - (s_s / s_t) * a_t)

    for distance in ("l2", "pseudo_huber"):
        objective = D.ConsistencyObjective(path, prediction="x0", teacher=exact_step, steps=10, mu=0.0, distance=distance)
        model = D.ConsistencyModel(torch.nn.Linear(1, 1))
        net = _exact_consistency(gauss, path, ts)
        model.online = model.target = _Wrapped(net)
        x = gauss.sample(256, gen(5), dtype=torch.float64)
        assert float(objective(model, {"x": x}, gen(6)).abs().max()) < 1e-7, distance
        model.online = _Wrapped(lambda x, t: net(x, t) * 1.05)
        assert float(objective(model, {"x": x}, gen(6)).mean()) > 1e-4, distance


class _Wrapped(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, t, **cond):
        return self.fn(x, t)


def test_consistency_sampling_with_the_exact_function_draws_the_gaussian():
    path = PATHS["VP"]
    gauss = dl.oracles.Gaussian([1.0, -0.5], covariance=[[0.6, 0.2], [0.2, 0.3]])
    ts = D.consistency_grid(path, 40)
    den = D.ConsistencyDenoiser(dl.as_denoiser(_exact_consistency(gauss, path, ts), path, "x0"), path, float(ts[-1]))
    torch.testing.assert_close(den(torch.ones(3, 2, dtype=torch.float64), torch.tensor(float(ts[-1]))),
                               torch.ones(3, 2, dtype=torch.float64) / float(path.alpha(ts[-1])))  # the boundary
    for steps in (1, 3):
        grid = torch.cat([dl.samplers.grids.karras(path, steps)[:-1], torch.zeros(1, dtype=torch.float64)])
        x = dl.sample(den, path, (20000, 2), sampler="consistency", timesteps=grid, generator=gen(7), dtype=torch.float64)
        torch.testing.assert_close(x.mean(0), gauss.mean().reshape(-1), atol=0.03, rtol=0)
        torch.testing.assert_close(torch.cov(x.T), gauss.covariance(), atol=0.03, rtol=0)


def test_consistency_training_grows_its_grid_and_samples_noise_levels_lognormally():
    path = PATHS["VP"]
    objective = D.ConsistencyObjective(path, steps=(10, 80, 400), mu=0.0)
    sizes = [objective.grid_size(k) for k in (0, 99, 100, 199, 200, 300, 399, 10_000)]
    assert sizes == [11, 11, 21, 21, 41, 81, 81, 81]
    n, t, s = objective._pairs(D.consistency_grid(path, 40), 20000, gen(8))
    assert bool((t > s).all()) and 0 < float(n.float().std())
    levels = torch.log(path.sigma(t) / path.alpha(t))
    assert abs(float(levels.median()) - (-1.1)) < 0.6  # around P_mean
    model = D.ConsistencyModel(dl.nets.MLP(2, 16, 1))
    loss = objective(model, {"x": torch.randn(8, 2)}, gen(9))
    assert loss.shape == (8,) and int(model.count) == 1 and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is None for p in model.target.parameters()) and any(p.grad is not None for p in model.online.parameters())


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x, t, **cond):
        return self.lin(x)


def test_the_target_network_follows_the_student_at_its_rate():
    model = D.ConsistencyModel(_Linear())
    with torch.no_grad():
        for p in model.online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.target.parameters()]
    objective = D.ConsistencyObjective(PATHS["VP"], teacher=lambda x, t: x, steps=5, mu=0.9)
    objective(_Adapter(model), {"x": torch.randn(4, 2)}, gen(1))
    for b, p_t, p in zip(before, model.target.parameters(), model.online.parameters()):
        torch.testing.assert_close(p_t, 0.9 * b + 0.1 * p)


class _Adapter(torch.nn.Module):
    """A model handed over as DistributedDataParallel would (`.module`)."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def test_reflow_pairs_are_the_teachers_ode_from_their_noise():
    path, mix = PATHS["VP"], test_mixture()
    x0, z = D.reflow_pairs(mix.denoiser(path), path, 500, (2,), seed=3, sampler="dpmpp_2m", steps=20)
    again = dl.sample(mix.denoiser(path), path, x=z * float(path.sigma(torch.tensor(1.0))), sampler="dpmpp_2m", steps=20)
    torch.testing.assert_close(x0, again, atol=1e-5, rtol=0)
    floor, spread = dl.metrics.noise_floor(lambda a, b: dl.metrics.sliced_wasserstein(a, b), lambda k, g: mix.sample(k, g), 500, seeds=3)
    assert dl.metrics.sliced_wasserstein(x0, mix.sample(500, gen(4))) < floor + 4 * spread + 0.05
    with pytest.raises(ValueError, match="deterministic"):
        D.reflow_pairs(mix.denoiser(path), path, 10, (2,), sampler="ddpm", steps=5)
    data = dl.data.PairedData(x0, z)
    batch = data.batch(torch.arange(4))
    assert torch.equal(batch["noise"], z[:4])
    objective = dl.objectives.DiffusionObjective(dl.paths.Linear(), prediction="velocity")
    net = lambda x, t: torch.zeros_like(x)  # noqa: E731
    loss = objective(net, batch, gen(5))
    torch.testing.assert_close(loss, (z[:4] - x0[:4]).square().mean(1))  # the pairs' own velocity, z - x0


# -- students of exact teachers (slow) -------------------------------------------------------------------

def _fit(objective, model, data, steps=1500, lr=2e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = gen(11)
    for _ in range(steps):
        idx = torch.randint(len(data), (256,), generator=g)
        loss = objective(model, {"x": data[idx]}, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.slow
def test_two_d_students_of_an_exact_teacher_reach_its_distribution():
    mix = dl.oracles.ring_mixture(4, radius=2.0, std=0.3)
    path = dl.paths.VP()
    data = mix.sample(20000, gen(1))
    ref = mix.sample(3000, gen(2))
    floor, spread = dl.metrics.noise_floor(lambda a, b: dl.metrics.sliced_wasserstein(a, b), lambda k, g: mix.sample(k, g), 3000, seeds=3)
    teacher = mix.denoiser(path)
    # consistency distillation: 1 step
    cd = _fit(D.ConsistencyObjective(path, prediction="x0", teacher=teacher, steps=20, mu=0.95),
              D.ConsistencyModel(dl.nets.MLP(2, 128, 3)), data, steps=3000)
    den = D.ConsistencyDenoiser(dl.as_denoiser(cd.online, path, "x0"), path, float(D.consistency_grid(path, 20)[-1]))
    x = dl.sample(den, path, (3000, 2), sampler="consistency", steps=1, generator=gen(3))
    assert dl.metrics.sliced_wasserstein(x, ref) < floor + 0.1, "consistency distillation"
    # progressive distillation: 4 -> 2 steps, from a 4-step student distilled from the exact teacher
    student = _fit(D.ProgressiveObjective(teacher, path, 4, prediction="x0"), dl.nets.MLP(2, 128, 3), data)
    x = dl.sample(dl.as_denoiser(student, path, "x0"), path, (3000, 2), sampler="ddim", timesteps=torch.linspace(1, 0, 5),
                  generator=gen(4))
    assert dl.metrics.sliced_wasserstein(x, ref) < floor + 0.1, "progressive distillation"


# -- difflab distill and the student kinds --------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner

    from difflab.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from difflab.config import load_config

    root = tmp_path_factory.mktemp("distill")
    dl.training.train(load_config("toy2d", ["train.steps=300", "train.checkpoint_every=300", "data.toy_size=4000", "model.width=64",
                                            "sample.steps=8"]), root / "teacher", progress=False)
    dl.training.train(load_config("digits", ["kind=classifier", "model.channels=8", "model.channel_mult=[1]", "train.steps=1",
                                             "train.batch_size=16"]), root / "clf", progress=False)
    return root


TINY = ["--set", "train.steps=30", "--set", "train.checkpoint_every=30", "--set", "train.max_minutes=0"]


@pytest.mark.parametrize("method, steps, folders", [("consistency", 1, ["c"]), ("progressive", 2, ["c-steps4", "c"]),
                                                    ("reflow", 1, ["c-rectified", "c"]), ("reflow", 2, ["c"])])
def test_distill_trains_students_that_sample_in_their_steps(teacher, tmp_path, method, steps, folders):
    out = tmp_path / "c"
    r = _cli("distill", teacher / "teacher", "--method", method, "--steps", steps, "--out", out, *TINY,
             "--set", "reflow.pairs=500", "--set", "consistency.steps=6")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(folders)
    cfg = dl.runs.run_config(out)
    assert cfg.kind == method and cfg.sample.steps == steps and cfg.requires["teacher"]
    r = _cli("sample", out, "--n", 50, "--out", tmp_path / "s.npz")
    assert r.exit_code == 0 and f"{steps} network evaluations" in r.output, r.output
    assert np.isfinite(np.load(tmp_path / "s.npz")["samples"]).all()
    info = _cli("info", out)
    assert info.exit_code == 0 and "teacher" in info.output, info.output
    r = _cli("eval", out, "--metrics", "w2", "--n", 50)
    assert r.exit_code == 0, r.output
    before = {p: p.stat().st_mtime_ns for p in (teacher / "teacher").rglob("*")}
    r = _cli("distill", teacher / "teacher", "--method", method, "--steps", steps, "--out", out, *TINY,
             "--set", "reflow.pairs=500", "--set", "consistency.steps=6")
    assert r.exit_code == 0 and "30 steps" in r.output, r.output  # resumed: nothing more to do
    assert {p: p.stat().st_mtime_ns for p in (teacher / "teacher").rglob("*")} == before  # the teacher untouched


def test_a_student_starts_from_its_teachers_weights(teacher, tmp_path):
    r = _cli("distill", teacher / "teacher", "--method", "progressive", "--steps", 4, "--out", tmp_path / "p",
             "--set", "train.steps=1", "--set", "train.lr=1e-12", "--set", "train.checkpoint_every=1", "--set", "train.max_minutes=0")
    assert r.exit_code == 0, r.output
    a = dl.runs.load_network(teacher / "teacher")[0].state_dict()
    b = dl.runs.load_network(tmp_path / "p", ema=False)[0].state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_distill_refuses_what_it_cannot_do_in_one_line(teacher, tmp_path):
    cases = [(["--method", "bogus"], "--method"), (["--method", "diffusion"], "--method"), (["--steps", 0], "--steps"),
             (["--method", "progressive", "--set", "progressive.steps=0"], "progressive.steps")]
    for extra, fragment in cases:
        r = _cli("distill", teacher / "teacher", "--out", tmp_path / "x", *extra)
        assert r.exit_code == 2 and fragment in r.output and "Traceback" not in r.output, (extra, r.output)
    r = _cli("distill", teacher / "clf", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "holds a diffusion model" in r.output, r.output
    assert not (tmp_path / "x").exists()


def test_consistency_training_from_data_is_a_preset():
    from difflab.config import load_config

    cfg = load_config("toy2d_consistency")
    assert cfg.kind == "consistency" and "teacher" not in cfg.requires and cfg.sample.sampler == "consistency"
    with pytest.raises(ValueError, match="flow"):
        load_config("toy2d", ["kind=reflow", 'requires.teacher="x"'])
