"""Property-based tests (hypothesis): schedules with random parameters and grids, input validation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import difflab as dl

G = dl.samplers.grids

vp_params = st.tuples(st.floats(0.01, 5.0), st.floats(0.0, 30.0)).map(lambda p: (p[0], p[0] + p[1]))
paths = st.one_of(
    vp_params.map(lambda p: dl.paths.VP(*p)),
    vp_params.map(lambda p: dl.paths.SubVP(*p)),
    st.floats(0.0, 0.2).map(dl.paths.Cosine),
    st.tuples(st.floats(1e-3, 0.5), st.floats(2.0, 200.0)).map(lambda p: dl.paths.VE(p[0], p[0] * p[1])),
    st.just(dl.paths.Linear()),
    st.lists(st.floats(1e-4, 0.2), min_size=2, max_size=300).map(dl.paths.DiscreteVP),
)


@settings(max_examples=60, deadline=None)
@given(path=paths, t=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_schedules_are_valid_paths(path, t):
    t = torch.tensor(sorted(set(t)), dtype=torch.float64)
    a, s = path.alpha(t), path.sigma(t)
    assert bool(((a >= 0) & (a <= 1 + 1e-12) & (s >= 0)).all())
    inner = t[(t > 1e-6) & (t < 1 - 1e-6)]
    lam = path.log_snr(inner)
    assert bool((lam[1:] <= lam[:-1]).all()), "log-SNR must not increase"
    if isinstance(path, (dl.paths.VP, dl.paths.Cosine, dl.paths.DiscreteVP)) and not isinstance(path, dl.paths.SubVP):
        torch.testing.assert_close(a**2 + s**2, torch.ones_like(a))  # variance preserving
    f, g2 = path.drift_diffusion(inner)
    assert bool((g2 >= -1e-9).all()), "g^2 must be non-negative"


@settings(max_examples=40, deadline=None)
@given(path=paths, steps=st.integers(1, 60), grid=st.sampled_from(["uniform", "karras", "log_snr", "trailing", "leading"]))
def test_every_grid_is_a_valid_grid(path, steps, grid):
    if grid in ("trailing", "leading") and path.T is None:
        with pytest.raises(ValueError, match="discrete-time path"):
            G.make_grid(grid, path, steps)
        return
    if path.T is not None and steps > path.T:  # a discrete path of T times takes at most T steps on every grid
        with pytest.raises(ValueError, match="at most T"):
            G.make_grid(grid, path, steps)
        return
    ts = G.make_grid(grid, path, steps)
    assert ts.numel() == steps + 1 and float(ts[-1]) == 0.0
    dl.samplers.check_grid(ts)  # strictly decreasing, inside [0, 1]


@settings(max_examples=60, deadline=None)
@given(ts=st.lists(st.one_of(st.floats(-2.0, 3.0), st.just(float("nan")), st.just(float("inf"))), min_size=0, max_size=6))
def test_invalid_grids_are_refused_and_valid_ones_accepted(ts):
    valid = (len(ts) >= 2 and all(0 <= v <= 1 for v in ts) and all(a > b for a, b in zip(ts, ts[1:])))
    if valid:
        dl.samplers.check_grid(ts)
    else:
        with pytest.raises(ValueError):
            dl.samplers.check_grid(ts)
