"""The Diffusion Transformer and cross-attention: DiT's zero start (a fresh model outputs exactly zero, every
block is the identity), patches that go back where they came from, guidance on every output channel, context
that is read where it is real and ignored where it is padding, for the DiT and the U-Net alike; DiT runs
through the configuration, training and sampling."""

import pytest
import torch

import difflab as dl
from difflab.nets.attention import CrossAttention
from difflab.nets.dit import sincos_2d


def _perturb(net, seed=0, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return net


def _dit(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=1, patch_size=2, width=32, depth=2, heads=2)
    args.update(kw)
    return dl.nets.DiT(**args)


def test_a_fresh_dit_outputs_exactly_zero_and_every_block_is_the_identity():
    net = _dit(in_channels=3, num_classes=5, context_dim=6, pooled_dim=4)
    x = torch.randn(4, 3, 8, 12)
    ctx = torch.randn(4, 5, 6)
    out = net(x, torch.rand(4), label=torch.tensor([0, 1, -1, 4]), context=ctx, pooled=torch.randn(4, 4))
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))
    h, c = torch.randn(4, 24, 32), torch.randn(4, 32)
    for block in net.blocks:
        assert torch.equal(block(h, c, None, ctx, None), h)
    # the zero start is of the modulations and outputs only: the rest is initialised (a network that can learn)
    assert net.embed.weight.abs().sum() > 0 and all(b.qkv.weight.abs().sum() > 0 for b in net.blocks)


