"""Latent diffusion: the autoencoder and its objective, the latent pipeline against exact answers, latent runs."""

import json
import math

import numpy as np
import pytest
import torch

import difflab as dl
import difflab.evaluate
import difflab.bench
from difflab.latent import Latent, LatentDenoiser, measure_scale
from difflab.nets import VAE, IdentityAutoencoder
from difflab.objectives import AutoencoderObjective

from conftest import gen, test_mixture


# -- the autoencoder -----------------------------------------------------------------------------

@pytest.mark.parametrize("patch, mult, shape, latent", [(1, (1, 2, 2), (1, 28, 28), (4, 7, 7)), (2, (1, 2), (1, 28, 28), (4, 7, 7)),
                                                        (1, (1, 2), (3, 8, 8), (4, 4, 4)), (2, (1,), (1, 6, 10), (4, 3, 5))])
def test_vae_shapes(patch, mult, shape, latent):
    ae = VAE(shape[0], 4, 8, mult, 1, patch)
    x = torch.randn(3, *shape)
    mean, logvar = ae.posterior(x)
    assert ae.latent_shape(shape) == latent and mean.shape == logvar.shape == (3, *latent)
    assert torch.equal(ae.encode(x), mean) and ae.decode(mean).shape == x.shape


def test_vae_refuses_sides_its_levels_do_not_divide():
    with pytest.raises(ValueError, match="divisible by 4"):
        VAE(1, 4, 8, (1, 2, 2)).posterior(torch.randn(1, 1, 10, 10))


class _Fixed(torch.nn.Module):
    """A stand-in autoencoder with a given posterior and a linear decoder, for the loss's exact value."""

    def __init__(self, mean, logvar):
        super().__init__()
        self.mean, self.logvar = mean, logvar

    def posterior(self, x):
        return self.mean, self.logvar

    def decode(self, z):
        return 2 * z


@pytest.mark.parametrize("rec", ["l2", "l1"])
def test_autoencoder_loss_is_reconstruction_plus_weighted_kl_per_pixel(rec):
    g = gen(3)
    x = torch.randn(5, 1, 2, 3, generator=g)
    mean, logvar = torch.randn(5, 1, 2, 3, generator=g), torch.randn(5, 1, 2, 3, generator=g)
    obj = AutoencoderObjective(reconstruction=rec, kl_weight=0.3)
    got = obj(_Fixed(mean, logvar), {"x": x}, gen(7))
    eps = torch.randn(mean.shape, generator=gen(7))  # the objective's one draw
    err = 2 * (mean + (0.5 * logvar).exp() * eps) - x
    err = err.square() if rec == "l2" else err.abs()
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(got, (err.flatten(1).sum(1) + 0.3 * kl) / 6, rtol=1e-5, atol=1e-6)


def test_autoencoder_objective_checks_its_settings():
    with pytest.raises(ValueError, match="reconstruction loss"):
        AutoencoderObjective(reconstruction="l3")
    with pytest.raises(ValueError, match="KL weight"):
        AutoencoderObjective(kl_weight=-1)


# -- the latent pipeline against exact answers ---------------------------------------------------

@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m", "ddpm", "unipc"])
def test_identity_autoencoder_gives_the_pixel_model_exactly(sampler):
    """With the identity autoencoder and scale 1, latent sampling + decoding is the pixel model, bit for bit."""
    mix = test_mixture()
    path = dl.paths.DiscreteVP.cosine(200)
    den = mix.denoiser(path)
    latent_den = LatentDenoiser(den, Latent(IdentityAutoencoder(), 1.0))
    gens = lambda: [gen(i) for i in range(64)]  # noqa: E731
    pixel = dl.sample(den, path, (64, 2), sampler=sampler, steps=12, generator=gens())
    z = dl.sample(latent_den, path, (64, 2), sampler=sampler, steps=12, generator=gens())
    assert torch.equal(latent_den.decode(z), pixel)


