r"""Objectives: what a model is trained to do, as one callable the training loop can use without knowing it.

An objective is any callable

    objective(model, batch, generator) -> per-example loss, shape (B,),

where `batch` is a mapping with the examples under "x" and whatever conditioning the data carry
under the names the model takes them by ("label", later a low-resolution image or a caption
embedding), and `generator` is the only source of randomness (times, noise, pairings). The training
loop averages the loss, steps the optimiser and does the bookkeeping; it knows nothing of paths,
couplings, predictions or weightings. New model kinds (classifiers, autoencoders, categorical
diffusion) are new objectives, not new branches in the loop.

`DiffusionObjective` is denoising regression on an affine path (every prediction and weighting of
`losses.diffusion_loss`) and, with a coupling or a data-set source, conditional flow matching
(`losses.flow_matching_loss`): per batch it draws t from its time sampler, then the source batch z
(N(0, I), or `source.sample`), pairs z with the data by `coupling` (within each class when the model
is class-conditional) and regresses the model's prediction at x_t = alpha(t) x + sigma(t) z.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from . import losses
from ._checks import choose
from ._random import randn
from .couplings import COUPLINGS, couple

__all__ = ["Objective", "DiffusionObjective", "model_inputs"]

Objective = Callable[[torch.nn.Module, Mapping[str, Tensor], torch.Generator], Tensor]


def model_inputs(batch: Mapping[str, Tensor], conditions: tuple[str, ...]) -> dict[str, Tensor]:
    """The conditioning a model takes, by name, from a batch (a missing field is a clear error)."""
    missing = [c for c in conditions if c not in batch]
    if missing:
        raise ValueError(f"the model is conditioned on {', '.join(conditions)} but the batch has no "
                         f"{', '.join(missing)} (it holds: {', '.join(batch)})")
    return {c: batch[c] for c in conditions}


class DiffusionObjective:
    """Denoising regression / flow matching on `path` (module doc); `conditions` names the batch fields
    the model is conditioned on (e.g. ("label",)), passed to it as keywords."""

    def __init__(self, path, *, prediction: str = "eps", weighting: str | Callable = "simple", time_sampler=None,
                 source=None, coupling: str = "independent", coupling_reg: float = 0.05,
                 conditions: tuple[str, ...] = ()):
        from .targets import KINDS

        self.path = path
        self.prediction = choose(prediction, KINDS, "prediction kind")
        self.time_sampler = time_sampler or losses.default_time_sampler(path)
        if isinstance(weighting, str):
            losses.check_weighting(weighting, path, self.time_sampler)
        self.weighting = weighting
        self.source = source
        self.coupling = choose(coupling, COUPLINGS, "coupling")
        self.coupling_reg = float(coupling_reg)
        self.conditions = tuple(conditions)

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        x0 = batch["x"]
        cond = model_inputs(batch, self.conditions)
        # the draws come in a fixed order (t, then the source, then the pairing): a run resumes bit for bit
        t = self.time_sampler(x0.shape[0], generator=generator).to(x0.device)
        if self.source is None:
            z = randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        else:
            z = self.source.sample(x0.shape[0], generator).to(device=x0.device, dtype=x0.dtype)
        if self.coupling != "independent":  # minibatch OT: each example with its partner (within its class)
            z = z[couple(x0, z, self.coupling, labels=cond.get("label"), reg=self.coupling_reg, generator=generator)]
        return losses.diffusion_loss(model, self.path, x0, prediction=self.prediction, weighting=self.weighting, t=t,
                                     noise=z, cond=cond)

    def __repr__(self) -> str:
        extra = f", coupling={self.coupling!r}" if self.coupling != "independent" else ""
        return (f"DiffusionObjective({self.path!r}, prediction={self.prediction!r}, weighting={self.weighting!r}"
                f"{extra}, conditions={self.conditions})")
