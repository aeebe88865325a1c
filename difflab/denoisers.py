r"""Denoisers: the one interface every sampler consumes.

A denoiser is any callable `D(x_t, t, **cond) -> E[x0 | x_t]` with `t` of shape `(B,)`. Whatever a
network predicts (eps, x0, v, score or velocity, see `difflab.targets`), `as_denoiser` turns it
into this form, so every sampler works with every parameterisation. By Tweedie's formula the
denoiser and the score carry the same information:

    score(x_t, t) = (alpha(t) D(x_t, t) - x_t) / sigma(t)^2,     eps_hat = (x_t - alpha D) / sigma.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from . import targets
from ._checks import choose

__all__ = ["as_denoiser", "NetworkDenoiser", "CountingDenoiser", "count_calls", "score_from_denoiser", "clipped"]

Denoiser = Callable[..., Tensor]


class NetworkDenoiser:
    """D(x_t, t, **cond) from a network `net(x_t, t, **cond)` that predicts `prediction`."""

    def __init__(self, net: Callable[..., Tensor], path, prediction: str = "eps"):
        self.net = net
        self.path = path
        self.prediction = choose(prediction, targets.KINDS, "prediction kind")

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        pred = self.net(x_t, t, **cond)
        if pred.shape != x_t.shape:
            raise ValueError(
                f"the network returned shape {tuple(pred.shape)} for an input of shape {tuple(x_t.shape)}; "
                "a diffusion network must return a prediction of the input's shape"
            )
        if self.prediction == "x0":
            return pred
        x0, _ = targets.to_x0_eps(self.prediction, pred, x_t, self.path, t)
        return x0

    def __repr__(self) -> str:
        return f"NetworkDenoiser(prediction={self.prediction!r}, path={self.path!r})"


def as_denoiser(net: Callable[..., Tensor], path, prediction: str = "eps") -> NetworkDenoiser:
    """Wrap a network predicting `prediction` (one of `targets.KINDS`) as D(x_t, t) = E[x0 | x_t]."""
    return NetworkDenoiser(net, path, prediction)


class CountingDenoiser:
    """Counts the network evaluations (NFE) made through it; one call on a batch is one NFE."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser
        self.nfe = 0

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        self.nfe += 1
        return self.denoiser(x_t, t, **cond)


def count_calls(denoiser: Denoiser) -> CountingDenoiser:
    return CountingDenoiser(denoiser)


def score_from_denoiser(denoiser: Denoiser, path, x_t: Tensor, t: Tensor, **cond) -> Tensor:
    """Tweedie: grad log p_t(x_t) = (alpha D(x_t, t) - x_t) / sigma^2."""
    x0 = denoiser(x_t, t, **cond)
    _, eps = targets.to_x0_eps("x0", x0, x_t, path, t)
    return targets.from_x0_eps("score", x0, eps, path, t)


class ClippedDenoiser:
    """D clamped to [low, high]: when the data lie in that box, so does E[x0 | x_t] (a convex combination
    of data), so clamping only removes error. It tames the x0 = (x_t - sigma eps) / alpha blow-up of an
    eps-predicting network near t = 1, where alpha is tiny (Ho et al.'s `clip_denoised`)."""

    def __init__(self, denoiser: Denoiser, low: float = -1.0, high: float = 1.0):
        if not low < high:
            raise ValueError(f"need low < high, got {low}, {high}")
        self.denoiser, self.low, self.high = denoiser, float(low), float(high)

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        return self.denoiser(x_t, t, **cond).clamp(self.low, self.high)


def clipped(denoiser: Denoiser, low: float = -1.0, high: float = 1.0) -> ClippedDenoiser:
    return ClippedDenoiser(denoiser, low, high)
