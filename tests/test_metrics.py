"""Sliced Wasserstein against closed forms."""

import math

import pytest
import torch

import difflab as dl
from conftest import gen


def test_sliced_w2_of_a_shift():
    """In 1-D it is W2 = |m|; in d dimensions a shift m gives E_theta (theta . m)^2 = |m|^2 / d."""
    x = torch.randn(5000, 1, dtype=torch.float64, generator=gen(0))
    assert dl.metrics.sliced_wasserstein(x, x + 0.7, projections=4) == pytest.approx(0.7, rel=1e-12)
    x = torch.randn(3000, 5, dtype=torch.float64, generator=gen(1))
    m = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    sw = dl.metrics.sliced_wasserstein(x, x + m, projections=20000, generator=gen(2))
    assert sw == pytest.approx(float(m.norm()) / math.sqrt(5), rel=0.02)


def test_sliced_w2_of_a_scaling_and_of_unequal_sizes():
    """1-D Gaussians: W2(N(0,1), N(0,s^2)) = |1 - s|; samples of different sizes go through quantiles."""
    x = torch.randn(200_000, 1, dtype=torch.float64, generator=gen(3))
    y = 2.0 * torch.randn(50_000, 1, dtype=torch.float64, generator=gen(4))
    assert dl.metrics.sliced_wasserstein(x, y, projections=2) == pytest.approx(1.0, abs=0.02)
    same = dl.metrics.sliced_wasserstein(x, torch.randn(70_000, 1, dtype=torch.float64, generator=gen(5)), projections=2)
    assert same < 0.02


def test_sliced_w2_refuses_mismatched_or_bad_samples():
    with pytest.raises(ValueError, match="different dimensions"):
        dl.metrics.sliced_wasserstein(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        dl.metrics.sliced_wasserstein(torch.tensor([[float("nan"), 0.0]]), torch.zeros(3, 2))


def test_exact_w2_against_brute_force_sorting_and_shifts():
    import itertools

    x = torch.randn(6, 3, dtype=torch.float64, generator=gen(6))
    y = torch.randn(6, 3, dtype=torch.float64, generator=gen(7)) + 1
    cost = torch.cdist(x, y).pow(2)
    brute = min(float(cost[torch.arange(6), torch.tensor(p)].mean()) for p in itertools.permutations(range(6)))
    assert dl.metrics.wasserstein2(x, y) == pytest.approx(math.sqrt(brute), rel=1e-10)
    # 1-D: the optimal plan matches sorted samples
    a, b = torch.randn(300, 1, dtype=torch.float64, generator=gen(8)), 3 * torch.rand(300, 1, dtype=torch.float64, generator=gen(9))
    sorted_w2 = float(((a.sort(0).values - b.sort(0).values) ** 2).mean().sqrt())
    assert dl.metrics.wasserstein2(a, b) == pytest.approx(sorted_w2, rel=1e-10)
    # a shift m moves an empirical measure by exactly |m| (the identity plan is optimal)
    m = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    x = torch.randn(200, 3, dtype=torch.float64, generator=gen(10))
    assert dl.metrics.wasserstein2(x, x + m) == pytest.approx(float(m.norm()), rel=1e-9)
    assert dl.metrics.wasserstein2(x, x) == pytest.approx(0.0, abs=1e-12)
    # unequal sizes: a point mass against a sample is the root mean squared distance to it
    assert dl.metrics.wasserstein2(torch.zeros(1, 3), x) == pytest.approx(float((x**2).sum(1).mean().sqrt()), rel=1e-9)
    with pytest.raises(ValueError, match="different dimensions"):
        dl.metrics.wasserstein2(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="subsample"):
        dl.metrics.wasserstein2(torch.zeros(20, 2), torch.zeros(20, 2), max_points=10)


def test_path_energy_of_straight_lines_and_bad_input():
    x0, x1 = torch.randn(100, 2, generator=gen(11)), torch.randn(100, 2, generator=gen(12))
    ts = torch.tensor([0.0, 0.1, 0.5, 1.0])
    states = [x0 + float(t) * (x1 - x0) for t in ts]  # constant speed: energy = ||x1 - x0||^2 on any grid
    assert dl.metrics.path_energy(states, ts) == pytest.approx(float(((x1 - x0) ** 2).sum(1).mean()), rel=1e-6)
    # the same end points reached at uneven speed cost more (Cauchy-Schwarz)
    uneven = [x0 + float(t) ** 2 * (x1 - x0) for t in torch.linspace(0, 1, 50)]
    assert dl.metrics.path_energy(uneven, torch.linspace(0, 1, 50)) > 1.3 * float(((x1 - x0) ** 2).sum(1).mean())
    assert dl.metrics.normalized_path_energy(5.0, 2.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="as many states as times"):
        dl.metrics.path_energy(states, ts[:3])
    with pytest.raises(ValueError, match="distinct"):
        dl.metrics.path_energy(states[:2], [0.5, 0.5])


def test_mmd_and_energy_distance_against_closed_forms():
    # a single RBF kernel between point masses: MMD^2 = k(0) + k(0) - 2 k(d) = 2 - 2 exp(-d^2 / 2h^2)
    # (the U-statistic needs 2 points per side: two copies of each mass)
    x, y = torch.zeros(2, 2, dtype=torch.float64), torch.tensor([[3.0, 4.0], [3.0, 4.0]], dtype=torch.float64)
    assert dl.metrics.mmd(x, y, bandwidths=[2.0]) == pytest.approx(2 - 2 * math.exp(-25 / 8), rel=1e-12)
    # energy distance between point masses at distance d is 2d
    assert dl.metrics.energy_distance(x, y) == pytest.approx(10.0, rel=1e-12)
    # 1-D: between N(0, 1) and N(m, 1) the energy distance is 2 E|Z sqrt(2) + m| - 2 E|Z sqrt 2| (folded normals)
    m = 1.0
    a = torch.randn(3000, 1, dtype=torch.float64, generator=gen(13))
    b = torch.randn(3000, 1, dtype=torch.float64, generator=gen(14)) + m
    s = math.sqrt(2)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-m**2 / (2 * s**2)) + m * math.erf(m / (s * math.sqrt(2)))
    exact = 2 * folded - 2 * s * math.sqrt(2 / math.pi)
    assert dl.metrics.energy_distance(a, b) == pytest.approx(exact, abs=0.03)
    with pytest.raises(ValueError, match="positive"):
        dl.metrics.mmd(a, b, bandwidths=[0.0])