@pytest.mark.parametrize("p, channels, size", [(1, 1, (4, 4)), (2, 3, (8, 6)), (4, 2, (8, 16))])
def test_each_patch_comes_back_where_it_came_from(p, channels, size):
    """With identity blocks (the fresh ones) each token's output is a function of its own patch alone, so
    changing one pixel changes the output in that pixel's patch and nowhere else."""
    net = _dit(in_channels=channels, patch_size=p, width=16, heads=2)
    torch.nn.init.normal_(net.out.weight)
    torch.nn.init.normal_(net.ada.bias)
    x = torch.randn(2, channels, *size)
    y = x.clone()
    i, j = size[0] - 1, 1
    y[:, 0, i, j] += 1.0
    diff = (net(y, torch.tensor(0.3)) - net(x, torch.tensor(0.3))).abs().sum((0, 1))
    inside = torch.zeros(size, dtype=torch.bool)
    inside[i // p * p:(i // p + 1) * p, j // p * p:(j // p + 1) * p] = True
    assert diff[~inside].max() == 0 and diff[inside].min() > 0


def test_the_output_layout_puts_a_tokens_values_row_by_row_then_channel():
    """out[:, c, i p + a, j p + b] is value (a p + b) C + c of token (i, j): a constant output layer shows it."""
    p, C = 2, 3
    net = _dit(in_channels=C, patch_size=p)
    with torch.no_grad():
        net.out.bias.copy_(torch.arange(p * p * C, dtype=torch.float32))
    out = net(torch.randn(1, C, 4, 6), torch.tensor(0.5))
    for c in range(C):
        for a in range(p):
            for b in range(p):
                assert torch.all(out[0, c, a::p, b::p] == (a * p + b) * C + c)


def test_sincos_position_embeddings_are_dits():
    e = sincos_2d(8, 2, 3)
    assert e.shape == (6, 8)
    # token (r, c) = (1, 2): rows then columns, each [sin(pos w), cos(pos w)] with w = 10000^(-i / 2)
    w = torch.tensor([1.0, 0.01])
    expect = torch.cat([torch.sin(1 * w), torch.cos(1 * w), torch.sin(2 * w), torch.cos(2 * w)])
    assert torch.allclose(e[1 * 3 + 2], expect, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 2, 2)


def test_classifier_free_guidance_acts_on_every_output_channel():
    """DiT's reference guides only the first three channels; here D_w = D_c + w (D_c - D_u) on all four."""
    net = _perturb(_dit(in_channels=4, num_classes=3, depth=1), std=0.2)
    path = dl.paths.DiscreteVP.cosine(1000)
    den = dl.denoisers.as_denoiser(net, path, "eps")
    x, t, label = torch.randn(3, 4, 4, 4), torch.full((3,), 0.5), torch.tensor([0, 1, 2])
    w = 2.5
    with torch.no_grad():
        guided = dl.guidance.classifier_free(den, w)(x, t, label=label)
        dc, du = den(x, t, label=label), den(x, t, label=torch.full((3,), -1))
    expect = dc + w * (dc - du)
    assert torch.allclose(guided, expect, atol=1e-5)
    assert all((dc - du)[:, ch].abs().max() > 1e-4 for ch in range(4))  # every channel is moved by guidance


@pytest.mark.parametrize("kind", ["dit", "unet"])
def test_context_is_read_where_real_and_ignored_where_padding(kind):
    if kind == "dit":
        net = _perturb(_dit(context_dim=6))
    else:
        torch.manual_seed(0)
        net = _perturb(dl.nets.UNet(1, 16, (1, 2), 1, (-1,), context_dim=6))
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    ctx = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = net(x, t, context=ctx, context_mask=mask)
        other = ctx.clone()
        other[~mask] = torch.randn(int((~mask).sum()), 6) * 10  # change only the padding
        assert torch.allclose(net(x, t, context=other, context_mask=mask), out, atol=1e-6)
        assert torch.isfinite(out).all()
        # a row of nothing but padding attends to the null alone: as context=None
        none = net(x, t)
        assert torch.allclose(out[2], none[2], atol=1e-6)
        assert not torch.allclose(out[0], none[0], atol=1e-4)
        changed = ctx.clone()
        changed[0, 1] += 1.0  # a real position matters
        assert not torch.allclose(net(x, t, context=changed, context_mask=mask)[0], out[0], atol=1e-6)


def test_a_fresh_cross_attention_adds_nothing_and_the_unet_keeps_its_zero_start():
    ca = CrossAttention(8, 5, 2)
    assert torch.equal(ca(torch.randn(2, 7, 8), torch.randn(2, 3, 5)), torch.zeros(2, 7, 8))
    torch.manual_seed(0)
    net = dl.nets.UNet(1, 16, (1, 2), 1, (-1,), context_dim=5, pooled_dim=3)
    out = net(torch.randn(2, 1, 8, 8), torch.rand(2), context=torch.randn(2, 4, 5), pooled=torch.randn(2, 3))
    assert torch.equal(out, torch.zeros_like(out))
    # without a context width the U-Net's modules are what they were (checkpoints of earlier runs still load)
    plain = dl.nets.UNet(1, 16, (1, 2), 1, (-1,))
    assert not any("attn.null" in k or "pooled" in k for k in plain.state_dict())


def test_context_and_pooled_errors_are_one_line():
    net = _dit(context_dim=6, pooled_dim=3)
    x, t = torch.randn(2, 1, 4, 4), torch.rand(2)
    with pytest.raises(ValueError, match=r"context must have shape \(2, length, 6\)"):
        net(x, t, context=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="context_mask must have shape"):
        net(x, t, context=torch.randn(2, 3, 6), context_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="pooled conditioning vector must have shape"):
        net(x, t, pooled=torch.randn(2, 4))
    plain = _dit()
    with pytest.raises(ValueError, match="takes no context"):
        plain(x, t, context=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="no pooled"):
        plain(x, t, pooled=torch.randn(2, 3))
    with pytest.raises(ValueError, match="divisible by the patch size 2"):
        plain(torch.randn(1, 1, 5, 4), t[:1])
    with pytest.raises(ValueError, match=r"shape \(batch, 1, H, W\)"):
        plain(torch.randn(1, 2, 4, 4), t[:1])


def test_dit_under_bf16_autocast_with_context():
    net = _perturb(_dit(context_dim=6, pooled_dim=3, num_classes=2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(2, 1, 4, 4), torch.rand(2), label=torch.tensor([0, -1]), context=torch.randn(2, 3, 6),
                  context_mask=torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool), pooled=torch.randn(2, 3))
    assert out.shape == (2, 1, 4, 4) and torch.isfinite(out).all()


def test_the_configuration_builds_a_dit_and_says_what_is_wrong():
    cfg = dl.config.load_config("fashion_mnist", ["model.kind=dit", "model.patch_size=4", "model.width=64",
                                                  "model.depth=2", "model.heads=2"])
    net = dl.config.build_model(cfg.model, (1, 28, 28), 10)
    assert isinstance(net, dl.nets.DiT) and net.patch == 4 and len(net.blocks) == 2 and net.classes is None
    with pytest.raises(ValueError, match=r"divisible by model.patch_size \(3\)"):
        dl.config.build_model(dl.config.load_config("digits", ["model.kind=dit", "model.patch_size=3"]).model, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="is for images"):
        dl.config.build_model(dl.config.load_config("toy2d", ["model.kind=dit"]).model, (2,), None)
    with pytest.raises(ValueError, match="divisible by 4"):
        dl.config.load_config("digits", ["model.kind=dit", "model.width=66", "model.heads=2"])
    with pytest.raises(ValueError, match="token network of discrete and autoregressive runs"):
        dl.config.load_config("digits", ["model.kind=transformer"])
    with pytest.raises(ValueError, match="not available"):
        dl.config.build_classifier(dl.config.load_config("fashion_mnist_classifier", ["model.kind=dit"]).model, (1, 28, 28), 10)


def test_a_dit_run_trains_resumes_and_samples(tmp_path):
    over = ["model.kind=dit", "model.patch_size=2", "model.width=32", "model.depth=2", "model.heads=2",
            "model.class_conditional=true", "diffusion.p_uncond=0.2", "train.steps=4", "train.batch_size=8",
            "train.checkpoint_every=2", "train.log_every=2", "train.ema_decay=0.9"]
    cfg = dl.config.load_config("digits", over)
    dl.runs.train(cfg, tmp_path / "a", resume=False, progress=False)
    dl.runs.train(cfg, tmp_path / "b", resume=False, progress=False, stop_after=2)
    dl.runs.train(cfg, tmp_path / "b", resume=True, progress=False)
    a, b = (dl.runs.load_network(tmp_path / r)[0].state_dict() for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    den, path, _ = dl.runs.load_guided(tmp_path / "a", scale=2.0)
    x = dl.sampling.sample_batched(den, path, 4, (1, 8, 8), sampler="ddim", steps=3, seed=0, cond={"label": torch.arange(4)})
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


def test_a_discrete_image_run_on_a_dit(tmp_path):
    cfg = dl.config.load_config("digits", ["kind=discrete", "data.levels=4", "discrete.path=absorbing", "discrete.steps=50",
                                           "model.kind=dit", "model.patch_size=2", "model.width=32", "model.depth=1",
                                           "model.heads=2", "train.steps=2", "train.batch_size=4"])
    dl.runs.train(cfg, tmp_path / "d", resume=False, progress=False)
    den, path, _ = dl.runs.load(tmp_path / "d")
    assert isinstance(dl.runs.load_network(tmp_path / "d")[0], dl.nets.CategoricalDiT)
    tokens, _ = dl.runs.sample_tokens(tmp_path / "d", 2, steps=5, seed=0, batch_size=2)
    assert tokens.shape == (2, 1, 8, 8) and int(tokens.max()) < 4
