r"""Guidance: denoiser -> denoiser transforms, so every sampler, every path and every model gets it.

At fixed (x_t, t) the score and the denoiser are affine in each other (Tweedie:
score = (alpha D - x_t) / sigma^2), so a weighted sum of scores is the same weighted sum of denoisers,
and a term g added to the score is (sigma^2 / alpha) g added to the denoiser. Hence:

- `classifier_free(den, scale)` (Ho & Salimans 2021; the notes' s_w = (1 + w) s(x | c) - w s(x)) with
  w = `scale`:

      D_w(x_t, c) = D(x_t, c) + w (D(x_t, c) - D(x_t, null)),

  w = 0 is the conditional model itself. diffusers' and most papers' `guidance_scale` is 1 + w. The
  conditional and unconditional passes go through the network as one batch (each conditioning tensor
  concatenated with its null) where that is cheaper: on an accelerator, or for small batches. On a CPU a
  call's time grows in proportion to its batch from about 16 examples on, so one pass over 2B costs what two
  over B do (2.0-2.1x an unguided call at batch 64 and 512 either way; 1.1-1.6x for one pass at batch <= 4:
  benchmarks/README.md, "Classifier-free guidance's cost"), and there the passes are two calls. NFE counts 2
  per step either way. A `negative` condition replaces the null in the second pass: the samples are pushed away from it.
- `classifier(den, path, clf, scale)` (Dhariwal & Nichol 2021; the notes' s_w = s(x) + w grad log p_t(c | x)):

      D_w(x_t, c) = D(x_t) + w (sigma^2 / alpha) grad_x log p_t(c | x_t),

  for any callable `clf(x_t, t, **cond) -> log p_t(c | x_t)` per example (differentiable in x_t). For
  the DDPM step t -> s = t - 1/T, whose mean is mu = c0 D + ct x_t, this moves the mean by
  w (beta_t / sqrt(1 - beta_t)) grad log p_t(c | x_t): the notes' mu + w Sigma grad log p_t(c | x_t)
  with Sigma = beta_t, up to the factor 1 / sqrt(1 - beta_t) that Dhariwal & Nichol drop (it is 1 to
  first order in beta_t; the form here is the exact one for the guided score).
- `interval=(lo, hi)` (Kynkaanniemi et al. 2024): guide only where the noise level sigma / alpha of
  the step lies in [lo, hi]; elsewhere the conditional denoiser alone (one pass).
- `rescale=phi` (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", eq. 16):
  the guided noise prediction eps_w is rescaled per example to the standard deviation of the
  conditional one, eps = phi eps_w std(eps_c) / std(eps_w) + (1 - phi) eps_w (as diffusers'
  `guidance_rescale`).
- `dynamic_threshold(den, percentile)` (Saharia et al. 2022, Imagen): per example s = max(1, the
  `percentile` quantile of |x0_hat|), x0_hat <- clamp(x0_hat, -s, s) / s, for pixel data in [-1, 1].

Every transform returns a plain denoiser, so transforms compose (guidance, then thresholding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import append_dims
from .denoisers import counted
from .targets import eps_of

__all__ = ["classifier_free", "classifier", "dynamic_threshold", "as_classifier", "ClassifierFree", "ClassifierGuided",
           "DynamicThreshold", "NetworkClassifier"]


# On a CPU one call on 2B examples beats two calls on B only while a call's fixed cost dominates (crossover at
# B ~ 16-32, benchmarks/guidance_speed.py); on an accelerator one call is always the cheaper.
SMALL_BATCH = 64


def _scale(scale, x: Tensor) -> Tensor | float:
    """A guidance scale: a number, or one per example (broadcast over x's dimensions)."""
    if torch.is_tensor(scale):
        if scale.ndim == 0:
            return float(scale)
        if scale.shape != (x.shape[0],):
            raise ValueError(f"a per-example guidance scale must have shape ({x.shape[0]},), got {tuple(scale.shape)}")
        return append_dims(scale.to(x), x.ndim)
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"the guidance scale must be a finite number, got {scale}")
    return scale


def _is_zero(scale) -> bool:
    return not torch.is_tensor(scale) and float(scale) == 0.0


def _noise_level(path, t: Tensor) -> Tensor:
    """sigma / alpha at each time (inf where alpha = 0)."""
    t64 = t.to(torch.float64)
    return path.sigma(t64) / path.alpha(t64)


def _check_interval(interval, path):
    if interval is None:
        return None
    if path is None:
        raise ValueError("a guidance interval is in noise levels sigma/alpha: pass path= too")
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo <= hi:
        raise ValueError(f"a guidance interval (lo, hi) of noise levels sigma/alpha needs 0 <= lo <= hi, got {interval}")
    return lo, hi


def _in_interval(interval, path, t: Tensor) -> Tensor | None:
    """Which examples are guided at their time t (None: all)."""
    if interval is None:
        return None
    level = _noise_level(path, t)
    return (level >= interval[0]) & (level <= interval[1])