def test_every_distance_is_about_zero_on_itself_and_grows_with_noise():
    mix = dl.oracles.ring_mixture(8, 2.0, 0.2)
    x = mix.sample(800, gen(15))
    ref = mix.sample(800, gen(16))
    eps = torch.randn(800, 2, dtype=torch.float64, generator=gen(17))
    dists = {"sliced_w2": lambda p, q: dl.metrics.sliced_wasserstein(p, q, generator=gen(18)),
             "w2": dl.metrics.wasserstein2, "mmd": dl.metrics.mmd, "energy": dl.metrics.energy_distance}
    for name, d in dists.items():
        assert abs(d(ref, ref)) < 0.05 * d(ref + 2.0 * eps, ref), name  # unbiased estimators: O(1/n) below 0
        vals = [d(ref + s * eps, ref) for s in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)]
        assert all(a < b for a, b in zip(vals, vals[1:])), (name, vals)
        # an independent draw of the same data scores the noise floor, far below a noisy copy
        floor, spread = dl.metrics.noise_floor(d, lambda n, g: mix.sample(n, g), 800, seeds=3)
        assert abs(d(x, ref) - floor) < 5 * spread + 0.02 * vals[-1], (name, d(x, ref), floor, spread)
        assert vals[-1] > 5 * abs(floor) + 1e-3, (name, vals[-1], floor)


def test_frechet_distance_against_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 for N(m1, s1^2), N(m2, s2^2)
    stats = lambda m, c: (torch.tensor(m, dtype=torch.float64), torch.tensor(c, dtype=torch.float64))  # noqa: E731
    assert dl.metrics.frechet_distance(stats([1.0], [[4.0]]), stats([-1.0], [[1.0]])) == pytest.approx(4 + 1, rel=1e-12)
    # commuting (diagonal) covariances: sum of the per-axis 1-D distances
    fd = dl.metrics.frechet_distance(stats([0.0, 1.0], [[1.0, 0], [0, 9.0]]), stats([0.0, 0.0], [[4.0, 0], [0, 1.0]]))
    assert fd == pytest.approx(1 + (1 - 2) ** 2 + (3 - 1) ** 2, rel=1e-12)
    # general covariances against SciPy's matrix square root, and invariance under a rotation of both
    from scipy.linalg import sqrtm

    a, b = torch.randn(5, 5, dtype=torch.float64, generator=gen(20)), torch.randn(5, 5, dtype=torch.float64, generator=gen(21))
    c1, c2 = a @ a.T + 0.1 * torch.eye(5, dtype=torch.float64), b @ b.T
    m1, m2 = torch.randn(5, dtype=torch.float64, generator=gen(22)), torch.zeros(5, dtype=torch.float64)
    ref = float(((m1 - m2) ** 2).sum() + c1.trace() + c2.trace() - 2 * sqrtm((c1 @ c2).numpy()).real.trace())
    assert dl.metrics.frechet_distance((m1, c1), (m2, c2)) == pytest.approx(ref, rel=1e-8)
    q = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64, generator=gen(23)))[0]
    rotated = dl.metrics.frechet_distance((q @ m1, q @ c1 @ q.T), (q @ m2, q @ c2 @ q.T))
    assert rotated == pytest.approx(ref, rel=1e-8)
    # from samples: ~0 against itself, and it is the squared W2 of the fitted Gaussians
    x = torch.randn(4000, 3, dtype=torch.float64, generator=gen(24))
    assert abs(dl.metrics.frechet_distance(x, x)) < 1e-9
    assert dl.metrics.frechet_distance(x, 2 * x + 1) == pytest.approx(3 * 1 + 3 * 1, rel=0.05)


def test_precision_falls_off_the_data_and_recall_when_modes_drop():
    mix = dl.oracles.ring_mixture(8, 4.0, 0.3)
    real = mix.sample(2000, gen(25))
    same = dl.metrics.precision_recall(real, mix.sample(2000, gen(26)))
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and same["coverage"] > 0.8
    assert 0.7 < same["density"] < 1.3  # ~1 for a sample of the data itself
    # samples leaving the data: precision falls, step by step
    x = mix.sample(2000, gen(27))
    noisy = [dl.metrics.precision_recall(real, x + s * torch.randn(x.shape, dtype=x.dtype, generator=gen(28)))["precision"]
             for s in (0.0, 0.5, 1.5)]
    assert noisy[0] > noisy[1] > noisy[2] and noisy[2] < 0.5, noisy
    # four of the eight modes only: still precise, but recall and coverage about halve
    modes = mix.classify(x)
    half = dl.metrics.precision_recall(real, x[modes < 4])
    assert half["precision"] > 0.8 and half["recall"] < 0.6 and half["coverage"] < 0.6, half
    with pytest.raises(ValueError, match="more than k"):
        dl.metrics.precision_recall(real, x[:3])
