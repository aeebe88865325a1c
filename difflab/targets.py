r"""What a network predicts, and the conversions between kinds, through one hub.

Given x_t = alpha x0 + sigma eps on an affine path, any one of these determines the others:

    eps       the noise                                   eps
    x0        the clean data                              x0
    v         Salimans & Ho's velocity                    v = alpha eps - sigma x0
    score     grad log p(x_t | x0)                        score = -eps / sigma
    velocity  the path's time derivative (flow matching)  u = alpha' x0 + sigma' eps   (= dx_t/dt)

Every conversion goes through the hub (x0, eps): `to_x0_eps` inverts a prediction, `from_x0_eps`
forms one, so adding a kind costs two formulas instead of a row and a column of pairwise ones.
With predicted (x0, eps) the same maps turn an estimate of E[x0 | x_t] into the corresponding
estimate of any other kind, because they are affine in (x0, eps) for fixed x_t.

Inversions: v gives x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2), eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)
(defined on every path, not only VP); velocity gives x0 = (sigma' x_t - sigma u) / det,
eps = (alpha u - alpha' x_t) / det with det = alpha sigma' - sigma alpha' (> 0: the log-SNR decreases).
`velocity` is d x_t / dt in difflab's time (t = 1 noise); papers that put data at t = 1 use -u.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import append_dims, batch_times, choose

__all__ = ["KINDS", "to_x0_eps", "from_x0_eps", "convert", "error_scale", "eps_of", "score_of"]

KINDS = ("eps", "x0", "v", "score", "velocity")


def eps_of(x_t: Tensor, x0: Tensor, alpha, sigma) -> Tensor:
    """The noise that x_t = alpha x0 + sigma eps implies: eps = (x_t - alpha x0) / sigma (alpha, sigma
    numbers or tensors that broadcast). With x0 = D(x_t) it is the posterior mean eps_hat."""
    return (x_t - alpha * x0) / sigma


def score_of(x_t: Tensor, x0: Tensor, alpha, sigma) -> Tensor:
    """Tweedie's formula: grad log p_t(x_t) = (alpha E[x0 | x_t] - x_t) / sigma^2 = -eps_hat / sigma."""
    return (alpha * x0 - x_t) / sigma**2


def _coefs(path, t, x: Tensor, derivatives: bool):
    t = batch_times(t, x)
    out = [path.alpha(t), path.sigma(t)]
    if derivatives:
        out += [path.d_alpha(t), path.d_sigma(t)]
    return [append_dims(c, x.ndim).to(x.dtype) for c in out]


def to_x0_eps(kind: str, pred: Tensor, x_t: Tensor, path, t) -> tuple[Tensor, Tensor]:
    """Invert a prediction of `kind` at (x_t, t) into the hub pair (x0, eps)."""
    choose(kind, KINDS, "prediction kind")
    a, s, *d = _coefs(path, t, x_t, kind == "velocity")
    if kind == "eps":
        return (x_t - s * pred) / a, pred
    if kind == "x0":
        return pred, eps_of(x_t, pred, a, s)
    if kind == "v":
        n = a**2 + s**2
        return (a * x_t - s * pred) / n, (s * x_t + a * pred) / n
    if kind == "score":
        return (x_t + s**2 * pred) / a, -s * pred
    da, ds = d  # velocity
    det = a * ds - s * da
    return (ds * x_t - s * pred) / det, (a * pred - da * x_t) / det


def from_x0_eps(kind: str, x0: Tensor, eps: Tensor, path, t) -> Tensor:
    """Form the prediction of `kind` from the hub pair (x0, eps) at time t."""
    choose(kind, KINDS, "prediction kind")
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    a, s, *d = _coefs(path, t, x0, kind == "velocity")
    if kind == "v":
        return a * eps - s * x0
    if kind == "score":
        return -eps / s
    da, ds = d
    return da * x0 + ds * eps


def convert(pred: Tensor, source: str, target: str, x_t: Tensor, path, t) -> Tensor:
    """Convert a prediction of kind `source` into kind `target` at (x_t, t)."""
    x0, eps = to_x0_eps(source, pred, x_t, path, t)
    return from_x0_eps(target, x0, eps, path, t)


def error_scale(kind: str, path, t) -> Tensor:
    """|c_kind(t)| such that, at fixed x_t, an error of kind `kind` is c_kind(t) times the eps error.

    At fixed x_t an eps error e moves x0 by -(sigma / alpha) e, so the error of every kind is the
    linear part of `from_x0_eps` applied to (x0, eps) = (-sigma / alpha, 1). Losses use it to put
    every weighting on one (eps) scale.
    """
    t = torch.as_tensor(t)
    t = (t if t.is_floating_point() else t.to(torch.get_default_dtype())).reshape(-1)
    one = torch.ones_like(t)
    a, s = path.alpha(t), path.sigma(t)
    return from_x0_eps(kind, -s / a * one, one, path, t).abs()
