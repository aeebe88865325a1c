r"""Denoisers: the one interface every sampler consumes.

A denoiser is any callable `D(x_t, t, **cond) -> E[x0 | x_t]` with `t` of shape `(B,)`. Whatever a
network predicts (eps, x0, v, score or velocity, see `difflab.targets`), `as_denoiser` turns it
into this form, so every sampler works with every parameterisation. By Tweedie's formula the
denoiser and the score carry the same information:

    score(x_t, t) = (alpha(t) D(x_t, t) - x_t) / sigma(t)^2,     eps_hat = (x_t - alpha D) / sigma.

Network evaluations (NFE) are counted where the network is called: a sampler (or a likelihood)
counts the examples that pass through the network during its run, divided by its batch size, so
a denoiser that evaluates the network twice per call (guidance: a conditional and an unconditional
pass, even as one doubled batch) reports twice the NFE. A `NetworkDenoiser` reports its own
evaluations (`record_evaluation`); any other callable (an oracle, a lambda) counts as one
evaluation of its batch per call, unless something inside it reports. `counted(den)` gives a plain
callable that rule when a transform calls it more than once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

import torch
from torch import Tensor

from . import targets
from ._checks import choose

__all__ = ["as_denoiser", "NetworkDenoiser", "CountingDenoiser", "count_calls", "counted", "record_evaluation",
           "score_from_denoiser", "clipped"]

Denoiser = Callable[..., Tensor]


# On a CPU a network call on a large batch costs more per example than on a smaller one (its activations outgrow
# the caches, and large buffers are mapped and zeroed afresh by the allocator on every call): without gradients a
# NetworkDenoiser evaluates a large batch in parts whose inputs hold at most this many numbers (83 Fashion-MNIST
# images; on the fashion_mnist_cond network at batch 512, parts of 64-128 took 1.31 ms per image against 1.82 in
# one call: benchmarks/README.md, "Sampling throughput"); small inputs (2-d toys) keep large parts, where each
# call's fixed cost would dominate.
# Each example's output does not depend on the others', so the parts give the same denoiser.
CPU_PART_NUMBERS = 65_536


def _rows(value, n: int, part: slice):
    """`value`'s rows in `part` if it holds one row per example (a tensor whose first dimension is n), else itself."""
    return value[part] if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == n else value


class NetworkDenoiser:
    """D(x_t, t, **cond) from a network `net(x_t, t, **cond)` that predicts `prediction`.

    `chunk`: without gradients, evaluate the network on at most this many examples at a time (None: by device,
    on a CPU parts of at most `CPU_PART_NUMBERS` input numbers, elsewhere the whole batch; 0: always the whole
    batch). The network must treat examples independently (in eval mode every difflab network does)."""

    def __init__(self, net: Callable[..., Tensor], path, prediction: str = "eps", chunk: int | None = None):
        self.net = net
        self.path = path
        self.prediction = choose(prediction, targets.KINDS, "prediction kind")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0):
            raise ValueError(f"chunk must be a number of examples >= 1, 0 (no parts) or None (by device), got {chunk!r}")
        self.chunk = chunk

    def _evaluate(self, x_t: Tensor, t: Tensor, cond: dict) -> Tensor:
        n = x_t.shape[0]
        if self.chunk is not None:
            size = self.chunk
        else:
            size = max(1, CPU_PART_NUMBERS * n // max(1, x_t.numel())) if x_t.device.type == "cpu" else 0
        if not size or n <= size or torch.is_grad_enabled():
            return self.net(x_t, t, **cond)
        parts = [slice(i, i + size) for i in range(0, n, size)]
        return torch.cat([self.net(x_t[p], _rows(t, n, p), **{k: _rows(v, n, p) for k, v in cond.items()}) for p in parts])

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        record_evaluation(x_t.shape[0])
        pred = self._evaluate(x_t, t, cond)
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


def as_denoiser(net: Callable[..., Tensor], path, prediction: str = "eps", chunk: int | None = None) -> NetworkDenoiser:
    """Wrap a network predicting `prediction` (one of `targets.KINDS`) as D(x_t, t) = E[x0 | x_t] (`chunk`: see
    `NetworkDenoiser`)."""
    return NetworkDenoiser(net, path, prediction, chunk)


class _Tally:
    """Examples evaluated by the network during one counted run (`marks` tells whether any were reported)."""

    def __init__(self):
        self.examples = 0.0
        self.marks = 0

    def add(self, n: int) -> None:
        self.examples += n
        self.marks += 1


_TALLY: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar("difflab_nfe_tally", default=None)


def record_evaluation(batch: int) -> None:
    """Report that the network evaluated `batch` examples (a no-op outside a counted run)."""
    tally = _TALLY.get()
    if tally is not None:
        tally.add(int(batch))


class _Counted:
    """A denoiser that reports one evaluation of its batch per call, unless its inner denoiser reported."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = denoiser

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        tally = _TALLY.get()
        if tally is None:
            return self.denoiser(x_t, t, **cond)
        marks = tally.marks
        out = self.denoiser(x_t, t, **cond)
        if tally.marks == marks:  # a plain callable: the call is the evaluation
            tally.add(x_t.shape[0])
        return out


def counted(denoiser: Denoiser) -> Denoiser:
    """`denoiser`, counted as one network evaluation of its batch per call unless it reports its own
    (see the module doc); for transforms that call a denoiser several times."""
    return denoiser if isinstance(denoiser, (_Counted, NetworkDenoiser)) else _Counted(denoiser)


class CountingDenoiser:
    """Counts the network evaluations (NFE) made through it: the examples the network evaluated during
    its calls divided by the batch of each call (one call of a plain network on a batch is one NFE)."""

    def __init__(self, denoiser: Denoiser):
        self.denoiser = _Counted(denoiser)
        self._nfe = 0.0

    @property
    def nfe(self) -> int | float:
        return int(self._nfe) if float(self._nfe).is_integer() else self._nfe

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        tally = _Tally()
        token = _TALLY.set(tally)
        try:
            out = self.denoiser(x_t, t, **cond)
        finally:
            _TALLY.reset(token)
        self._nfe += tally.examples / max(x_t.shape[0], 1)
        return out


def count_calls(denoiser: Denoiser) -> CountingDenoiser:
    return CountingDenoiser(denoiser)


def score_from_denoiser(denoiser: Denoiser, path, x_t: Tensor, t: Tensor, **cond) -> Tensor:
    """Tweedie: grad log p_t(x_t) = (alpha D(x_t, t) - x_t) / sigma^2."""
    x0 = denoiser(x_t, t, **cond)
    _, eps = targets.to_x0_eps("x0", x0, x_t, path, t)
    return targets.from_x0_eps("score", x0, eps, path, t)  # = targets.score_of with the path's alpha, sigma


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
