"""Guidance against exact answers: a labelled Gaussian mixture gives the exact conditional denoiser of each class
and the exact p_t(c | x_t), so classifier and classifier-free guidance are checked to float precision, on every
path, through every sampler, and by their samples."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from conftest import ALL_PATHS, gen
from difflab.cli import app
from difflab.config import load_config

G = dl.guidance
MIX = dl.oracles.GaussianMixture([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.0], [0.5, -2.0]], [0.4, 0.6, 0.5, 0.3],
                                 [0.2, 0.3, 0.4, 0.1], labels=[0, 1, 0, 2])
TIMES = (0.05, 0.3, 0.6, 0.9)


def _xt(path, t, n=64, seed=0):
    return MIX.sample(n, gen(seed), path=path, t=t, dtype=torch.float64), torch.full((n,), t, dtype=torch.float64)


def test_the_labelled_oracle_is_bayes_rule():
    path = dl.paths.VP()
    x, t = _xt(path, 0.4)
    post = MIX.class_log_posterior(x, t, path).exp()
    assert torch.allclose(post.sum(1), torch.ones(len(x), dtype=torch.float64))
    # p_t(c | x) = p(c) p_t(x | c) / p_t(x), each from its own density
    for c in range(3):
        direct = MIX.class_weights()[c].log() + MIX.log_prob(x, t, path, label=c) - MIX.log_prob(x, t, path)
        torch.testing.assert_close(post[:, c].log(), direct)
        # the class's conditional denoiser is the denoiser of the class's own mixture
        torch.testing.assert_close(MIX.denoiser(path)(x, t, label=torch.full((len(x),), c)),
                                   MIX.class_mixture(c).denoiser(path)(x, t))
    torch.testing.assert_close(MIX.denoiser(path)(x, t, label=torch.full((len(x),), -1)), MIX.denoiser(path)(x, t))


@pytest.mark.parametrize("path_name", list(ALL_PATHS))
def test_classifier_guidance_at_w1_with_the_exact_classifier_is_the_exact_conditional_denoiser(path_name):
    """grad log p_t(x) + grad log p_t(c | x) = grad log p_t(x | c): to float precision, at every time."""
    path = ALL_PATHS[path_name]()
    guided = G.classifier(MIX.denoiser(path), path, MIX.classifier(path), 1.0)
    for t in TIMES:
        if float(path.alpha(torch.tensor(t))) <= 0:
            continue
        x, tt = _xt(path, t)
        label = torch.arange(len(x)) % 3
        torch.testing.assert_close(guided(x, tt, label=label), MIX.denoiser(path)(x, tt, label=label), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path_name", list(ALL_PATHS))
@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_classifier_free_guidance_is_the_weighted_score(path_name, w):
    """s_w = (1 + w) s(x | c) - w s(x) at every t; w = 0 is the conditional model itself."""
    path = ALL_PATHS[path_name]()
    guided = G.classifier_free(MIX.denoiser(path), w)
    for t in TIMES:
        x, tt = _xt(path, t, seed=1)
        label = torch.arange(len(x)) % 3
        score = dl.denoisers.score_from_denoiser(guided, path, x, tt, label=label)
        exact = (1 + w) * MIX.score(x, tt, path, label=label) - w * MIX.score(x, tt, path)
        torch.testing.assert_close(score, exact, rtol=1e-7, atol=1e-7 * float(exact.abs().max()))
        if w == 0:
            assert torch.equal(guided(x, tt, label=label), MIX.denoiser(path)(x, tt, label=label))


def test_a_negative_condition_replaces_the_unconditional_pass():
    path = dl.paths.Cosine()
    x, t = _xt(path, 0.5)
    c, neg = torch.zeros(len(x), dtype=torch.long), torch.full((len(x),), 1)
    d = MIX.denoiser(path)
    guided = G.classifier_free(d, 2.0, negative={"label": 1})
    torch.testing.assert_close(guided(x, t, label=c), d(x, t, label=c) + 2.0 * (d(x, t, label=c) - d(x, t, label=neg)))
    # steering away from class 1 moves the samples away from its mode
    xs = dl.sample(guided, path, (2000, 2), sampler="dpmpp_2m", steps=30, cond={"label": torch.zeros(2000, dtype=torch.long)},
                   generator=gen(2), dtype=torch.float64)
    plain = dl.sample(d, path, (2000, 2), sampler="dpmpp_2m", steps=30, cond={"label": torch.zeros(2000, dtype=torch.long)},
                      generator=gen(2), dtype=torch.float64)
    mode1 = MIX.means[1]
    assert float((xs - mode1).norm(dim=1).mean()) > float((plain - mode1).norm(dim=1).mean())


@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m", "ode_heun", "euler_maruyama", "unipc"])
def test_classifier_guided_samples_are_the_class_mixture(sampler):
    """Classifier guidance at w = 1 with the exact classifier samples p(x | c): the class's own mixture, within
    the sliced-W2 noise floor."""
    path = dl.paths.DiscreteVP.linear(1000)
    n, c = 4000, 0
    guided = G.classifier(MIX.denoiser(path), path, MIX.classifier(path), 1.0)
    x = dl.sample(guided, path, (n, 2), sampler=sampler, steps=200 if sampler in ("ddpm", "euler_maruyama") else 40,
                  cond={"label": torch.full((n,), c)}, generator=gen(3), dtype=torch.float64)
    target = MIX.class_mixture(c)
    ref = target.sample(n, gen(4), dtype=torch.float64)
    sw = dl.metrics.sliced_wasserstein(x, ref)
    floor, spread = dl.metrics.noise_floor(dl.metrics.sliced_wasserstein, lambda k, g: target.sample(k, g, dtype=torch.float64),
                                           n, seeds=5)
    assert sw < floor + 4 * spread + 0.01, (sampler, sw, floor, spread)
    assert sw < 0.5 * dl.metrics.sliced_wasserstein(MIX.sample(n, gen(5), dtype=torch.float64), ref)  # not the whole mixture


def test_classifier_guided_ddpm_step_is_the_notes_mean_shift():
    """One DDPM step (beta variance) with classifier guidance: mean mu + w beta_t / sqrt(1 - beta_t) grad log p_t(c | x_t),
    the notes' mu + w Sigma grad log p_t(c | x_t) with Sigma = beta_t, exact up to Dhariwal & Nichol's dropped
    1 / sqrt(1 - beta_t)."""
    path = dl.paths.DiscreteVP.linear(1000)
    clf = MIX.classifier(path)
    for i, w in ((50, 1.0), (400, 3.0), (900, 0.5)):
        t, s = i / 1000, (i - 1) / 1000
        st = dl.samplers.step_of(path, t, s)
        x, tt = _xt(path, t, seed=i)
        label = torch.arange(len(x)) % 3
        guided = G.classifier(MIX.denoiser(path), path, clf, w)
        z = torch.zeros_like(x)
        mean_g = dl.samplers.ddpm_step(x, guided(x, tt, label=label), st, "beta", noise=z)
        mean = dl.samplers.ddpm_step(x, MIX.denoiser(path)(x, tt), st, "beta", noise=z)
        xg = x.clone().requires_grad_(True)
        grad = torch.autograd.grad(clf(xg, tt, label).sum(), xg)[0]
        beta = float(path.betas[i - 1])
        torch.testing.assert_close(mean_g, mean + w * beta / math.sqrt(1 - beta) * grad, rtol=1e-9, atol=1e-12)


def test_nfe_doubles_where_two_passes_are_made_and_the_interval_saves_them():
    path = dl.paths.VP()
    net = dl.nets.MLP(2, 16, 1, num_classes=3)
    den = dl.as_denoiser(net, path, "eps")
    label = {"label": torch.arange(8) % 3}
    for batched in (True, False):
        _, info = dl.sample(G.classifier_free(den, 2.0, batched=batched), path, (8, 2), sampler="ddim", steps=6, cond=label,
                            return_info=True)
        assert info.nfe == 12
    ts = dl.samplers.grids.uniform(path, 6)
    levels = (path.sigma(ts) / path.alpha(ts))[:-1]
    lo, hi = float(levels[4]), float(levels[1])  # steps 1..4 of 0..5 inside
    guided = G.classifier_free(den, 2.0, path=path, interval=(lo, hi))
    _, info = dl.sample(guided, path, (8, 2), sampler="ddim", timesteps=ts, cond=label, return_info=True)
    assert info.nfe == 6 + 4
    # outside the interval the conditional denoiser, exactly
    x, t = torch.randn(8, 2), torch.full((8,), float(ts[0]))
    assert torch.equal(guided(x, t, **label), den(x, t, **label))
    # classifier guidance evaluates the denoiser once per step
    clf = G.as_classifier(dl.nets.MLP(2, 16, 1, out_dim=3))
    _, info = dl.sample(G.classifier(den, path, clf, 2.0), path, (8, 2), sampler="ddim", steps=6, cond=label, return_info=True)
    assert info.nfe == 6


def test_batched_and_two_call_guidance_agree_with_a_network():
    path = dl.paths.DiscreteVP.cosine(100)
    torch.manual_seed(0)
    net = dl.nets.UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1, num_classes=4)
    for p in net.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    den = dl.as_denoiser(net, path, "v")
    x, t, label = torch.randn(5, 1, 8, 8), torch.full((5,), 0.5), torch.tensor([0, 1, 2, 3, 0])
    a = G.classifier_free(den, 1.5)(x, t, label=label)
    b = G.classifier_free(den, 1.5, batched=False)(x, t, label=label)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # every output channel guided, batched or not
    assert not torch.allclose(a, den(x, t, label=label))


def test_guidance_rescale_and_dynamic_thresholding():
    path = dl.paths.VP()
    x, t = _xt(path, 0.5, n=32)
    label = torch.arange(32) % 3
    d = MIX.denoiser(path)
    assert torch.equal(G.classifier_free(d, 3.0, path=path, rescale=0.0)(x, t, label=label), G.classifier_free(d, 3.0)(x, t, label=label))
    full = G.classifier_free(d, 3.0, path=path, rescale=1.0)(x, t, label=label)
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    eps_c = (x - a * d(x, t, label=label)) / s
    eps = (x - a * full) / s
    torch.testing.assert_close(eps.std(dim=1), eps_c.std(dim=1))  # rescaled to the conditional prediction's spread
    # dynamic thresholding: in [-1, 1], and the identity on predictions already inside
    big = G.dynamic_threshold(lambda x, t: 3 * x, 0.9)(x, t)
    assert float(big.abs().max()) <= 1 + 1e-12
    inside = G.dynamic_threshold(lambda x, t: 0.5 * torch.tanh(x), 0.995)
    torch.testing.assert_close(inside(x, t), 0.5 * torch.tanh(x))
    with pytest.raises(ValueError, match="percentile"):
        G.dynamic_threshold(d, 1.5)
    with pytest.raises(ValueError, match="pass path="):
        G.classifier_free(d, 1.0, interval=(0.1, 1.0))
    with pytest.raises(ValueError, match="call the denoiser with label="):
        G.classifier_free(d, 1.0)(x, t)


def test_label_dropout_trains_the_null_label_at_its_rate_and_costs_nothing_without_it():
    seen = []

    def model(x_t, t, label):
        seen.append(label.clone())
        return torch.zeros_like(x_t)

    path = dl.paths.DiscreteVP.linear(100)
    batch = {"x": torch.randn(20000, 2), "label": torch.arange(20000) % 5}
    obj = dl.objectives.DiffusionObjective(path, conditions=("label",), p_uncond=0.2)
    obj(model, batch, gen(0))
    dropped = float((seen[-1] == -1).double().mean())
    assert abs(dropped - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000)
    assert torch.equal(seen[-1][seen[-1] >= 0], batch["label"][seen[-1] >= 0])  # the others keep their labels
    # without dropout no random number is drawn for it: the loss is what it was before p_uncond existed
    plain = dl.objectives.DiffusionObjective(path, conditions=("label",))
    a = plain(model, batch, gen(1))
    g = gen(1)
    t, z = dl.losses.UniformDiscrete(100)(20000, generator=g), torch.randn(batch["x"].shape, generator=g)
    torch.testing.assert_close(a, dl.losses.diffusion_loss(model, path, batch["x"], t=t, noise=z, cond={"label": batch["label"]}))
    with pytest.raises(ValueError, match="class-conditional"):
        dl.objectives.DiffusionObjective(path, p_uncond=0.1)
    with pytest.raises(ValueError, match="p_uncond drops class labels"):
        load_config("digits", ["diffusion.p_uncond=0.1"])


def test_the_classifier_objective_is_the_cross_entropy_at_x_t():
    path = dl.paths.VP()
    net = dl.nets.MLP(2, 16, 1, out_dim=3)
    x, y = torch.randn(50, 2), torch.randint(0, 3, (50,))
    loss = dl.objectives.ClassifierObjective(path)(net, {"x": x, "label": y}, gen(0))
    g = gen(0)
    t = dl.losses.Uniform(path.t_min)(50, generator=g)
    z = torch.randn(x.shape, generator=g)
    expected = torch.nn.functional.cross_entropy(net(path.perturb(x, t, z), t), y, reduction="none")
    torch.testing.assert_close(loss, expected)


runner = CliRunner()


def test_guidance_end_to_end_on_tiny_runs(tmp_path):
    base = ["model.channels=8", "model.num_res_blocks=1", "train.batch_size=32", "train.steps=6", "train.checkpoint_every=6",
            "diffusion.T=100"]
    cond, uncond, clf = tmp_path / "cond", tmp_path / "uncond", tmp_path / "clf"
    dl.training.train(load_config("digits", [*base, "model.class_conditional=true", "diffusion.p_uncond=0.2"]), cond, progress=False)
    dl.training.train(load_config("digits", base), uncond, progress=False)
    dl.training.train(load_config("digits", [*base, "kind=classifier"]), clf, progress=False)
    c, path, _ = dl.load(clf)
    assert c(torch.randn(3, 1, 8, 8), torch.full((3,), 0.5), torch.tensor([0, 1, 9])).shape == (3,)
    out = tmp_path / "s.npz"
    for args in (["sample", str(cond), "--guidance", "2", "--label", "3"],
                 ["sample", str(cond), "--guidance", "1", "--negative-label", "4", "--guidance-interval", "0.1,20"],
                 ["sample", str(uncond), "--classifier", str(clf), "--guidance", "3", "--label", "7"],
                 ["sample", str(uncond), "--dynamic-threshold", "0.99"],
                 ["sample", str(cond), "--guidance", "4", "--dynamic-threshold", "0.95", "--guidance-rescale", "0.7"]):
        r = runner.invoke(app, [*args, "--n", "4", "--steps", "3", "--out", str(out)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", str(cond), "--guidance", "2", "--n", "4", "--steps", "3", "--out", str(out)])
    assert r.exit_code == 0 and "6 network evaluations" in r.output  # two passes per step, 3 steps
    for args, message in ((["sample", str(uncond), "--guidance", "2"], "unconditional"),
                          (["sample", str(uncond), "--label", "2"], "unconditional"),
                          (["sample", str(cond), "--classifier", str(clf)], "--guidance W"),
                          (["sample", str(cond), "--guidance", "2", "--negative-label", "12"], "not a class"),
                          (["sample", str(uncond), "--classifier", str(cond), "--guidance", "2"], "is a diffusion run"),
                          (["sample", str(clf), "--n", "2"], "classifier run")):
        r = runner.invoke(app, [*args, "--out", str(tmp_path / "x.png")])
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    no_dropout = tmp_path / "nodrop"
    dl.training.train(load_config("digits", [*base, "model.class_conditional=true"]), no_dropout, progress=False)
    r = runner.invoke(app, ["sample", str(no_dropout), "--guidance", "2", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "label dropout" in r.output
    other = tmp_path / "clf_other_path"
    dl.training.train(load_config("digits", [*base, "kind=classifier", "diffusion.path=ddpm_cosine"]), other, progress=False)
    r = runner.invoke(app, ["sample", str(uncond), "--classifier", str(other), "--guidance", "2", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "other noise levels" in r.output
    r = runner.invoke(app, ["eval", str(cond), "--metrics", "accuracy,fid", "--n", "20", "--steps", "2", "--guidance", "0,2"])
    assert r.exit_code == 0, r.output
    rows = json.loads((cond / "guidance.json").read_text())["rows"]
    assert [r["scale"] for r in rows] == [0.0, 2.0] and (cond / "guidance.png").is_file()
    assert rows[0]["nfe"] == 2 and rows[1]["nfe"] == 4 and all(0 <= r["accuracy"] <= 1 for r in rows)
    r = runner.invoke(app, ["eval", str(uncond), "--metrics", "accuracy", "--n", "20", "--steps", "2", "--guidance", "1",
                            "--classifier", str(clf)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(uncond), "--metrics", "accuracy", "--n", "20", "--steps", "2"])
    assert r.exit_code == 2 and "accuracy judges samples drawn for given classes" in r.output