class _Rotation(torch.nn.Module):
    """A linear orthogonal autoencoder: E(x) = x A^T + b, D(z) = (z - b) A."""

    def __init__(self, angle, shift):
        super().__init__()
        c, s = math.cos(angle), math.sin(angle)
        self.A = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        self.b = torch.tensor(shift, dtype=torch.float64)

    def latent_shape(self, shape):
        return tuple(shape)

    def encode(self, x):
        return x.double() @ self.A.T + self.b

    def decode(self, z):
        return (z.double() - self.b) @ self.A


def test_latent_samples_decode_to_the_data_law_through_a_rotation_and_a_scale():
    """Data x ~ mixture; latents z = s E(x) with a rotation and a shift and s = 1 / std (measured). The exact
    latent denoiser (the mixture pushed through s E) drives the sampler; decoding the samples must give the
    mixture's mean and covariance."""
    mix = test_mixture()
    ae = _Rotation(0.7, [3.0, -1.0])
    data = mix.sample(20_000, gen(0)).double()
    s = measure_scale(ae.encode(data))
    latent = Latent(ae, s)
    assert float(latent.encode(data).std()) == pytest.approx(1.0, rel=1e-9)
    pushed = dl.oracles.GaussianMixture(latent.encode(mix.means.double()),
                                        covariances=(s ** 2) * ae.A @ mix.component_covariances().double() @ ae.A.T,
                                        weights=mix.weights)
    path = dl.paths.Cosine()
    den = LatentDenoiser(pushed.denoiser(path), latent)
    z = dl.sample(den, path, (20_000, 2), sampler="dpmpp_2m", steps=40, generator=gen(1), dtype=torch.float64)
    x = den.decode(z)
    torch.testing.assert_close(x.mean(0), mix.mean().double(), atol=0.04, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), mix.covariance().double(), atol=0.06, rtol=0)
    torch.testing.assert_close(latent.decode(latent.encode(data)), data)  # the scale cancels


def test_measure_scale_and_latent_checks():
    z = torch.randn(1000, 4, 3, 3, generator=gen(0)) * 3 + 1
    assert float((z * measure_scale(z)).std()) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="no spread"):
        measure_scale(torch.zeros(10, 4))
    with pytest.raises(ValueError, match="scale"):
        Latent(IdentityAutoencoder(), 0.0)


# -- runs ----------------------------------------------------------------------------------------

AE = ["kind=autoencoder", "model.kind=vae", "model.channels=8", "model.channel_mult=[1,2]", "model.num_res_blocks=1",
      "train.steps=4", "train.batch_size=16", "train.checkpoint_every=2", "train.log_every=2", "train.ema_decay=0.5"]


def _latent_cfg(ae_dir, *extra):
    return dl.config.load_config("digits", [f'requires.autoencoder="{ae_dir}"', "model.channels=16", "model.channel_mult=[1,2]",
                                            "model.attention_levels=[]", "model.class_conditional=true",
                                            "diffusion.p_uncond=0.2", "train.steps=4", "train.batch_size=16",
                                            "train.checkpoint_every=2", "train.log_every=2", *extra])


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ae") / "ae"
    dl.runs.train(dl.config.load_config("digits", AE), d, resume=False, progress=False)
    return d


