"""Cascaded super-resolution: block averages, the Gaussian oracle of both stages, the cascade's exact law, the
noise-conditioning augmentation, super-resolution networks and runs."""

import numpy as np
import pytest
import torch

import difflab as dl
import difflab.cascade
import difflab.evaluate
from difflab.data import downsample, upsample
from difflab.oracles import GaussianSuperResolution

from conftest import gen


def _gaussian_images(shape=(1, 4, 4), seed=0):
    g = gen(seed)
    d = int(np.prod(shape))
    A = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    return torch.randn(d, generator=g, dtype=torch.float64) * 0.5, A @ A.T + 0.05 * torch.eye(d, dtype=torch.float64)


def test_downsample_is_the_block_average_and_upsample_its_right_inverse():
    x = torch.arange(32.0).reshape(2, 1, 4, 4)
    y = downsample(x, 2)
    assert y.shape == (2, 1, 2, 2) and y[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4 and y[1, 0, 1, 1] == (26 + 27 + 30 + 31) / 4
    assert torch.equal(downsample(upsample(y, 2), 2), y)
    with pytest.raises(ValueError, match="must divide both sides"):
        downsample(torch.zeros(1, 1, 5, 4), 2)


def test_the_oracle_conditional_is_bayes_rule():
    """E[x0 | x_t, y] of the oracle, against the conditional of the joint Gaussian of (x0, x_t, y) computed directly."""
    mu, S = _gaussian_images()
    oracle = GaussianSuperResolution(mu, S, (1, 4, 4), 2)
    path = dl.paths.Cosine()
    t, a, s = 0.4, float(path.alpha(0.4)), float(path.sigma(0.4))
    P = oracle.P
    # joint of (x0, w) with w = (x_t, y): Cov(x0, w) = [a S, S P^T], Var(w) = [[a^2 S + s^2 I, a S P^T], [a P S, P S P^T]]
    d = S.shape[0]
    cross = torch.cat([a * S, S @ P.T], 1)
    var = torch.cat([torch.cat([a * a * S + s * s * torch.eye(d, dtype=torch.float64), a * S @ P.T], 1),
                     torch.cat([a * P @ S, P @ S @ P.T], 1)], 0)
    x0 = torch.randn(5, d, generator=gen(1), dtype=torch.float64) + mu
    x_t = a * x0 + s * torch.randn(5, d, generator=gen(2), dtype=torch.float64)
    y = x0 @ P.T
    w = torch.cat([x_t, y], 1)
    mean_w = torch.cat([a * mu, P @ mu])
    want = mu + (w - mean_w) @ torch.linalg.solve(var, cross.T)
    got = oracle.denoiser(path)(x_t.reshape(5, 1, 4, 4), torch.tensor(t), low_res=y.reshape(5, 1, 2, 2))
    torch.testing.assert_close(got.reshape(5, d), want, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("sampler, steps", [("ddim", 200), ("dpmpp_2m", 25), ("ddpm", 500)])
def test_super_resolution_samples_keep_their_low_res_image_and_its_conditional_law(sampler, steps):
    """Driven by the exact E[x0 | x_t, y], the samples' block averages are y (to rounding) and their law is
    N(m_y, C_y) (to the sampler's discretisation: DDIM at 25 steps is 0.085 off in covariance, at 200 0.015)."""
    mu, S = _gaussian_images()
    oracle = GaussianSuperResolution(mu, S, (1, 4, 4), 2)
    path = dl.paths.DiscreteVP.cosine(1000)
    y = oracle.base.sample(1, gen(3)).double().reshape(1, 1, 2, 2).expand(20_000, -1, -1, -1)
    x = dl.sample(oracle.denoiser(path), path, (20_000, 1, 4, 4), sampler=sampler, steps=steps,
                  generator=gen(4), dtype=torch.float64, cond={"low_res": y})
    torch.testing.assert_close(downsample(x, 2), y, rtol=0, atol=1e-6)
    m, C = oracle.conditional(y[:1])
    flat = x.reshape(20_000, -1)
    torch.testing.assert_close(flat.mean(0), m[0], rtol=0, atol=0.03)  # standard errors: about 0.006
    torch.testing.assert_close(torch.cov(flat.T), C, rtol=0, atol=0.04)  # about 0.008


@pytest.mark.parametrize("level", [0.0, 0.3])
def test_a_cascade_of_exact_stages_reproduces_the_joint_law(level):
    """Base N(P mu, P S P^T), then the exact second stage given y noised to `level`: the samples are N(mu, S) at any
    level; only at level 0 is each sample's block average its y."""
    mu, S = _gaussian_images(seed=5)
    oracle = GaussianSuperResolution(mu, S, (1, 4, 4), 2)
    path = dl.paths.Cosine()
    x, y = dl.cascade.sample(oracle.base_denoiser(path), path, oracle.denoiser(path), path, 6000, (1, 2, 2), (1, 4, 4),
                             level=level, seed=0, batch_size=2000, dtype=torch.float64,
                             base_settings={"sampler": "dpmpp_2m", "steps": 30},
                             sr_settings={"sampler": "dpmpp_2m", "steps": 30}, return_low_res=True)
    flat = x.reshape(len(x), -1).double()
    torch.testing.assert_close(flat.mean(0), mu, rtol=0, atol=0.05)
    torch.testing.assert_close(torch.cov(flat.T), S, rtol=0, atol=0.05)
    gap = (downsample(x, 2) - y).abs().max()
    assert (gap < 1e-4) if level == 0 else (gap > 0.1)


def test_the_cascade_does_not_depend_on_the_batch_size():
    mu, S = _gaussian_images()
    oracle = GaussianSuperResolution(mu, S, (1, 4, 4), 2)
    path = dl.paths.Cosine()
    args = (oracle.base_denoiser(path), path, oracle.denoiser(path), path, 10, (1, 2, 2), (1, 4, 4))
    kw = dict(level=0.2, seed=3, base_settings={"sampler": "ddpm", "steps": 5}, sr_settings={"sampler": "ddpm", "steps": 5})
    torch.testing.assert_close(dl.cascade.sample(*args, batch_size=10, **kw), dl.cascade.sample(*args, batch_size=3, **kw))


def test_noise_conditioning_augmentation_in_the_objective():
    """The low-res condition reaches the network noised on the path to s ~ U[0, max] (told as low_res_level), drawn
    after t and the noise; without augmentation it arrives clean with level 0."""
    seen = {}

    class Net(torch.nn.Module):
        def forward(self, x, t, low_res=None, low_res_level=None):
            seen.update(low_res=low_res, level=low_res_level)
            return torch.zeros_like(x)

    path = dl.paths.Cosine()
    x = torch.randn(6, 1, 4, 4, generator=gen(0))
    batch = {"x": x, "low_res": downsample(x, 2)}
    obj = dl.objectives.DiffusionObjective(path, prediction="x0", conditions=("low_res",), low_res_noise=0.5)
    obj(Net(), batch, gen(9))
    g = gen(9)
    obj.time_sampler(6, generator=g)
    torch.randn(x.shape, generator=g)
    s = torch.rand((6,), generator=g, dtype=torch.float64) * 0.5
    eps = torch.randn(batch["low_res"].shape, generator=g)
    torch.testing.assert_close(seen["level"], s.float())
    torch.testing.assert_close(seen["low_res"], path.perturb(batch["low_res"], s, eps))
    dl.objectives.DiffusionObjective(path, conditions=("low_res",))(Net(), batch, gen(9))
    assert torch.equal(seen["low_res"], batch["low_res"]) and torch.equal(seen["level"], torch.zeros(6))
    with pytest.raises(ValueError, match="conditioned on low_res"):
        dl.objectives.DiffusionObjective(path, low_res_noise=0.5)


@pytest.mark.parametrize("kind", ["unet", "dit"])
def test_super_resolution_networks_read_the_low_res_image(kind):
    torch.manual_seed(0)
    net = (dl.nets.UNet(1, 16, (1, 2), 1, (), low_res_channels=1) if kind == "unet" else
           dl.nets.DiT(1, 2, 32, 2, 2, low_res_channels=1))
    for p in net.parameters():  # leave the zero start so the output depends on its inputs
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.6])
    y = torch.randn(2, 1, 4, 4)
    out = net(x, t, low_res=y, low_res_level=torch.tensor([0.0, 0.2]))
    assert out.shape == x.shape
    y2 = y.clone()
    y2[1] += 1
    out2 = net(x, t, low_res=y2, low_res_level=torch.tensor([0.0, 0.2]))
    assert torch.equal(out[0], out2[0]) and not torch.allclose(out[1], out2[1])
    assert not torch.allclose(out, net(x, t, low_res=y, low_res_level=torch.tensor([0.5, 0.2])))
    with pytest.raises(ValueError, match="give the low-resolution image"):
        net(x, t)
    with pytest.raises(ValueError, match="low_res must be"):
        net(x, t, low_res=torch.randn(2, 1, 3, 3))


