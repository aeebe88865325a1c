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