def test_a_latent_run_trains_on_scaled_cached_latents_and_samples_images(ae_run, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFLAB_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "lat"
    before = {p: p.stat().st_mtime_ns for p in ae_run.rglob("*")}
    dl.runs.train(_latent_cfg(ae_run), run, resume=False, progress=False)
    assert {p: p.stat().st_mtime_ns for p in ae_run.rglob("*")} == before  # nothing written into the autoencoder's run
    info = dl.runs.data_info(run)
    ae, _, state = dl.runs.load_network(ae_run)
    cache = next((tmp_path / "cache" / "latents").glob("*.safetensors"))  # difflab's cache, keyed by the weights
    latents = dl.training.checkpoint.load_tensors(cache)["latents"]
    images = dl.data.digits("train").images
    torch.testing.assert_close(latents, ae.encode(images))  # the cache holds E(x) of every training image
    assert info["shape"] == [4, 4, 4] and info["range"] is None
    assert info["latent"]["scale"] == pytest.approx(1 / float(latents.double().std()), rel=1e-9)
    assert info["latent"]["autoencoder_step"] == state["step"] == 4 and info["latent"]["image_shape"] == [1, 8, 8]
    mtime = cache.stat().st_mtime_ns
    dl.runs.train(_latent_cfg(ae_run), tmp_path / "again", resume=False, progress=False)
    assert cache.stat().st_mtime_ns == mtime  # encoded once: the second run read the cache

    den, path, cfg = dl.load(run)
    assert isinstance(den, LatentDenoiser) and den.latent.scale == info["latent"]["scale"]
    z = dl.sample(den, path, (3, 4, 4, 4), sampler="ddim", steps=3, generator=gen(0), cond={"label": torch.arange(3)})
    x = den.decode(z)
    torch.testing.assert_close(x, ae.decode(z / info["latent"]["scale"]))
    guided, _, _ = dl.runs.load_guided(run, scale=2.0)
    assert hasattr(guided, "decode")

    out = tmp_path / "s.npz"
    from typer.testing import CliRunner

    from difflab.cli import app
    r = CliRunner().invoke(app, ["sample", str(run), "--n", "4", "--steps", "3", "--out", str(out), "--guidance", "1"])
    assert r.exit_code == 0, r.output
    saved = np.load(out)
    assert saved["samples"].shape == (4, 1, 8, 8) and saved["latents"].shape == (4, 4, 4, 4)
    dec = dl.runs.decoder(run)(torch.from_numpy(saved["latents"]))
    assert torch.equal(dec, torch.from_numpy(saved["samples"]))
    r = CliRunner().invoke(app, ["sample", str(run), "--n", "4", "--steps", "3", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file()
    r = CliRunner().invoke(app, ["info", str(run)])
    assert "latents of" in r.output and "(1, 8, 8)" in r.output


def test_a_latent_run_resumes_bit_for_bit_and_refuses_a_retrained_autoencoder(tmp_path):
    ae_dir = tmp_path / "ae"
    dl.runs.train(dl.config.load_config("digits", AE), ae_dir, resume=False, progress=False)
    cfg = _latent_cfg(ae_dir)
    dl.runs.train(cfg, tmp_path / "a", resume=False, progress=False)
    dl.runs.train(cfg, tmp_path / "b", resume=False, progress=False, stop_after=2)
    dl.runs.train(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = (dl.runs.load_network(tmp_path / r)[0].state_dict() for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    dl.runs.train(dl.config.load_config("digits", [*AE, "train.steps=6"]), ae_dir, resume=True, progress=False)
    with pytest.raises(ValueError, match="autoencoder at step 4.*now at step 6"):
        dl.runs.train(dl.config.load_config("digits", [*cfg_overrides(cfg), "train.steps=8"]), tmp_path / "a", resume=True,
                      progress=False)
    den, _, _ = dl.load(tmp_path / "a")  # still loads: on the autoencoder checkpoint it was trained with
    assert den.latent.autoencoder is not None
    dl.runs.train(dl.config.load_config("digits", [*AE, "train.steps=10"]), ae_dir, resume=True, progress=False)
    with pytest.raises(ValueError, match="checkpoint of step 4"):  # keep_last = 3 has dropped step 4
        dl.load(tmp_path / "a")


def cfg_overrides(cfg):
    return [f'requires.autoencoder="{cfg.requires["autoencoder"]}"', "model.channels=16", "model.channel_mult=[1,2]",
            "model.attention_levels=[]", "model.class_conditional=true", "diffusion.p_uncond=0.2", "train.batch_size=16",
            "train.checkpoint_every=2", "train.log_every=2"]


def test_autoencoder_eval_reports_psnr_fd_and_latent_statistics(ae_run):
    res = dl.evaluate.run_autoencoder_metrics(ae_run, n=100)
    ae, _, _ = dl.load(ae_run)
    x, _, _ = dl.evaluate.held_out(ae_run, "test", 100, 0)
    with torch.no_grad():
        z = ae.encode(x)
        mse = ((ae.decode(z).clamp(-1, 1) - x) / 2).square().flatten(1).mean(1)
    assert res["psnr"] == pytest.approx(float((-10 * torch.log10(mse)).mean()), rel=1e-5)
    assert res["latent_std"] == pytest.approx(z.double().std((0, 2, 3)).tolist(), rel=1e-6)
    assert res["scale"] == pytest.approx(1 / float(z.double().std()), rel=1e-6)
    assert res["fd"] > 0 and 0 <= res["precision"] <= 1 and "fd_floor" in res


def test_autoencoder_and_latent_configuration_errors(ae_run, tmp_path):
    with pytest.raises(ValueError, match="model.kind = 'vae'"):
        dl.config.load_config("digits", ["kind=autoencoder"])
    with pytest.raises(ValueError, match="network of an autoencoder run"):
        dl.config.load_config("digits", ["model.kind=vae"])
    with pytest.raises(ValueError, match="autoencoder run encodes images"):
        dl.config.load_config("toy2d", ["kind=autoencoder", "model.kind=vae"])
    with pytest.raises(ValueError, match="requires.autoencoder makes a latent diffusion run"):
        dl.config.load_config("fashion_mnist_classifier", [f'requires.autoencoder="{ae_run}"'])
    diff = tmp_path / "pix"
    dl.runs.train(dl.config.load_config("digits", ["model.channels=16", "model.channel_mult=[1,2]", "model.attention_levels=[]",
                                                   "train.steps=1", "train.batch_size=8"]), diff, progress=False)
    with pytest.raises(ValueError, match="an autoencoder run is needed"):
        dl.runs.train(_latent_cfg(diff), tmp_path / "y", progress=False)
    with pytest.raises(ValueError, match="trained on images of shape"):
        dl.runs.train(dl.config.load_config("fashion_mnist", [f'requires.autoencoder="{ae_run}"', "model.patch_size=1",
                                                              "model.channel_mult=[1]", "train.steps=1"]), tmp_path / "z",
                      progress=False)
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    with pytest.raises(ValueError, match="an autoencoder run, not a diffusion model"):
        dl.runs.diffusion_config(ae_run)


def test_the_command_line_on_autoencoder_and_latent_runs(ae_run, tmp_path):
    from typer.testing import CliRunner

    from difflab.cli import app
    r = CliRunner().invoke(app, ["eval", str(ae_run), "--n", "50"])
    assert r.exit_code == 0 and "PSNR of 50 test images" in r.output, r.output
    assert "reconstruction" in json.loads((ae_run / "eval.json").read_text())
    r = CliRunner().invoke(app, ["eval", str(ae_run), "--nll"])
    assert r.exit_code == 2 and "autoencoder run" in r.output
    r = CliRunner().invoke(app, ["info", str(ae_run)])
    assert r.exit_code == 0 and "4 latent channels" in r.output and "KL weight" in r.output
    run = tmp_path / "lat"
    dl.runs.train(_latent_cfg(ae_run), run, resume=False, progress=False)
    r = CliRunner().invoke(app, ["eval", str(run), "--nll"])
    assert r.exit_code == 2 and "latents, not of images" in r.output
    res = dl.bench.bench_samplers(run, samplers=("ddim",), nfes=(2,), n=10, progress=False)
    assert res["quality"] == "FD" and res["rows"][0]["FD"] > 0  # scored on decoded 8x8 images
    r = CliRunner().invoke(app, ["eval", str(run), "--metrics", "fid", "--n", "20", "--steps", "2"])
    assert r.exit_code == 0, r.output
