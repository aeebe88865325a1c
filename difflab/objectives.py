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
(N(0, I), or `source.sample`; a batch that holds "noise" brings its own, paired with each example: reflow),
pairs z with the data by `coupling` (within each class when the model
is class-conditional) and regresses the model's prediction at x_t = alpha(t) x + sigma(t) z. With
`p_uncond` > 0 each example's label is replaced by the null label -1 with that probability (Ho &
Salimans 2021) — or, with `null`, its conditioning by that null condition (a text model: the empty
caption's embedding) — so one network learns the conditional and the unconditional model that
classifier-free guidance combines. A super-resolution model is conditioned on the batch's "low_res" (the
image's block average); with `low_res_noise` > 0 that image is first noised on the same path to a level
s ~ U[0, low_res_noise] (noise-conditioning augmentation, Ho et al. 2021: the second stage of a cascade
must not trust a perfect low-resolution image the first stage never draws), and the network is told s as
"low_res_level" (0 without augmentation).

`CategoricalObjective` trains categorical diffusion (`difflab.discrete`): the network's softmax is
p(x0 | x_t), and the loss is D3PM's bound ("vb"), its hybrid with the cross-entropy ("hybrid", weight
`lam`), or the continuous-time masked-diffusion bound ("masked"); `AutoregressiveObjective` is the exact
next-token negative log-likelihood of a causal network, the reference the bounds are read against.

`AutoencoderObjective` trains the first stage of latent diffusion (Rombach et al. 2022; `nets.VAE`): with
q(z | x) = N(mean, diag exp(logvar)) from the encoder and z = mean + exp(logvar / 2) eps drawn once, the
per-example loss is

    ( sum_pixels rec(x, decode(z)) + kl_weight * KL(q(z | x) || N(0, I)) ) / D,
    KL = 1/2 sum_latents (mean^2 + exp(logvar) - 1 - logvar),

