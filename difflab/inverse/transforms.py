r"""Denoiser -> denoiser transforms for an observation y = A x0 + n, n ~ N(0, s^2 I), like `difflab.guidance`, so
every sampler and every path gets them.

By Tweedie's formula, conditioning on y adds its likelihood's gradient to the score, and (sigma_t^2 / alpha_t)
times it to the denoiser:

    E[x0 | x_t, y] = D(x_t, t) + (sigma_t^2 / alpha_t) grad_{x_t} log p(y | x_t).

Both methods approximate p(y | x_t) = int p(y | x0) p(x0 | x_t) dx0 by a Gaussian around A D(x_t, t):

- `pgdm` (Song, Vahdat, Mardani & Kautz 2023, pseudo-inverse guided diffusion, eq. 7-8):
  p(y | x_t) ~ N(y; A D, r_t^2 A A^T + s^2 I) with r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2), the variance of x0
  given x_t for data of unit variance; its gradient (the covariance held fixed) is one vector-Jacobian product

      grad_{x_t} log p(y | x_t) = (dD / dx_t)^T A^T (r_t^2 A A^T + s^2 I)^{-1} (y - A D).

  For the prior N(0, I) p(x0 | x_t) is exactly N(D, r_t^2 I), so the transform is E[x0 | x_t, y] itself.
- `dps` (Chung, Kim, McCann, Klasky & Ye 2023, diffusion posterior sampling, eq. 16): p(y | x_t) ~ N(y; A(D),
  s^2 I), the posterior of x0 given x_t collapsed to its mean, for any differentiable A:

      grad_{x_t} log p(y | x_t) ~ -(scale / 2) w grad_{x_t} |y - A(D)|^2,

  with w = 1 / s^2, or (`normalize`, the default, as the paper's Algorithm 1 and its code do) w = 1 / rms(y - A(D)),
  the residual's root mean square over its entries, which keeps the step bounded where D is far from y, lets
  s = 0 (no noise) be used and makes `scale` mean the same for observations of any size. It ignores D's spread, so
  it overshoots where sigma_t is large, and on a coarse grid the overshoot diverges (a 20-step sampler on an 8x8
  digit mixture: sliced W2 0.5-3.4 to the exact posterior at scale 10, against 0.07-0.21 at 1,000 steps). So
  (`bounded`, the default) the correction delta = D' - D is cut to lambda delta with

      lambda = min(1, 2 <r, A delta> / |A delta|^2),   r = y - A(D),   A delta = A(D + delta) - A(D),

  the longest step along delta whose prediction is no farther from y than D's own, to first order (twice the step
  that fits y best along it): a guided prediction never fits the observation worse than the unguided one. It
  costs one more A (and `decode`) per call, no network evaluation. `scale` is a property of the denoiser, the
  same for any number of steps (the paper's zeta is a step of its 1,000-step DDPM sampler, not this): the default
  10 is measured on exact posteriors (2-D and digit mixtures, benchmarks/dps.py) and on Fashion-MNIST restorations
  (benchmarks/inverse.py); with the bound any scale from 10 up gives nearly the same samples.

`y` holds one observation per example, (N, m) or (N, *out); a call may pass its own rows as `observation=`
(what `sampling.sample_batched` slices per batch when it is given in `cond`). With `decode` the observation is of
decode(x0) (latent diffusion: the image of a latent); A then acts on images and the gradient flows through the
decoder to the latents.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import append_dims, batch_times
from .operators import as_operator

__all__ = ["pgdm", "dps", "PseudoInverseGuided", "PosteriorSampling"]


def _noise_std(noise_std) -> float:
    s = float(noise_std)
    if not (s >= 0 and math.isfinite(s)):
        raise ValueError(f"the observation's noise standard deviation must be >= 0 and finite, got {noise_std}")
    return s


class _Observed:
    """What both transforms share: the denoiser, the path, the observation and how it is read per call, and an
    optional `decode` (latent diffusion: the observation is of decode(x0), the guidance acts on the latents)."""

    def __init__(self, denoiser, path, y, noise_std, decode=None):
        self.denoiser, self.path, self.noise_std = denoiser, path, _noise_std(noise_std)
        self.y = None if y is None else torch.as_tensor(y)
        self.decode = decode if decode is not None else (lambda x: x)

    def _y(self, observation, out: Tensor) -> Tensor:
        y = self.y if observation is None else torch.as_tensor(observation)
        if y is None:
            raise ValueError("no observation: give y= to the transform or observation= per call")
        y = y.to(out)
        if y.shape[0] == 1 and out.shape[0] > 1:
            y = y.expand(out.shape[0], *y.shape[1:])
        if y.numel() != out.numel():
            raise ValueError(f"the observation has shape {tuple(y.shape)}; the operator gives {tuple(out.shape)} for this "
                             "batch (one observation per example)")
        return y.reshape(out.shape)

    def _times(self, t, x: Tensor):
        t = batch_times(t, x)
        return t, self.path.alpha(t).to(x.dtype), self.path.sigma(t).to(x.dtype)

    def _guided(self, x0: Tensor, a: Tensor, s: Tensor, grad: Tensor) -> Tensor:
        """D + (sigma^2 / alpha) grad, and D itself where alpha = 0 (x_t then says nothing of x0)."""
        factor = torch.where(a > 0, s**2 / a.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(a))
        return x0.detach() + append_dims(factor, x0.ndim) * grad


class PseudoInverseGuided(_Observed):
    """ΠGDM's E[x0 | x_t, y] (module doc); `A` a linear operator or an (m, d) tensor."""

    def __init__(self, denoiser, path, A, y=None, noise_std: float = 0.0, decode=None):
        super().__init__(denoiser, path, y, noise_std, decode)
        self.A = as_operator(A)

    def __call__(self, x_t: Tensor, t, *, observation=None, **cond) -> Tensor:
        t, a, s = self._times(t, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            x0 = self.denoiser(x, t, **cond)  # D(x_t), with its graph for the vector-Jacobian product
            image = self.decode(x0)
            seen = self.A(image.detach())
            residual = self._y(observation, seen) - seen
            r2 = s**2 / (a**2 + s**2)
            ok = (r2 + self.noise_std**2) > 0  # at t = 0 without noise there is nothing left to correct
            u = self.A.gram_solve(residual, torch.where(ok, r2, torch.ones_like(r2)).to(seen.dtype), self.noise_std**2,
                                  image.shape[1:])
            u = u * append_dims(ok.to(u.dtype), u.ndim)
            grad, = torch.autograd.grad(image, x, self.A.adjoint(u, image.shape[1:]))  # (dD/dx_t)^T A^T u
        return self._guided(x0, a, s, grad)

    def __repr__(self) -> str:
        return f"pgdm({self.denoiser!r}, {self.A!r}, noise_std={self.noise_std:g})"


class PosteriorSampling(_Observed):
    """DPS's E[x0 | x_t, y] (module doc); `A` any differentiable callable (N, *shape) -> (N, ...)."""

    def __init__(self, denoiser, path, A, y=None, noise_std: float = 0.0, scale: float = 10.0, normalize: bool = True,
                 decode=None, bounded: bool = True):
        super().__init__(denoiser, path, y, noise_std, decode)
        if not callable(A) and not torch.is_tensor(A):
            raise ValueError(f"DPS's measurement is a callable A(x) or an (m, d) tensor, got {type(A).__name__}")
        self.A = as_operator(A) if torch.is_tensor(A) else A
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"the DPS scale (zeta) must be >= 0 and finite, got {scale}")
        if not normalize and self.noise_std == 0:
            raise ValueError("DPS without normalisation divides by the noise variance: give noise_std > 0 or normalize=True")
        self.scale, self.normalize, self.bounded = float(scale), bool(normalize), bool(bounded)

    def __call__(self, x_t: Tensor, t, *, observation=None, **cond) -> Tensor:
        t, a, s = self._times(t, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            x0 = self.denoiser(x, t, **cond)
            pred = self.A(self.decode(x0))
            y = self._y(observation, pred.detach())
            sq = (y - pred).flatten(1).square().sum(1)  # |y - A(D)|^2 per example
            if self.normalize:  # 1 / rms(y - A(D)) in place of 1 / s^2 (Chung et al., Algorithm 1, per entry)
                rms = (sq.detach() / pred[0].numel()).sqrt()
                weight = 1.0 / rms.clamp_min(torch.finfo(sq.dtype).eps)
            else:
                weight = torch.full_like(sq, 1.0 / self.noise_std**2)
            grad, = torch.autograd.grad((-0.5 * self.scale * weight * sq).sum(), x)
        guided = self._guided(x0, a, s, grad)
        if not self.bounded:
            return guided
        with torch.no_grad():  # lambda = min(1, 2 <r, A delta> / |A delta|^2) (module doc)
            x0, pred = x0.detach(), pred.detach()
            delta = guided - x0
            r, moved = (y - pred).flatten(1), (self.A(self.decode(guided)) - pred).flatten(1)
            tiny = torch.finfo(moved.dtype).tiny
            lam = (2 * (r * moved).sum(1) / moved.square().sum(1).clamp_min(tiny)).clamp(0, 1)
        return x0 + append_dims(lam.to(delta.dtype), delta.ndim) * delta

    def __repr__(self) -> str:
        return f"dps({self.denoiser!r}, scale={self.scale:g}, noise_std={self.noise_std:g})"


def pgdm(denoiser, path, A, y=None, noise_std: float = 0.0, decode=None) -> PseudoInverseGuided:
    """Pseudo-inverse guidance of `denoiser` towards the observation `y` = A x0 + N(0, noise_std^2) (module doc);
    with `decode`, y = A decode(x0) + N(0, noise_std^2) (a latent model observed through its decoder)."""
    return PseudoInverseGuided(denoiser, path, A, y, noise_std, decode)


def dps(denoiser, path, A, y=None, noise_std: float = 0.0, scale: float = 10.0, normalize: bool = True,
        decode=None, bounded: bool = True) -> PosteriorSampling:
    """Diffusion posterior sampling of `denoiser` towards `y` = A(x0) + N(0, noise_std^2) (module doc); with
    `decode`, of A(decode(x0)); `bounded`: the correction never fits y worse than D does (module doc)."""
    return PosteriorSampling(denoiser, path, A, y, noise_std, scale, normalize, decode, bounded)