# -- runs ----------------------------------------------------------------------------------------

SMALL = ["model.channels=16", "model.channel_mult=[1]", "model.attention_levels=[]", "model.num_res_blocks=1",
         "train.steps=4", "train.batch_size=16", "train.checkpoint_every=2", "train.log_every=2"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    dl.runs.train(dl.config.load_config("digits", [*SMALL, "data.downsample=2", "model.class_conditional=true",
                                                   "diffusion.p_uncond=0.2"]), root / "base", progress=False)
    dl.runs.train(dl.config.load_config("digits", [*SMALL, "data.low_res=2", "diffusion.low_res_noise=0.5"]), root / "sr",
                  progress=False)
    cfg = dl.config.load_config(None, ["kind=cascade", f'requires.base="{root / "base"}"',
                                       f'requires.super_resolution="{root / "sr"}"', "cascade.low_res_noise=0.2",
                                       "sample.sampler=ddim", "sample.steps=3", "cascade.base_steps=4"])
    dl.runs.train(cfg, root / "cascade", progress=False)
    return root


def test_stage_runs_record_their_resolutions(stages):
    base, sr = dl.runs.data_info(stages / "base"), dl.runs.data_info(stages / "sr")
    assert base["shape"] == [1, 4, 4] and sr["shape"] == [1, 8, 8] and sr["low_res"] == {"factor": 2, "shape": [1, 4, 4]}
    data = dl.config.build_data(dl.config.load_config("digits", ["data.low_res=2"]).data)
    b = data.batch(torch.arange(3))
    assert torch.equal(b["low_res"], downsample(b["x"], 2))
    net = dl.runs.load_network(stages / "sr")[0]
    assert net.low_res is not None and net.conv_in.in_channels == 2


def test_a_cascade_run_samples_both_stages(stages):
    cascade, _, cfg = dl.load(stages / "cascade")
    assert isinstance(cascade, dl.cascade.Cascade) and cascade.level == 0.2
    assert cascade.base_settings["steps"] == 4 and cascade.sr_settings["sampler"] == "ddim" and cascade.sr_settings["steps"] == 3
    x, y, how = dl.runs.cascade_sample(stages / "cascade", 6, labels=torch.arange(6), guidance=1.0, seed=0, batch_size=4)
    x2, y2, _ = dl.runs.cascade_sample(stages / "cascade", 6, labels=torch.arange(6), guidance=1.0, seed=0, batch_size=6)
    assert x.shape == (6, 1, 8, 8) and y.shape == (6, 1, 4, 4) and torch.equal(x, x2) and torch.equal(y, y2)
    assert y.abs().max() <= 1 and how["level"] == 0.2
    with pytest.raises(ValueError, match="above the levels"):
        dl.runs.cascade_sample(stages / "cascade", 2, level=0.7)

    from typer.testing import CliRunner

    from difflab.cli import app
    out = stages / "c.npz"
    r = CliRunner().invoke(app, ["sample", str(stages / "cascade"), "--n", "4", "--out", str(out), "--label", "3",
                                 "--base-steps", "2", "--low-res-noise", "0"])
    assert r.exit_code == 0, r.output
    saved = np.load(out)
    assert saved["samples"].shape == (4, 1, 8, 8) and saved["low_res"].shape == (4, 1, 4, 4)
    r = CliRunner().invoke(app, ["sample", str(stages / "cascade"), "--n", "10", "--out", str(stages / "c.png")])
    assert r.exit_code == 0 and (stages / "c.png").is_file(), r.output
    r = CliRunner().invoke(app, ["sample", str(stages / "sr"), "--n", "2", "--out", str(stages / "sr.png")])
    assert r.exit_code == 2 and "super-resolution run" in r.output
    r = CliRunner().invoke(app, ["sample", str(stages / "cascade"), "--grid", "karras"])
    assert r.exit_code == 2 and "not available for a cascade" in r.output
    r = CliRunner().invoke(app, ["info", str(stages / "cascade")])
    assert r.exit_code == 0 and "trains nothing" in r.output


def test_cascade_configuration_errors(stages, tmp_path):
    def cascade(base, sr, *extra):
        return dl.config.load_config(None, ["kind=cascade", f'requires.base="{base}"', f'requires.super_resolution="{sr}"', *extra])

    with pytest.raises(ValueError, match="is not a super-resolution run"):
        dl.runs.train(cascade(stages / "base", stages / "base"), tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="above the levels"):
        dl.runs.train(cascade(stages / "base", stages / "sr", "cascade.low_res_noise=0.6"), tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="requires requires.base, requires.super_resolution"):
        dl.runs.train(dl.config.load_config(None, ["kind=cascade"]), tmp_path / "c", progress=False)
    dl.runs.train(dl.config.load_config("digits", [*SMALL, "train.steps=1"]), tmp_path / "full", progress=False)
    with pytest.raises(ValueError, match="draws images of shape"):
        dl.runs.train(cascade(tmp_path / "full", stages / "sr"), tmp_path / "d", progress=False)
    for bad, msg in ((["data.low_res=2", "kind=classifier"], "super-resolution data for a diffusion run"),
                     (["diffusion.low_res_noise=0.3"], "needs data.low_res"), (["data.low_res=1"], "data.low_res must be"),
                     (["data.downsample=2", "data.levels=4", "kind=discrete"], "change the resolution of images")):
        with pytest.raises(ValueError, match=msg):
            dl.config.load_config("digits", bad)
    assert not any((tmp_path / k).exists() for k in "abcd")


def test_a_cascade_is_measured_like_any_run(stages):
    res = dl.evaluate.run_sample_metrics(stages / "cascade", ("fid",), n=20, guide={"scale": 1.0})
    assert res["fd"] > 0 and res["base_steps"] == 4 and res["level"] == 0.2 and "fd_floor" in res
    with pytest.raises(ValueError, match="super-resolution run"):
        dl.evaluate.run_sample_metrics(stages / "sr", ("fid",), n=20)


def test_difflab_train_writes_a_cascade_from_a_toml_file(stages, tmp_path):
    from typer.testing import CliRunner

    from difflab.cli import app
    toml = tmp_path / "c.toml"
    toml.write_text(f'kind = "cascade"\nrequires = {{base = "{stages / "base"}", super_resolution = "{stages / "sr"}"}}\n'
                    "[cascade]\nlow_res_noise = 0.1\n")
    r = CliRunner().invoke(app, ["train", str(toml), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert dl.runs.data_info(tmp_path / "c")["cascade"]["factor"] == 2 and dl.runs.run_kind(tmp_path / "c") == "cascade"
    toml.write_text(toml.read_text().replace("0.1", "0.9"))
    r = CliRunner().invoke(app, ["train", str(toml), "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "above the levels" in r.output and not (tmp_path / "d").exists()


def test_guidance_needs_a_stage_it_can_steer(stages, tmp_path):
    cfg = dl.config.load_config(None, ["kind=cascade", f'requires.base="{stages / "sr"}"', f'requires.super_resolution="{stages / "sr"}"'])
    with pytest.raises(ValueError, match="draws images of shape"):  # a super-resolution run is no base
        dl.runs.train(cfg, tmp_path / "x", progress=False)
    plain = dl.config.load_config("digits", [*SMALL, "data.downsample=2", "train.steps=1"])
    dl.runs.train(plain, tmp_path / "base", progress=False)
    cfg = dl.config.load_config(None, ["kind=cascade", f'requires.base="{tmp_path / "base"}"',
                                       f'requires.super_resolution="{stages / "sr"}"'])
    dl.runs.train(cfg, tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="nothing for classifier-free guidance to steer"):
        dl.runs.cascade_sample(tmp_path / "c", 2, guidance=2.0)
