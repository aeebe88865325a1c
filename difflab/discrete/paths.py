r"""Categorical paths: forward processes over K symbols, time in [0, 1] (Austin et al. 2021, D3PM).

A token x in {0, ..., S - 1} (S = K, or K + 1 with a [MASK] state S - 1) is corrupted by a chain of
categorical transitions; as a row vector of probabilities, q(x_t | x_s) = Cat(x_t; e_{x_s} Q_{s->t}),
so the cumulative matrix is Q_bar(t) = Q_{0->t} (rows: x0, columns: x_t) and Q_{s->t} Q_{t->u} =
Q_{s->u}. Every position of an array of tokens is corrupted independently.

**Mixing paths** (uniform, absorbing, multinomial): Q_bar(t) = a(t) I + (1 - a(t)) 1 m^T with a
stationary distribution m (uniform 1/K, or the [MASK] state) and a decreasing schedule a(t), a(0) = 1,
a(1) = 0; then Q_{s->t} = (a_t / a_s) I + (1 - a_t / a_s) 1 m^T in closed form for any s < t, which is
what sampling with fewer steps than training needs (D3PM Table 2). Schedules: "linear" a = 1 - t (D3PM's
absorbing beta_t = 1 / (T - t + 1), MDLM's masking), "cosine" a = cos(pi/2 (t + s)/(1 + s)) / cos(pi/2
s/(1 + s)), s = 0.008 (D3PM uniform), "cosine2" its square (Hoogeboom et al. 2021, Nichol & Dhariwal).

**Discretized Gaussian** (D3PM appendix A.2.2, for ordinal data): one step Q_t[i, j] proportional to
exp(-4 (i - j)^2 / ((K - 1)^2 beta_t)) off the diagonal (normalised over offsets -(K-1)..K-1), the
diagonal taking the rest. Q_t is symmetric and doubly stochastic, so the stationary distribution is
uniform. Its products are tabulated (float64). Two beta schedules: "linear" from beta_min to beta_max over
T steps (D3PM's, with 1e-4 -> 0.02 at 256 levels), and "mutual_information": each beta_t solved for
(Brent's method on log beta) so that the mutual information between x0 and x_t, for uniform x0,

    I(t) = log K + (1/K) sum_{x0, x} Q_bar(t)[x0, x] log Q_bar(t)[x0, x],

falls linearly, I(i / T) = (1 - i / T) log K (D3PM section 4, their mutual-information schedule, which on an
absorbing path is beta_t = 1 / (T - t + 1)), as far as beta <= beta_max allows. With few levels a linear beta
schedule mixes abruptly (the off-diagonal weights are exp(-4 / ((K - 1)^2 beta)): at 8 levels and 0.02 -> 1
the chain is uniform after a tenth of its steps); this schedule spreads the corruption over [0, 1] for any K.

**The reverse step from a prediction of x0.** A denoiser gives p(x0 | x_t) per position (K
probabilities). The reverse step is the posterior averaged over it (D3PM eq. 4, first form):

    p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0 | x_t),
    q(x_s | x_t, x0) = Q_bar(s)[x0, x_s] Q_{s->t}[x_s, x_t] / Q_bar(t)[x0, x_t],

which is the exact reverse marginal of each position when p(x0 | x_t) is the exact one (an oracle).
The prediction is first restricted to the x0 that could have produced x_t (Q_bar(t)[x0, x_t] > 0: an
unmasked token is its own x0; MDLM's "carry-over"). The reference implementations of D3PM and
Hoogeboom et al. instead plug the prediction into the unnormalised joint, p(x_s | x_t) proportional to
Q_{s->t}[x_s, x_t] (p Q_bar(s))[x_s] ("plug_in"): the same for absorbing paths, not for uniform ones
(there it is not exact even for an exact p(x0 | x_t)); `Multinomial` is the uniform path in that form.

`Absorbing(K, steps=None)` is the continuous-time masked-diffusion path (Sahoo et al. 2024, MDLM; Shi
et al. 2024, MD4) with its schedule alpha(t) = a(t); with `steps=T` it is D3PM's absorbing path.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .._random import Generators, rand

__all__ = ["CategoricalPath", "Uniform", "Absorbing", "Masked", "Multinomial", "DiscretizedGaussian",
           "categorical", "SCHEDULES", "GAUSSIAN_SCHEDULES", "mutual_information"]

_COSINE_S = 0.008


def _cosine(t: Tensor) -> Tensor:
    f = lambda u: torch.cos(math.pi / 2 * (u + _COSINE_S) / (1 + _COSINE_S))  # noqa: E731
    return (f(t) / f(torch.zeros_like(t))).clamp(0.0, 1.0)


SCHEDULES = {
    "linear": (lambda t: 1.0 - t, lambda t: -torch.ones_like(t)),
    "cosine": (_cosine, lambda t: -math.pi / 2 / (1 + _COSINE_S) * torch.sin(math.pi / 2 * (t + _COSINE_S) / (1 + _COSINE_S))
               / math.cos(math.pi / 2 * _COSINE_S / (1 + _COSINE_S))),
    "cosine2": (lambda t: _cosine(t) ** 2, lambda t: 2 * _cosine(t) * SCHEDULES["cosine"][1](t)),
}


def categorical(probs: Tensor, generator: Generators = None) -> Tensor:
    """One draw from each categorical distribution in the last axis of `probs` (inverse CDF of a uniform
    from `generator`; a list of generators draws row i from generator i)."""
    u = rand(probs.shape[:-1], generator=generator, device=probs.device, dtype=torch.float64)
    cdf = probs.double().cumsum(-1)
    # scale by the total so rounding never walks past the last state that has mass
    return (cdf < (u * cdf[..., -1])[..., None]).sum(-1).clamp_max(probs.shape[-1] - 1)


def _per_example(t, batch: int, device) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float64, device=device)
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, batch)):
        raise ValueError(f"times must be a number or one per example ({batch}), got shape {tuple(t.shape)}")
    return t.reshape(-1).expand(batch) if t.dim() == 1 else t.expand(batch)


def _rows(matrices: Tensor, index: Tensor) -> Tensor:
    """matrices (B, S, S), index (B, N) -> matrices[b, index[b, n], :] of shape (B, N, S)."""
    B, N = index.shape
    return torch.gather(matrices, 1, index[..., None].expand(B, N, matrices.shape[-1]))


def _columns(matrices: Tensor, index: Tensor) -> Tensor:
    """matrices (B, S, S), index (B, N) -> matrices[b, :, index[b, n]] of shape (B, N, S)."""
    return _rows(matrices.transpose(-1, -2), index)


class CategoricalPath:
    """A forward process over `num_states` states of which the first `num_classes` are data symbols
    (module doc). Subclasses give `q_bar(t)` and `transition(s, t)` as (B, S, S) float64 matrices."""

    num_classes: int
    num_states: int
    steps: int | None  # T for a discrete-time path, None in continuous time
    mask: int | None = None
    parameterization: str = "mixture"  # or "plug_in" (module doc)

    @property
    def discrete(self) -> bool:
        return self.steps is not None

    # --- matrices (subclasses) ----------------------------------------------------------------------
    def q_bar(self, t) -> Tensor:
        raise NotImplementedError

    def transition(self, s, t) -> Tensor:
        raise NotImplementedError

    def prior(self) -> Tensor:
        """The stationary distribution reached at t = 1 (S,)."""
        raise NotImplementedError

    # --- derived -------------------------------------------------------------------------------------
    def _check_tokens(self, x: Tensor, what: str, states: int) -> None:
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"{what} must be integer tokens, got {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= states):
            raise ValueError(f"{what} must lie in 0..{states - 1}, got values {int(x.min())}..{int(x.max())}")

    def marginal(self, x0: Tensor, t) -> Tensor:
        """q(x_t | x0) for every position: (*x0.shape, S)."""
        self._check_tokens(x0, "x0", self.num_classes)
        B = x0.shape[0]
        flat = x0.reshape(B, -1).long()
        return _rows(self.q_bar(_per_example(t, B, x0.device)), flat).reshape(*x0.shape, self.num_states)

    def sample(self, x0: Tensor, t, generator: Generators = None) -> Tensor:
        """x_t ~ q(x_t | x0), the same shape as x0."""
        return categorical(self.marginal(x0, t), generator)

    def prior_sample(self, shape, generator: Generators = None, device=None) -> Tensor:
        """Tokens drawn from the prior (all [MASK] on an absorbing path)."""
        probs = self.prior().to(device or "cpu").expand(*shape, self.num_states)
        return categorical(probs, generator)

    def restrict(self, x_t: Tensor, t, x0_probs: Tensor) -> Tensor:
        """The prediction p(x0 | x_t) restricted to the x0 with Q_bar(t)[x0, x_t] > 0 and renormalised
        (uniform over them if the prediction gives them no mass)."""
        B = x_t.shape[0]
        A = _columns(self.q_bar(_per_example(t, B, x_t.device)), x_t.reshape(B, -1).long())[..., : self.num_classes]
        return self._restrict(A.reshape(*x_t.shape, self.num_classes), x0_probs)

    @staticmethod
    def _restrict(A: Tensor, x0_probs: Tensor) -> Tensor:
        support = (A > 0).to(x0_probs.dtype)
        w = x0_probs * support
        z = w.sum(-1, keepdim=True)
        # no x0 can give x_t (a state of probability zero): zeros, which `reverse` turns into staying put
        fallback = support / support.sum(-1, keepdim=True).clamp_min(1)
        return torch.where(z > 0, w / z.clamp_min(torch.finfo(w.dtype).tiny), fallback)

    def reverse(self, x_t: Tensor, s, t, x0_probs: Tensor) -> Tensor:
        """p(x_s | x_t) for every position, (*x_t.shape, S), from the prediction `x0_probs` (*x_t.shape, K)
        (module doc: the posterior averaged over the prediction, or the plug-in form)."""
        self._check_tokens(x_t, "x_t", self.num_states)
        if x0_probs.shape != (*x_t.shape, self.num_classes):
            raise ValueError(f"the prediction of x0 must have shape {(*x_t.shape, self.num_classes)} "
                             f"(tokens, then {self.num_classes} probabilities), got {tuple(x0_probs.shape)}")
        B, K, dtype = x_t.shape[0], self.num_classes, x0_probs.dtype
        flat = x_t.reshape(B, -1).long()
        s, t = _per_example(s, B, x_t.device), _per_example(t, B, x_t.device)
        qs, qt, qst = self.q_bar(s), self.q_bar(t), self.transition(s, t)
        A = _columns(qt, flat)[..., :K]  # Q_bar(t)[x0, x_t]   (B, N, K)
        p = self._restrict(A, x0_probs.reshape(B, -1, K).double())
        if self.parameterization == "mixture":
            p = torch.where(A > 0, p / A.clamp_min(1e-300), torch.zeros_like(p))
        joint = torch.einsum("bnk,bks->bns", p, qs[:, :K, :]) * _columns(qst, flat)
        total = joint.sum(-1, keepdim=True)
        if self.parameterization == "plug_in":
            joint = joint / total.clamp_min(1e-300)
        stay = torch.nn.functional.one_hot(flat, self.num_states).double()  # only for impossible x_t
        joint = torch.where(total > 0, joint.clamp_min(0), stay)
        return joint.reshape(*x_t.shape, self.num_states).to(dtype)

    def posterior(self, x_t: Tensor, s, t, x0: Tensor) -> Tensor:
        """q(x_s | x_t, x0) for known x0 tokens (the reverse step of a one-hot prediction)."""
        onehot = torch.nn.functional.one_hot(x0.long(), self.num_classes).double()
        return self.reverse(x_t, s, t, onehot)

    def times(self, steps: int | None = None) -> Tensor:
        """A decreasing grid 1 = t_N > ... > t_0 = 0 of `steps` steps; on a discrete-time path the grid
        of its T steps, or `steps` of them evenly skipped (each on the path's grid i / T)."""
        T = self.steps
        n = steps if steps is not None else T
        if n is None:
            raise ValueError("a continuous-time path needs a number of sampling steps")
        if int(n) != n or n < 1:
            raise ValueError(f"steps must be a positive integer, got {n}")
        if T is None:
            return torch.linspace(1.0, 0.0, int(n) + 1, dtype=torch.float64)
        if n > T:
            raise ValueError(f"this path has {T} steps; sample with at most {T} (got {n})")
        idx = torch.round(torch.linspace(T, 0, int(n) + 1, dtype=torch.float64))
        return idx / T

    def grid_index(self, t: Tensor) -> Tensor:
        """The step i of times t = i / T (an error off the grid)."""
        i = torch.round(t * self.steps)
        # times given in float32 are on the grid only to within their rounding (0.3 is 0.30000001): a few float32 ulps of T
        tol = max(1e-6, 8 * self.steps * torch.finfo(torch.float32).eps)
        if (t * self.steps - i).abs().max() > tol:
            raise ValueError(f"times must lie on this path's grid i / {self.steps}")
        return i.long()


class _Mixing(CategoricalPath):
    """Q_bar(t) = a(t) I + (1 - a(t)) 1 m^T (module doc)."""

    def __init__(self, num_classes: int, num_states: int, stationary: Tensor, steps: int | None, schedule: str):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"a categorical path needs at least 2 symbols, got {num_classes}")
        if steps is not None and (int(steps) != steps or steps < 1):
            raise ValueError(f"steps must be a positive integer or None (continuous time), got {steps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.num_classes, self.num_states = int(num_classes), int(num_states)
        self.steps = None if steps is None else int(steps)
        self.schedule = schedule
        self._m = stationary.double()

    def alpha(self, t) -> Tensor:
        """a(t): the probability that a token is still its x0 (plus the stationary share)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return SCHEDULES[self.schedule][0](t.clamp(0.0, 1.0)).clamp(0.0, 1.0)

    def alpha_derivative(self, t) -> Tensor:
        return SCHEDULES[self.schedule][1](torch.as_tensor(t, dtype=torch.float64))

    def _mix(self, a: Tensor) -> Tensor:
        S = self.num_states
        eye = torch.eye(S, dtype=torch.float64, device=a.device)
        m = self._m.to(a.device)
        return a[..., None, None] * eye + (1 - a)[..., None, None] * m.expand(S, S)

    def q_bar(self, t) -> Tensor:
        return self._mix(self.alpha(t))

    def transition(self, s, t) -> Tensor:
        if bool((torch.as_tensor(s, dtype=torch.float64) > torch.as_tensor(t, dtype=torch.float64)).any()):
            raise ValueError("a transition runs forward in time: need s <= t")
        a_s, a_t = self.alpha(s), self.alpha(t)
        return self._mix(torch.where(a_s > 0, a_t / a_s.clamp_min(1e-300), torch.zeros_like(a_t)).clamp(0.0, 1.0))

    def prior(self) -> Tensor:
        return self._m.clone()

    def __repr__(self) -> str:
        steps = "continuous" if self.steps is None else f"steps={self.steps}"
        return f"{type(self).__name__}(K={self.num_classes}, {steps}, schedule={self.schedule!r})"


class Uniform(_Mixing):
    """D3PM uniform: Q_t = (1 - beta_t) I + beta_t / K 1 1^T, cosine schedule (module doc)."""

    def __init__(self, num_classes: int, steps: int | None = 1000, schedule: str = "cosine"):
        super().__init__(num_classes, num_classes, torch.full((int(num_classes),), 1.0 / num_classes, dtype=torch.float64), steps, schedule)


class Multinomial(Uniform):
    """Multinomial diffusion (Hoogeboom et al. 2021): the uniform path with the cos^2 schedule and the
    reverse step theta_post(x_t, x0_hat) with the prediction plugged in (module doc)."""

    parameterization = "plug_in"

    def __init__(self, num_classes: int, steps: int | None = 1000, schedule: str = "cosine2"):
        super().__init__(num_classes, steps, schedule)


class Absorbing(_Mixing):
    """Absorbing-state diffusion: K symbols and a [MASK] state K; a token stays itself with probability
    alpha(t) and is masked otherwise. `steps=None` is continuous-time masked diffusion (MDLM, MD4)."""

    def __init__(self, num_classes: int, steps: int | None = None, schedule: str = "linear"):
        m = torch.zeros(int(num_classes) + 1, dtype=torch.float64)
        m[-1] = 1.0
        super().__init__(num_classes, int(num_classes) + 1, m, steps, schedule)
        self.mask = self.num_classes


def Masked(num_classes: int, schedule: str = "linear") -> Absorbing:
    """Continuous-time masked diffusion (MDLM): `Absorbing(num_classes, steps=None, schedule)`."""
    return Absorbing(num_classes, steps=None, schedule=schedule)


GAUSSIAN_SCHEDULES = ("linear", "mutual_information")


def _gaussian_step(K: int, beta: float) -> Tensor:
    """One discretized-Gaussian step Q with parameter beta (module doc)."""
    i = torch.arange(K, dtype=torch.float64)
    offsets = torch.arange(-(K - 1), K, dtype=torch.float64)
    scale = (K - 1) ** 2 * beta
    w = torch.exp(-4 * (i[:, None] - i[None, :]) ** 2 / scale) / torch.exp(-4 * offsets ** 2 / scale).sum()
    w.fill_diagonal_(0.0)
    return w + torch.diag(1 - w.sum(1))


def mutual_information(q_bar: Tensor) -> Tensor:
    """I(x0; x_t) in nats for uniform x0 and a doubly stochastic Q_bar (module doc)."""
    K = q_bar.shape[-1]
    return math.log(K) + torch.special.xlogy(q_bar, q_bar).sum((-2, -1)) / K


@functools.lru_cache(maxsize=8)
def _mutual_information_betas(K: int, steps: int, beta_max: float) -> tuple[float, ...]:
    """The schedule's betas (module doc), solved once per (K, T, beta_max): a run builds its path for the network,
    the objective and the loader."""
    from scipy.optimize import brentq

    lo, hi = math.log(1e-8), math.log(beta_max)
    bar, betas, u = torch.eye(K, dtype=torch.float64), [], None
    for i in range(1, steps + 1):
        target = (1 - i / steps) * math.log(K)
        gap = lambda v: float(mutual_information(bar @ _gaussian_step(K, math.exp(v)))) - target  # noqa: E731, B023
        if float(mutual_information(bar)) <= target:  # beta -> 0 is the identity step
            u = lo
        elif u is not None and u + 0.5 < hi and gap(u - 0.5) > 0 > gap(u + 0.5):  # near the last step's beta: fewer products
            u = brentq(gap, u - 0.5, u + 0.5, xtol=1e-9)
        else:
            u = hi if gap(hi) >= 0 else brentq(gap, lo, hi, xtol=1e-9)
        betas.append(beta_max if u == hi else math.exp(u))
        bar = bar @ _gaussian_step(K, betas[-1])
    return tuple(betas)


class DiscretizedGaussian(CategoricalPath):
    """D3PM's discretized Gaussian transitions for ordinal symbols, T steps, beta schedule "linear" (beta_min
    -> beta_max) or "mutual_information" (beta_max its largest step) (module doc)."""

    def __init__(self, num_classes: int, steps: int = 1000, beta_min: float = 0.02, beta_max: float = 1.0,
                 schedule: str = "linear"):
        K = int(num_classes)
        if K != num_classes or K < 2:
            raise ValueError(f"a categorical path needs at least 2 symbols, got {num_classes}")
        if steps is None or int(steps) != steps or steps < 1:
            raise ValueError(f"the discretized Gaussian path is discrete-time: steps must be a positive integer, got {steps}")
        if not 0 < beta_min <= beta_max:
            raise ValueError(f"need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        if schedule not in GAUSSIAN_SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} for the discretized Gaussian; choose one of {', '.join(GAUSSIAN_SCHEDULES)}")
        if K ** 2 * (steps + 1) > 50_000_000:
            raise ValueError(f"the discretized Gaussian path tabulates (T + 1) K^2 = {K ** 2 * (steps + 1)} numbers; "
                             "use fewer symbols or steps")
        self.num_classes = self.num_states = K
        self.steps = int(steps)
        self.beta_min, self.beta_max, self.schedule = float(beta_min), float(beta_max), schedule
        self.betas = torch.linspace(beta_min, beta_max, self.steps, dtype=torch.float64) if schedule == "linear" \
            else torch.tensor(_mutual_information_betas(K, self.steps, self.beta_max), dtype=torch.float64)
        self._Q = torch.stack([_gaussian_step(K, float(b)) for b in self.betas])  # Q[i - 1] is the step i - 1 -> i
        bars = [torch.eye(K, dtype=torch.float64)]
        for q in self._Q:
            bars.append(bars[-1] @ q)
        self._Qbar = torch.stack(bars)
        self._products: dict[tuple[int, int], Tensor] = {}

    def q_bar(self, t) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return self._Qbar.to(t.device)[self.grid_index(t)]

    def _product(self, i: int, j: int) -> Tensor:
        if (i, j) not in self._products:
            out = torch.eye(self.num_classes, dtype=torch.float64)
            for q in self._Q[i:j]:
                out = out @ q
            self._products[(i, j)] = out
        return self._products[(i, j)]

    def transition(self, s, t) -> Tensor:
        s, t = torch.as_tensor(s, dtype=torch.float64), torch.as_tensor(t, dtype=torch.float64)
        s, t = torch.broadcast_tensors(s, t)
        i, j = self.grid_index(s).reshape(-1), self.grid_index(t).reshape(-1)
        if (i > j).any():
            raise ValueError("a transition runs forward in time: need s <= t")
        out = torch.stack([self._product(int(a), int(b)) for a, b in zip(i, j)]) if i.numel() else \
            torch.empty(0, self.num_classes, self.num_classes, dtype=torch.float64)
        return out.reshape(*s.shape, self.num_classes, self.num_classes).to(s.device)

    def prior(self) -> Tensor:
        return torch.full((self.num_classes,), 1.0 / self.num_classes, dtype=torch.float64)

    def __repr__(self) -> str:
        if self.schedule == "linear":
            return f"DiscretizedGaussian(K={self.num_classes}, steps={self.steps}, beta={self.beta_min}..{self.beta_max})"
        return f"DiscretizedGaussian(K={self.num_classes}, steps={self.steps}, schedule='mutual_information', beta_max={self.beta_max})"