def _as_condition(value, x: Tensor, like: Tensor | None) -> Tensor:
    """A condition for the second pass as a tensor of one row per example (a number, or a single row such as
    the empty caption's embedding, fills every row)."""
    v = torch.as_tensor(value, device=x.device, dtype=like.dtype if like is not None else None)
    if v.ndim == 0:
        return v.expand(like.shape if like is not None else (x.shape[0],)).clone()
    if v.shape[0] == 1 and x.shape[0] != 1:
        return v.expand(x.shape[0], *v.shape[1:])
    return v


class ClassifierFree:
    """D_w = D_c + w (D_c - D_u), the two passes batched (module doc)."""

    def __init__(self, denoiser, scale, *, null: dict | None = None, negative: dict | None = None, path=None, interval=None,
                 rescale: float = 0.0, batched: bool | None = None):
        self.denoiser = counted(denoiser)
        self.scale = scale
        self.null = {"label": -1} if null is None else dict(null)
        self.negative = None if negative is None else dict(negative)
        self.path = path
        self.interval = _check_interval(interval, path)
        if not 0 <= rescale <= 1:
            raise ValueError(f"guidance rescale phi must lie in [0, 1], got {rescale}")
        if rescale and path is None:
            raise ValueError("guidance rescale works on the noise prediction: pass path= too")
        self.rescale = float(rescale)
        self.batched = batched

    def _second(self, x: Tensor, cond: dict) -> dict:
        """The conditioning of the second pass: the negative condition, or the null one."""
        other = self.negative if self.negative is not None else self.null
        missing = [k for k in other if k not in cond]
        if missing and self.negative is None:
            raise ValueError(f"classifier-free guidance needs the condition it guides towards: call the denoiser with "
                             f"{', '.join(missing)}= (the null condition replaces it in the unconditional pass)")
        out = dict(cond)
        for key, value in other.items():
            like = cond.get(key)
            out[key] = _as_condition(value, x, like if torch.is_tensor(like) else None)
        return out

    def _both(self, x: Tensor, t: Tensor, cond: dict) -> tuple[Tensor, Tensor]:
        second = self._second(x, cond)
        joinable = set(cond) == set(second) and all(
            torch.is_tensor(cond[k]) and torch.is_tensor(second[k]) and cond[k].shape == second[k].shape
            and cond[k].shape[:1] == x.shape[:1] for k in cond)
        batched = self.batched if self.batched is not None else (x.device.type != "cpu" or 2 * x.shape[0] <= SMALL_BATCH)
        if batched and joinable:  # one network call on 2B examples
            both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), **{k: torch.cat([cond[k], second[k]]) for k in cond})
            return both.chunk(2)
        return self.denoiser(x, t, **cond), self.denoiser(x, t, **second)

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        guided = _in_interval(self.interval, self.path, t)
        if (guided is not None and not bool(guided.any())) or _is_zero(self.scale):
            self._second(x_t, cond)  # the same checks as a guided call
            return self.denoiser(x_t, t, **cond)  # outside the interval, or w = 0: the conditional model, one pass
        d_c, d_u = self._both(x_t, t, cond)
        w = _scale(self.scale, x_t)
        out = d_c + w * (d_c - d_u)
        if self.rescale:
            out = self._rescaled(x_t, t, d_c, out)
        if guided is not None and not bool(guided.all()):
            out = torch.where(append_dims(guided, x_t.ndim), out, d_c)
        return out

    def _rescaled(self, x_t: Tensor, t: Tensor, d_c: Tensor, d_w: Tensor) -> Tensor:
        a = append_dims(self.path.alpha(t.to(torch.float64)), x_t.ndim).to(x_t)
        s = append_dims(self.path.sigma(t.to(torch.float64)), x_t.ndim).to(x_t)
        eps_c, eps_w = eps_of(x_t, d_c, a, s), eps_of(x_t, d_w, a, s)
        dims = tuple(range(1, x_t.ndim))
        ratio = eps_c.std(dim=dims, keepdim=True) / eps_w.std(dim=dims, keepdim=True).clamp_min(1e-12)
        eps = self.rescale * eps_w * ratio + (1 - self.rescale) * eps_w
        return torch.where(a > 0, (x_t - s * eps) / a.clamp_min(1e-30), d_w)  # at alpha = 0 there is no x0 to rescale

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in (("negative", self.negative), ("interval", self.interval),
                                                     ("rescale", self.rescale or None)) if v is not None)
        return f"classifier_free(scale={self.scale!r}{extra})"


def classifier_free(denoiser, scale, *, null: dict | None = None, negative: dict | None = None, path=None, interval=None,
                    rescale: float = 0.0, batched: bool | None = None) -> ClassifierFree:
    """Classifier-free guidance of a conditional `denoiser` with w = `scale` (module doc).

    `null`: the conditioning of the unconditional pass, {"label": -1} by default (the networks' learned
    null class; a labelled oracle's unconditional mixture). `negative`: a condition to steer away from,
    used in place of the null (e.g. {"label": 3}). `interval=(lo, hi)`: guide only where sigma/alpha is
    in [lo, hi] (needs `path`). `rescale`: Lin et al.'s phi (needs `path`). `batched`: both passes in
    one network call (True), in two (False), or (None) one call where that is the cheaper (module doc).
    """
    return ClassifierFree(denoiser, scale, null=null, negative=negative, path=path, interval=interval, rescale=rescale,
                          batched=batched)


