"""Prediction conversions: every pair round-trips through the hub, and matches its defining formula."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import difflab as dl
from conftest import ALL_PATHS

KINDS = dl.targets.KINDS


@settings(max_examples=60, deadline=None)
@given(
    path_name=st.sampled_from(list(ALL_PATHS)),
    source=st.sampled_from(KINDS),
    target=st.sampled_from(KINDS),
    t=st.floats(0.02, 0.98),
    seed=st.integers(0, 2**16),
)
def test_conversions_round_trip(path_name, source, target, t, seed):
    path = ALL_PATHS[path_name]()
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    tt = torch.full((3,), t, dtype=torch.float64)
    x_t = path.perturb(x0, tt, eps)
    pred = dl.targets.from_x0_eps(source, x0, eps, path, tt)
    # the hub inverts every kind exactly
    x0_back, eps_back = dl.targets.to_x0_eps(source, pred, x_t, path, tt)
    torch.testing.assert_close(x0_back, x0, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(eps_back, eps, rtol=1e-7, atol=1e-7)
    # source -> target -> source is the identity
    there = dl.targets.convert(pred, source, target, x_t, path, tt)
    torch.testing.assert_close(there, dl.targets.from_x0_eps(target, x0, eps, path, tt), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(dl.targets.convert(there, target, source, x_t, path, tt), pred, rtol=1e-6, atol=1e-6)


def test_kinds_match_their_definitions():
    path, t = dl.paths.VP(), torch.full((5,), 0.4, dtype=torch.float64)
    x0, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    # v (Salimans & Ho): alpha eps - sigma x0; and on VP v = d x_t / d phi with alpha = cos phi, sigma = sin phi
    torch.testing.assert_close(dl.targets.from_x0_eps("v", x0, eps, path, t), a * eps - s * x0)
    # score of q(x_t | x0) = N(alpha x0, sigma^2): -(x_t - alpha x0) / sigma^2
    x_t = path.perturb(x0, t, eps)
    torch.testing.assert_close(dl.targets.from_x0_eps("score", x0, eps, path, t), -(x_t - a * x0) / s**2)
    # velocity is d x_t / dt at fixed (x0, eps): compare with autograd through the path
    tt = t.clone().requires_grad_(True)
    xt = path.alpha(tt)[:, None] * x0 + path.sigma(tt)[:, None] * eps
    dxdt = torch.stack([torch.autograd.grad(xt[:, j].sum(), tt, retain_graph=True)[0] for j in range(2)], 1)
    torch.testing.assert_close(dl.targets.from_x0_eps("velocity", x0, eps, path, t), dxdt)


@pytest.mark.parametrize("kind", KINDS)
def test_error_scale_is_the_exact_ratio_of_errors(kind):
    """At fixed x_t, moving eps by d moves the kind's value by error_scale * d (in magnitude)."""
    path, t = dl.paths.Cosine(), torch.full((4,), 0.3, dtype=torch.float64)
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    x_t = path.perturb(x0, t, eps)
    d = 1e-3 * torch.randn(4, 3, dtype=torch.float64)
    x0_moved, _ = dl.targets.to_x0_eps("eps", eps + d, x_t, path, t)
    change = dl.targets.from_x0_eps(kind, x0_moved, eps + d, path, t) - dl.targets.from_x0_eps(kind, x0, eps, path, t)
    torch.testing.assert_close(change.abs(), dl.targets.error_scale(kind, path, t)[:, None] * d.abs())


def test_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="valid choices: eps, x0, v, score, velocity.*Did you mean 'eps'"):
        dl.targets.from_x0_eps("epsilon", torch.zeros(1, 2), torch.zeros(1, 2), dl.paths.VP(), 0.5)


def test_a_network_denoiser_evaluates_large_batches_in_parts_without_changing_them():
    torch.manual_seed(0)
    net = dl.nets.UNet(1, 8, (1, 2), 1, num_classes=3, context_dim=4).eval()
    for p in net.parameters():  # away from the zero-initialised output layers, so the check has something to compare
        torch.nn.init.normal_(p, std=0.1)
    sizes = []
    net.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    path = dl.paths.DiscreteVP.cosine(100)
    x, t = torch.randn(7, 1, 8, 8), torch.rand(7)
    cond = {"label": torch.tensor([0, 1, 2, -1, 0, 1, 2]), "context": torch.randn(7, 5, 4), "context_mask": None}
    whole = dl.as_denoiser(net, path, "v", chunk=0)
    parts = dl.as_denoiser(net, path, "v", chunk=3)
    with torch.no_grad():
        expected = whole(x, t, **cond)
        assert sizes == [7]
        got = parts(x, t, **cond)
        assert sizes[1:] == [3, 3, 1]  # every per-example tensor split alike, the rest (None) passed on
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        sizes.clear()
        parts(x, torch.tensor(0.5), label=cond["label"])  # one time for all: passed whole to every part
        assert sizes == [3, 3, 1]
    sizes.clear()
    parts(x, t, **cond)  # with gradients (DPS, distillation): one call, one graph
    assert sizes == [7]
    # by device: on a CPU, parts of at most CPU_PART_NUMBERS input numbers (of 64 numbers each here)
    sizes.clear()
    n = dl.denoisers.CPU_PART_NUMBERS // 64 + 1
    with torch.no_grad():
        dl.as_denoiser(net, path, "v")(torch.randn(n, 1, 8, 8), torch.rand(n))
    assert sizes == [n - 1, 1]
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="chunk must be"):
            dl.as_denoiser(net, path, "v", chunk=bad)
