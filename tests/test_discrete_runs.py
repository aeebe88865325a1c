"""Discrete and autoregressive runs end to end: data, networks, training, resume, sampling, evaluation."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from difflab import discrete as dd
from difflab.cli import app
from difflab.data import categorical as cat

TEXT = {"name": "t", "kind": "discrete", "data": {"name": "text", "length": 16},
        "model": {"kind": "transformer", "width": 32, "depth": 1, "heads": 2},
        "train": {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "log_every": 3}}


def config(base=TEXT, **sections):
    values = json.loads(json.dumps(base))
    for key, value in sections.items():
        values.setdefault(key, {}).update(value) if isinstance(value, dict) else values.__setitem__(key, value)
    return dl.config.load_config(values)


# --- data --------------------------------------------------------------------------------------

def test_text_is_normalised_as_text8():
    assert cat.normalise_text("Hello, World!\n  It's 42 -- ok") == "hello world it s ok"
    assert cat.decode(cat.encode("a zebra")) == "a zebra"
    train, test = cat.text("pydoc", 32, "train"), cat.text("pydoc", 32, "test")
    assert train.images.shape[1] == 32 and train.num_symbols == 27 and int(train.images.max()) <= 26
    corpus = cat.encode(cat.text_corpus("pydoc"))
    cut = int(len(corpus) * 0.9)
    assert torch.equal(train.images[1], corpus[8:40])  # windows every length // 4 characters
    assert torch.equal(test.images[0], corpus[cut:cut + 32])  # held out: after the cut, disjoint windows


def test_quantize_round_trips_the_level_centres():
    levels = torch.arange(5)
    assert torch.equal(cat.quantize(cat.dequantize(levels, 5), 5), levels)
    assert cat.quantize(torch.tensor([-1.0, -0.49, 0.0, 0.51, 1.0, 7.0]), 5).tolist() == [0, 1, 2, 3, 4, 4]


# --- networks ----------------------------------------------------------------------------------

def test_adaln_zero_blocks_start_as_the_identity_and_token_blocks_as_plain_ones():
    h, c = torch.randn(4, 10, 16), torch.randn(4, 16)
    assert torch.equal(dl.nets.TransformerBlock(16, 2, 16)(h, c), h)  # DiT's adaLN-Zero
    net = dl.nets.TokenTransformer(6, 5, 10, width=16, depth=2, heads=2, num_classes=3)
    assert not torch.equal(net.blocks[0](h, c), h)  # gates open: attention reaches the output from the start
    out = net(torch.randint(0, 6, (4, 10)), torch.rand(4), label=torch.tensor([0, 1, 2, -1]))
    assert out.shape == (4, 10, 5) and out.abs().max() < 1  # small logits: nearly uniform at the start


def test_a_masked_position_sees_its_neighbours_at_the_start():
    """The saddle of a masked model (module doc of nets.transformer): its input must reach its output."""
    torch.manual_seed(0)
    net = dl.nets.TokenTransformer(6, 5, 10, width=16, depth=2, heads=2)
    x = torch.randint(0, 5, (1, 10))
    x[0, 4] = 5
    y = x.clone()
    y[0, 3] = (y[0, 3] + 1) % 5
    assert (net(x, torch.ones(1))[0, 4] - net(y, torch.ones(1))[0, 4]).abs().max() > 1e-4


def test_the_causal_transformer_sees_only_the_past():
    torch.manual_seed(0)
    net = dl.nets.TokenTransformer(6, 5, 10, width=16, depth=2, heads=2, time_conditioning=False, causal=True)
    for p in net.parameters():  # leave the zero initialisation so the outputs depend on the tokens
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randint(0, 6, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 6
    a, b = net(x), net(y)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6) and not torch.allclose(a[:, 6:], b[:, 6:])


def test_autoregressive_nll_is_the_chain_rule():
    torch.manual_seed(1)
    net = dl.nets.TokenTransformer(4, 3, 5, width=16, depth=1, heads=2, time_conditioning=False, causal=True)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randint(0, 3, (3, 5))
    want = torch.zeros(3)
    for i in range(5):  # p(x_i | x_<i) from the prefix alone
        prefix = torch.cat([torch.full((3, 1), 3), x[:, :i], torch.zeros(3, 4 - i, dtype=torch.long)], 1)
        logp = torch.log_softmax(net(prefix), -1)[:, i]
        want -= logp[torch.arange(3), x[:, i]]
    assert torch.allclose(dd.autoregressive.nll(net, x, bos=3), want, atol=1e-5)


def test_the_categorical_unet_gives_logits_per_pixel():
    net = dl.nets.CategoricalUNet(1, 5, 4, channels=16, channel_mult=(1, 2), num_res_blocks=1)
    out = net(torch.randint(0, 5, (2, 1, 8, 8)), torch.rand(2))
    assert out.shape == (2, 1, 8, 8, 4) and torch.equal(out, torch.zeros_like(out))


def test_logistic_logits_are_the_renormalised_discretized_logistic():
    from scipy.special import expit

    loc, log_scale, K = torch.tensor([-1.0, -0.3, 0.2, 0.9]), torch.tensor([2.5, 1.0, 0.0, -3.0]), 6
    got = torch.softmax(dl.nets.categorical.logistic_logits(loc.double(), log_scale.double(), K), -1)
    for i in range(4):  # the mass of each bin [c_k - w/2, c_k + w/2] under the logistic, renormalised over the K bins
        c, w, scale = -1 + 2 * np.arange(K) / (K - 1), 2 / (K - 1), math.exp(float(log_scale[i]) - 2)
        mass = expit((c + w / 2 - float(loc[i])) / scale) - expit((c - w / 2 - float(loc[i])) / scale)
        assert torch.allclose(got[i], torch.as_tensor(mass / mass.sum()), atol=1e-12)
    far = dl.nets.categorical.logistic_logits(torch.tensor([0.99]), torch.tensor([-20.0]), 256)  # a very narrow logistic
    assert torch.isfinite(torch.softmax(far, -1)).all() and int(far.argmax()) == 254


@pytest.mark.parametrize("net", ["unet", "dit"])
def test_the_logistic_output_starts_as_a_bump_around_the_noisy_level(net):
    K = 5
    make = dl.nets.CategoricalUNet if net == "unet" else dl.nets.CategoricalDiT
    kw = dict(channels=16, channel_mult=(1, 2), num_res_blocks=1) if net == "unet" else dict(patch_size=2, width=32, depth=1, heads=2)
    model = make(1, K + 1, K, "logistic", **kw)  # K levels and a [MASK] state
    x = torch.randint(0, K + 1, (2, 1, 8, 8))
    out = model(x, torch.rand(2))
    assert out.shape == (2, 1, 8, 8, K)
    level = torch.where(x < K, x * 2.0 / (K - 1) - 1, torch.zeros(()))  # the body starts at zero: mu = tanh(x_t), s = 0
    want = dl.nets.categorical.logistic_logits(torch.tanh(level), torch.zeros(x.shape), K)
    assert torch.allclose(out, want)
    with pytest.raises(ValueError, match="output"):
        make(1, K, K, "gaussian", **kw)


def test_a_gaussian_run_with_the_logistic_output(tmp_path):
    cfg = config(data={"name": "digits", "levels": 8}, model={"kind": "unet", "channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1},
                 discrete={"path": "gaussian", "steps": 10, "schedule": "mutual_information", "output": "logistic"},
                 train={"steps": 2})
    dl.runs.train(cfg, tmp_path / "g", progress=False)
    den, path, _ = dl.runs.load(tmp_path / "g")
    p0 = den(torch.randint(0, 8, (3, 1, 8, 8)), torch.full((3,), 0.5, dtype=torch.float64))
    assert p0.shape == (3, 1, 8, 8, 8) and torch.allclose(p0.sum(-1).double(), torch.ones(3, 1, 8, 8, dtype=torch.float64), atol=1e-5)
    tokens, _ = dl.runs.sample_tokens(tmp_path / "g", 2)
    assert tokens.shape == (2, 1, 8, 8) and int(tokens.max()) < 8


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"data": {"name": "toy"}}, "categorical data"),
    ({"kind": "diffusion", "model": {"kind": "unet"}}, "need kind"),
    ({"data": {"levels": 4}}, "already categorical"),
    ({"discrete": {"path": "uniform", "loss": "masked"}}, "continuous-time masked path"),
    ({"discrete": {"path": "masked", "loss": "vb"}}, "absorbing"),
    ({"discrete": {"path": "uniform", "sampler": "masked"}}, "absorbing path"),
    ({"discrete": {"path": "uniform", "steps": 10, "sample_steps": 20}}, "cannot exceed"),
    ({"discrete": {"p_uncond": 0.1}}, "class-conditional"),
    ({"model": {"kind": "mlp"}}, "transformer"),
    ({"discrete": {"path": "gaussian", "schedule": "cosine"}}, "beta schedule"),
    ({"discrete": {"path": "uniform", "schedule": "mutual_information"}}, "gaussian path"),
    ({"discrete": {"output": "logistic"}}, "ordinal levels"),
    ({"discrete": {"output": "bins"}}, "discrete.output"),
])
def test_bad_discrete_configurations_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        config(**change)


# --- runs --------------------------------------------------------------------------------------

def _weights(run):
    net, _, _ = dl.runs.load_network(run, ema=False)
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("discrete", [{"path": "masked"}, {"path": "absorbing", "steps": 20},
                                      {"path": "uniform", "steps": 20, "loss": "vb"}], ids=lambda d: d["path"])
def test_discrete_runs_resume_bit_for_bit(tmp_path, discrete):
    cfg = config(discrete=discrete)
    dl.runs.train(cfg, tmp_path / "a", progress=False)
    dl.runs.train(cfg, tmp_path / "b", progress=False, stop_after=3)
    dl.runs.train(cfg, tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_text_runs_sample_and_measure_from_the_command_line(tmp_path):
    runner = CliRunner()
    for kind in ("discrete", "autoregressive"):
        run = tmp_path / kind
        dl.runs.train(config(kind=kind), run, progress=False)
        res = runner.invoke(app, ["sample", str(run), "--n", "3", "--out", str(tmp_path / f"{kind}.txt")]
                            + (["--steps", "8"] if kind == "discrete" else []))
        assert res.exit_code == 0, res.output
        lines = (tmp_path / f"{kind}.txt").read_text().splitlines()
        assert len(lines) == 3 and all(len(s) == 16 and set(s) <= set(cat.ALPHABET) for s in lines)
        res = runner.invoke(app, ["eval", str(run), "--nll", "--n", "20"])
        assert res.exit_code == 0, res.output
        report = json.loads((run / "eval.json").read_text())["bits per symbol"]
        # an untrained network guesses nearly uniformly: close to log2(27) bits, never far below it
        assert 3.5 < report["bits_per_symbol"] < 7 and report["bound"] == (kind == "discrete")
    res = runner.invoke(app, ["sample", str(tmp_path / "discrete"), "--grid", "karras"])
    assert res.exit_code == 2 and "diffusion runs only" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "discrete"), "--metrics", "fid"])
    assert res.exit_code == 2 and "--nll" in res.output
    res = runner.invoke(app, ["sample", str(tmp_path / "discrete"), "--guidance", "2"])
    assert res.exit_code == 2 and "label dropout" in res.output


def test_quantized_images_and_toy_points(tmp_path):
    toy = config(data={"name": "toy", "toy": "swiss_roll", "levels": 8, "toy_size": 500},
                 discrete={"path": "gaussian", "steps": 10})
    dl.runs.train(toy, tmp_path / "toy", progress=False)
    tokens, how = dl.runs.sample_tokens(tmp_path / "toy", 50)
    assert tokens.shape == (50, 2) and int(tokens.max()) < 8 and how["steps"] == 10
    points = dl.runs.tokens_to_values(tmp_path / "toy", tokens)
    assert points.shape == (50, 2) and points.abs().max() <= 3
    images = config(data={"name": "digits", "levels": 4}, model={"kind": "unet", "channels": 16, "channel_mult": [1, 2],
                                                                "num_res_blocks": 1, "class_conditional": True},
                    discrete={"path": "absorbing", "steps": 10, "p_uncond": 0.2}, train={"steps": 2})
    dl.runs.train(images, tmp_path / "img", progress=False)
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "img"), "--n", "10", "--guidance", "1", "--out", str(tmp_path / "i.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "i.png").stat().st_size > 0
    tokens, how = dl.runs.sample_tokens(tmp_path / "img", 4, labels=torch.tensor([0, 1, 2, 3]), guidance=1.0)
    assert tokens.shape == (4, 1, 8, 8) and int(tokens.max()) < 4


def test_samples_do_not_depend_on_the_batch_size():
    path, joint = dd.Uniform(3, steps=10), dd.Joint(torch.full((3, 3, 3), 1 / 27, dtype=torch.float64))
    den = joint.denoiser(path)
    a, _ = dd.sample_batched(den, path, 7, (3,), seed=5, batch_size=7)
    b, _ = dd.sample_batched(den, path, 7, (3,), seed=5, batch_size=2)
    assert torch.equal(a, b)


@pytest.mark.slow
def test_a_masked_model_learns_the_quantized_swiss_roll(tmp_path):
    """Trained briefly, the bound falls well below the uniform log2(16) = 4 bits per coordinate."""
    cfg = config(data={"name": "toy", "toy": "swiss_roll", "levels": 16, "toy_size": 20000},
                 model={"width": 64, "depth": 2}, train={"steps": 600, "batch_size": 256, "lr": 1e-3, "checkpoint_every": 600})
    dl.runs.train(cfg, tmp_path / "r", progress=False)
    from difflab.evaluate import run_discrete_nll

    res = run_discrete_nll(tmp_path / "r", n=2000, progress=False)
    assert res["bits_per_symbol"] < 3.0, res
    assert math.isfinite(res["bits_per_symbol_se"])
