r"""Per-example losses of categorical diffusion, in nats (sum over positions), and bits per symbol.

**The variational bound** of a discrete-time path with T steps (D3PM eq. 1; Sohl-Dickstein et al.):

    -log p(x0) <= L_T + sum_{i=2..T} L_{i-1} + L_0,
    L_T = KL(q(x_T | x0) || prior),  L_{i-1} = E_q KL(q(x_{i-1} | x_i, x0) || p(x_{i-1} | x_i)),
    L_0 = E_q[-log p(x0 | x_1)],

each a sum over positions. `vb_loss` is its unbiased one-sample estimate: step i uniform in 1..T,
x_i ~ q(x_i | x0), T * (L_{i-1} or L_0 when i = 1) + L_T. `d3pm_loss` adds lambda times the auxiliary
cross-entropy -log p(x0 | x_i) of the prediction (D3PM's hybrid loss L_vb + lambda L_ce, lambda = 0.001
on images, 0.01 on text; an often-copied minimal implementation computes lambda L_vb + L_ce instead).

**Masked diffusion** in continuous time (Sahoo et al. 2024, eq. 10; Shi et al. 2024): with the
schedule alpha(t), t ~ U(0, 1] and x_t ~ q(x_t | x0),

    -log p(x0) <= E_t [ -alpha'(t) / (1 - alpha(t)) * sum_{positions masked in x_t} -log p(x0 | x_t) ],

tight for the exact p(x0 | x_t) (only one token unmasks at a time in continuous time), so for an
exact model the bound is the data's entropy.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._random import Generators, rand
from .paths import CategoricalPath, _Mixing

__all__ = ["vb_loss", "d3pm_loss", "masked_loss", "prior_term", "bits_per_symbol", "kl_categorical"]


def kl_categorical(q: Tensor, p: Tensor) -> Tensor:
    """KL(q || p) over the last axis, terms with q = 0 dropped; p's zeros where q > 0 give a large
    finite value (the log is floored at the float64 tiny)."""
    q, p = q.double(), p.double()
    tiny = torch.finfo(torch.float64).tiny
    return torch.where(q > 0, q * (torch.log(q.clamp_min(tiny)) - torch.log(p.clamp_min(tiny))), torch.zeros_like(q)).sum(-1)


def _positions(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def prior_term(path: CategoricalPath, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_1 | x0) || prior) summed over positions, per example."""
    return _positions(kl_categorical(path.marginal(x0, 1.0), path.prior().to(x0.device))).sum(1)


def _nll(x0: Tensor, probs: Tensor) -> Tensor:
    """-log probs[x0] per position (probs over the K symbols)."""
    p = torch.gather(probs.double(), -1, x0.long()[..., None])[..., 0]
    return -torch.log(p.clamp_min(torch.finfo(torch.float64).tiny))


def _steps(path: CategoricalPath, B: int, t, generator, device) -> Tensor:
    if not path.discrete:
        raise ValueError(f"the variational bound of D3PM needs a discrete-time path (steps = T); {path!r} is continuous: "
                         "use the masked-diffusion loss, or give the path steps")
    T = path.steps
    if t is None:
        return (rand((B,), generator=generator, device=device, dtype=torch.float64) * T).floor().long().clamp_max(T - 1) + 1
    i = torch.as_tensor(t, device=device)
    i = (torch.round(i * T) if i.is_floating_point() else i).long().reshape(-1).expand(B)
    if (i < 1).any() or (i > T).any():
        raise ValueError(f"steps must lie in 1..{T}")
    return i


def d3pm_loss(denoiser, path: CategoricalPath, x0: Tensor, *, lam: float = 0.0, t=None,
              generator: Generators = None, **cond) -> Tensor:
    """The one-sample estimate of the bound plus lam times the cross-entropy (module doc), per example
    (B,), nats. `t`: steps i in 1..T (integers) or times i / T, to pin the draw."""
    B, T = x0.shape[0], path.steps
    i = _steps(path, B, t, generator, x0.device)
    t_now, t_prev = i.double() / T, (i - 1).double() / T
    x_t = path.sample(x0, t_now, generator)
    probs = denoiser(x_t, t_now.to(torch.get_default_dtype()), **cond)
    reverse = path.reverse(x_t, t_prev, t_now, probs)
    kl = kl_categorical(path.posterior(x_t, t_prev, t_now, x0), reverse)
    first = (i == 1).reshape(B, *([1] * (x0.dim() - 1)))
    # at i = 1 the reverse step is p(x0 | x_1) itself: L_0 = -log p(x0 | x_1)
    rec = _nll(x0, reverse[..., : path.num_classes])
    term = _positions(torch.where(first, rec, kl)).sum(1)
    loss = T * term + prior_term(path, x0)
    if lam:
        loss = loss + lam * _positions(_nll(x0, path.restrict(x_t, t_now, probs))).sum(1)
    return loss.to(torch.get_default_dtype())


def vb_loss(denoiser, path: CategoricalPath, x0: Tensor, *, t=None, generator: Generators = None, **cond) -> Tensor:
    """The one-sample estimate of the variational bound (module doc), per example, nats."""
    return d3pm_loss(denoiser, path, x0, lam=0.0, t=t, generator=generator, **cond)


def masked_loss(denoiser, path: CategoricalPath, x0: Tensor, *, t=None, generator: Generators = None, **cond) -> Tensor:
    """The continuous-time masked-diffusion bound's one-sample estimate (module doc), per example, nats."""
    if not isinstance(path, _Mixing) or path.mask is None:
        raise ValueError(f"the masked-diffusion loss needs an absorbing path (a [MASK] state); got {path!r}")
    B = x0.shape[0]
    if t is None:  # stratified over the batch (MDLM's low-discrepancy sampler), each t_i uniform on (0, 1]
        u = rand((1,), generator=generator, device=x0.device, dtype=torch.float64)
        t = 1.0 - torch.remainder(u + torch.arange(B, device=x0.device, dtype=torch.float64) / B, 1.0)
    t = torch.as_tensor(t, dtype=torch.float64, device=x0.device).reshape(-1).expand(B)
    if (t <= 0).any() or (t > 1).any():
        raise ValueError("times of the masked-diffusion loss must lie in (0, 1]")
    x_t = path.sample(x0, t, generator)
    probs = path.restrict(x_t, t, denoiser(x_t, t.to(torch.get_default_dtype()), **cond))
    masked = (x_t == path.mask)
    nll = _positions(torch.where(masked, _nll(x0, probs), torch.zeros((), dtype=torch.float64, device=x0.device))).sum(1)
    a = path.alpha(t)
    weight = -path.alpha_derivative(t) / (1 - a).clamp_min(1e-12)
    return (weight * nll).to(torch.get_default_dtype())


def bits_per_symbol(nats_per_example: Tensor, positions: int) -> float:
    """Mean nats per example over `positions` symbols, in bits per symbol."""
    return float(nats_per_example.double().mean()) / (positions * math.log(2))