rec the squared ("l2") or absolute ("l1") error and D the number of pixels (dividing by D keeps the loss's
scale that of a per-pixel error; the ratio of the two terms is kl_weight's alone). kl_weight = 1 with l2
is the negative ELBO of a Gaussian decoder of variance 1/2 up to constants; LDM uses a small weight
(1e-6 with its perceptual loss) so the latents keep detail and the KL only keeps their scale in check.

`ClassifierObjective` trains a noise-conditional classifier p_t(c | x_t) on the same path (Dhariwal &
Nichol 2021): cross-entropy of `model(x_t, t)`'s logits against the labels, at x_t = alpha x + sigma z
with t from the path's time sampler: what classifier guidance needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from . import losses
from ._checks import choose
from ._random import rand, randn
from .couplings import COUPLINGS, couple

__all__ = ["Objective", "DiffusionObjective", "ClassifierObjective", "AutoencoderObjective", "CategoricalObjective", "AutoregressiveObjective",
           "model_inputs", "drop_labels", "NULL_LABEL"]

Objective = Callable[[torch.nn.Module, Mapping[str, Tensor], torch.Generator], Tensor]


def model_inputs(batch: Mapping[str, Tensor], conditions: tuple[str, ...]) -> dict[str, Tensor]:
    """The conditioning a model takes, by name, from a batch (a missing field is a clear error)."""
    missing = [c for c in conditions if c not in batch]
    if missing:
        raise ValueError(f"the model is conditioned on {', '.join(conditions)} but the batch has no "
                         f"{', '.join(missing)} (it holds: {', '.join(batch)})")
    return {c: batch[c] for c in conditions}


NULL_LABEL = {"label": -1}


def drop_labels(cond: dict, p_uncond: float, generator, null: Mapping | None = None) -> dict:
    """Condition dropout: with probability `p_uncond` each example's conditioning is replaced by the null
    condition (`null`: field -> value, a number or one row that every dropped example takes; the null label -1
    by default, the empty caption's embedding for a text model), which teaches the same network the
    unconditional model (one draw per example, none when p_uncond = 0)."""
    if not p_uncond:
        return cond
    null = NULL_LABEL if null is None else null
    first = cond[next(iter(null))]
    drop = rand((first.shape[0],), generator=generator, dtype=torch.float64).to(first.device) < p_uncond
    out = dict(cond)
    for key, value in null.items():
        v = cond[key]
        nv = torch.as_tensor(value, dtype=v.dtype, device=v.device)
        nv = nv.expand(v.shape) if nv.ndim == 0 or nv.shape[0] == 1 else nv
        out[key] = torch.where(drop.reshape(-1, *[1] * (v.ndim - 1)), nv, v)
    return out


def _check_dropout(p_uncond: float, conditions, null: Mapping | None = None) -> float:
    if not 0 <= p_uncond < 1:
        raise ValueError(f"p_uncond (the probability of dropping a condition) must lie in [0, 1), got {p_uncond}")
    fields = list(NULL_LABEL if null is None else null)
    if p_uncond and not set(fields) <= set(conditions):
        what = "class labels: it needs a class-conditional model (conditions with 'label')" if null is None else \
            f"{', '.join(fields)}: the model must be conditioned on them"
        raise ValueError(f"p_uncond drops {what}")
    return float(p_uncond)


class DiffusionObjective:
    """Denoising regression / flow matching on `path` (module doc); `conditions` names the batch fields
    the model is conditioned on (e.g. ("label",)), passed to it as keywords."""

    def __init__(self, path, *, prediction: str = "eps", weighting: str | Callable = "simple", snr_gamma: float = 5.0,
                 time_sampler=None, source=None, coupling: str = "independent", coupling_reg: float = 0.05,
                 conditions: tuple[str, ...] = (), p_uncond: float = 0.0, null: Mapping | None = None,
                 low_res_noise: float = 0.0):
        from .targets import KINDS

        self.path = path
        self.prediction = choose(prediction, KINDS, "prediction kind")
        self.time_sampler = time_sampler or losses.default_time_sampler(path)
        if isinstance(weighting, str):
            losses.check_weighting(weighting, path, self.time_sampler)
        self.weighting = weighting
        if not 0 < snr_gamma < float("inf"):
            raise ValueError(f"snr_gamma (min_snr's cap on the signal-to-noise ratio) must be positive and finite, got {snr_gamma}")
        self.snr_gamma = float(snr_gamma)
        self.source = source
        self.coupling = choose(coupling, COUPLINGS, "coupling")
        self.coupling_reg = float(coupling_reg)
        self.conditions = tuple(conditions)
        self.p_uncond = _check_dropout(p_uncond, self.conditions, null)
        self.null = null
        if not 0 <= low_res_noise <= 1:
            raise ValueError(f"low_res_noise (the largest augmentation level, a time on the path) must lie in [0, 1], got {low_res_noise}")
        if low_res_noise and "low_res" not in self.conditions:
            raise ValueError("low_res_noise augments the low-resolution condition: the model must be conditioned on low_res")
        self.low_res_noise = float(low_res_noise)

    def _augment(self, cond: dict, generator) -> dict:
        """The low-resolution condition noised to a random level on the path, and the level (module doc)."""
        y = cond["low_res"]
        n = y.shape[0]
        if not self.low_res_noise:
            return {**cond, "low_res_level": torch.zeros(n, device=y.device)}
        s = (rand((n,), generator=generator, dtype=torch.float64) * self.low_res_noise).to(y.device)
        eps = randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        return {**cond, "low_res": self.path.perturb(y, s, eps), "low_res_level": s.float()}

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        x0 = batch["x"]
        cond = model_inputs(batch, self.conditions)
        # the draws come in a fixed order (t, then the source, then the pairing): a run resumes bit for bit
        t = self.time_sampler(x0.shape[0], generator=generator).to(x0.device)
        if "noise" in batch:  # pairs (reflow: the noise each example came from), not drawn
            z = batch["noise"].to(dtype=x0.dtype)
        elif self.source is None:
            z = randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        else:
            z = self.source.sample(x0.shape[0], generator).to(device=x0.device, dtype=x0.dtype)
        if self.coupling != "independent":  # minibatch OT: each example with its partner (within its class)
            z = z[couple(x0, z, self.coupling, labels=cond.get("label"), reg=self.coupling_reg, generator=generator)]
        if "low_res" in cond:
            cond = self._augment(cond, generator)
        cond = drop_labels(cond, self.p_uncond, generator, self.null)
        return losses.diffusion_loss(model, self.path, x0, prediction=self.prediction, weighting=self.weighting, t=t,
                                     noise=z, cond=cond, gamma=self.snr_gamma)

    def __repr__(self) -> str:
        extra = f", coupling={self.coupling!r}" if self.coupling != "independent" else ""
        extra += f", p_uncond={self.p_uncond}" if self.p_uncond else ""
        extra += f", low_res_noise={self.low_res_noise}" if self.low_res_noise else ""
        extra += f", snr_gamma={self.snr_gamma}" if self.weighting == "min_snr" else ""
        return (f"DiffusionObjective({self.path!r}, prediction={self.prediction!r}, weighting={self.weighting!r}"
                f"{extra}, conditions={self.conditions})")


class ClassifierObjective:
    """Cross-entropy of a noise-conditional classifier `model(x_t, t) -> logits` on `path` (module doc)."""

    def __init__(self, path, *, time_sampler=None):
        self.path = path
        self.time_sampler = time_sampler or losses.default_time_sampler(path)

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        x0, label = batch["x"], model_inputs(batch, ("label",))["label"]
        t = self.time_sampler(x0.shape[0], generator=generator).to(x0.device)
        z = randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        logits = model(self.path.perturb(x0, t, z), t)
        if logits.ndim != 2 or logits.shape[0] != x0.shape[0]:
            raise ValueError(f"a classifier must return logits of shape (batch, classes); got {tuple(logits.shape)}")
        return torch.nn.functional.cross_entropy(logits.float(), label.long(), reduction="none")

    def __repr__(self) -> str:
        return f"ClassifierObjective({self.path!r})"


RECONSTRUCTION_LOSSES = ("l2", "l1")


class AutoencoderObjective:
    """The KL-regularised autoencoder's loss (module doc) for a model with `posterior(x) -> (mean, logvar)`
    and `decode(z)`; per example, in squared (or absolute) error per pixel."""

    def __init__(self, *, reconstruction: str = "l2", kl_weight: float = 1e-4):
        self.reconstruction = choose(reconstruction, RECONSTRUCTION_LOSSES, "reconstruction loss")
        if not 0 <= kl_weight < float("inf"):
            raise ValueError(f"the KL weight must be >= 0 and finite, got {kl_weight}")
        self.kl_weight = float(kl_weight)

    def parts(self, model, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per example: {"rec": summed reconstruction error, "kl": KL(q(z | x) || N(0, I)) in nats, "x_hat"}."""
        mean, logvar = model.posterior(x)
        eps = randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        x_hat = model.decode(mean + (0.5 * logvar).exp() * eps)
        err = (x_hat.float() - x.float())
        err = err.square() if self.reconstruction == "l2" else err.abs()
        m, lv = mean.float(), logvar.float()
        kl = 0.5 * (m.square() + lv.exp() - 1 - lv).flatten(1).sum(1)
        return {"rec": err.flatten(1).sum(1), "kl": kl, "x_hat": x_hat}

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        x = batch["x"]
        p = self.parts(model, x, generator)
        return (p["rec"] + self.kl_weight * p["kl"]) / x[0].numel()

    def __repr__(self) -> str:
        return f"AutoencoderObjective(reconstruction={self.reconstruction!r}, kl_weight={self.kl_weight})"


CATEGORICAL_LOSSES = ("vb", "hybrid", "masked")


class CategoricalObjective:
    """Categorical diffusion on `path` with `loss` in CATEGORICAL_LOSSES (module doc), in nats per example."""

    def __init__(self, path, *, loss: str = "hybrid", lam: float = 0.01, conditions: tuple[str, ...] = (), p_uncond: float = 0.0):
        self.path = path
        self.loss = choose(loss, CATEGORICAL_LOSSES, "discrete loss")
        if not lam >= 0:
            raise ValueError(f"the hybrid loss's weight lambda must be >= 0, got {lam}")
        self.lam = float(lam)
        self.conditions = tuple(conditions)
        self.p_uncond = _check_dropout(p_uncond, self.conditions)

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        from . import discrete

        x0 = batch["x"]
        cond = drop_labels(model_inputs(batch, self.conditions), self.p_uncond, generator)
        den = discrete.as_denoiser(model)
        if self.loss == "masked":
            return discrete.masked_loss(den, self.path, x0, generator=generator, **cond)
        return discrete.d3pm_loss(den, self.path, x0, lam=self.lam if self.loss == "hybrid" else 0.0, generator=generator, **cond)

    def __repr__(self) -> str:
        lam = f", lam={self.lam}" if self.loss == "hybrid" else ""
        return f"CategoricalObjective({self.path!r}, loss={self.loss!r}{lam}, conditions={self.conditions})"


class AutoregressiveObjective:
    """-log p(x) of a causal network over the flattened tokens (`discrete.autoregressive`), nats per example."""

    def __init__(self, *, bos: int, conditions: tuple[str, ...] = (), p_uncond: float = 0.0):
        self.bos = int(bos)
        self.conditions = tuple(conditions)
        self.p_uncond = _check_dropout(p_uncond, self.conditions)

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        from .discrete import autoregressive

        cond = drop_labels(model_inputs(batch, self.conditions), self.p_uncond, generator)
        return autoregressive.nll(model, batch["x"], bos=self.bos, **cond)

    def __repr__(self) -> str:
        return f"AutoregressiveObjective(bos={self.bos}, conditions={self.conditions})"