class NetworkClassifier:
    """log p_t(c | x_t) per example from a network `net(x_t, t) -> logits`; `probabilities(x_t, t)` gives all classes."""

    def __init__(self, net):
        self.net = net

    def log_probabilities(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = t.reshape(-1).expand(x_t.shape[0]) if t.numel() == 1 else t
        return torch.log_softmax(self.net(x_t, t).float(), dim=1).to(x_t.dtype)

    def __call__(self, x_t: Tensor, t: Tensor, label: Tensor) -> Tensor:
        label = torch.as_tensor(label, device=x_t.device).long().reshape(-1).expand(x_t.shape[0])
        logp = self.log_probabilities(x_t, t)
        if bool(((label < 0) | (label >= logp.shape[1])).any()):
            raise ValueError(f"labels must lie in 0..{logp.shape[1] - 1} for this classifier")
        return logp.gather(1, label[:, None]).squeeze(1)

    def __repr__(self) -> str:
        return f"as_classifier({type(self.net).__name__})"


def as_classifier(net) -> NetworkClassifier:
    """A noise-conditional classifier network (logits) as the callable classifier guidance takes:
    (x_t, t, label) -> log p_t(label | x_t)."""
    return NetworkClassifier(net)


class ClassifierGuided:
    """D_w = D + w (sigma^2 / alpha) grad_x log p_t(c | x_t) (module doc)."""

    def __init__(self, denoiser, path, classifier, scale, *, keys=("label",), interval=None):
        self.denoiser, self.path, self.classifier, self.scale = denoiser, path, classifier, scale
        self.keys = tuple(keys)
        self.interval = _check_interval(interval, path)

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        mine = {k: v for k, v in cond.items() if k in self.keys}  # what the classifier is conditioned on
        missing = [k for k in self.keys if k not in mine]
        if missing:
            raise ValueError(f"classifier guidance needs the class to steer towards: call the denoiser with "
                             f"{', '.join(missing)}=")
        d = self.denoiser(x_t, t, **{k: v for k, v in cond.items() if k not in self.keys})
        guided = _in_interval(self.interval, self.path, t)
        if (guided is not None and not bool(guided.any())) or _is_zero(self.scale):
            return d
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            log_p = self.classifier(x, t, **mine)
            if log_p.shape != (x_t.shape[0],):
                raise ValueError(f"the classifier must return log p_t(c | x) per example, shape ({x_t.shape[0]},); "
                                 f"got {tuple(log_p.shape)}")
            grad = torch.autograd.grad(log_p.sum(), x)[0]
        t64 = t.to(torch.float64)
        a, s = self.path.alpha(t64), self.path.sigma(t64)
        factor = torch.where(a > 0, s**2 / a.clamp_min(1e-300), torch.zeros_like(a))  # no x0 to move at alpha = 0
        if guided is not None:
            factor = factor * guided
        return d + _scale(self.scale, x_t) * append_dims(factor.to(x_t), x_t.ndim) * grad.to(x_t)

    def __repr__(self) -> str:
        return f"classifier(scale={self.scale!r}, classifier={self.classifier!r})"


def classifier(denoiser, path, classifier, scale, *, keys=("label",), interval=None) -> ClassifierGuided:
    """Classifier guidance of `denoiser` on `path` by `classifier(x_t, t, **cond) -> log p_t(c | x_t)` with
    w = `scale` (module doc). The conditioning named in `keys` goes to the classifier only (the denoiser
    is typically unconditional); `interval=(lo, hi)` guides only where sigma/alpha is in [lo, hi].
    NFE counts the denoiser's evaluations (the classifier's forward and backward pass come on top)."""
    return ClassifierGuided(denoiser, path, classifier, scale, keys=keys, interval=interval)


class DynamicThreshold:
    """Imagen's dynamic thresholding of x0_hat (module doc)."""

    def __init__(self, denoiser, percentile: float = 0.995):
        if not 0 < percentile <= 1:
            raise ValueError(f"the thresholding percentile must lie in (0, 1], got {percentile}")
        self.denoiser, self.percentile = denoiser, float(percentile)

    def __call__(self, x_t: Tensor, t: Tensor, **cond) -> Tensor:
        x0 = self.denoiser(x_t, t, **cond)
        s = torch.quantile(x0.detach().abs().flatten(1).float(), self.percentile, dim=1).clamp_min(1.0).to(x0)
        s = append_dims(s, x0.ndim)
        return torch.maximum(torch.minimum(x0, s), -s) / s

    def __repr__(self) -> str:
        return f"dynamic_threshold(percentile={self.percentile})"


def dynamic_threshold(denoiser, percentile: float = 0.995) -> DynamicThreshold:
    """Imagen's dynamic thresholding of x0_hat at the `percentile` quantile of |x0_hat| (module doc)."""
    return DynamicThreshold(denoiser, percentile)
