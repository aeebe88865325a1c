r"""Langevin dynamics and annealed Langevin dynamics (the notes' NCSN chapter).

Langevin dynamics dx = eps grad log p(x) dt + sqrt(2 eps) dW has p as its stationary law; its
Euler-Maruyama discretisation with step alpha = eps dt is

    x_{k+1} = x_k + alpha grad log p(x_k) + sqrt(2 alpha) z_k,

which samples p as alpha -> 0 and the number of steps -> infinity. `langevin` runs it for any
fixed score function (for instance the exact score of the notes' two-Gaussian example).

Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) runs it on a ladder of noise levels
sigma_1 > ... > sigma_L, T steps at each with alpha_i = eps sigma_i^2 / sigma_L^2. It was designed
for the VE path (x_t = x0 + sigma z), whose data scale does not move with t. Any affine path is a
VE path in disguise: x~ = x_t / alpha(t) = x0 + (sigma/alpha) z. So the levels here are the grid's
positive times with alpha > 0, the noise level of t_i is sigma~_i = sigma_i / alpha_i, the chain
runs on x~ with the score (Tweedie)

    grad log p~_i(x~) = (D(alpha_i x~, t_i) - x~) / sigma~_i^2,

and on VE it is exactly Song & Ermon's algorithm. The optional final denoising step returns
x~ + sigma~_L^2 score(x~) = D(alpha_L x~, t_L) (Song & Ermon 2020, "Improved techniques"); without
it the result is alpha_L x~, a sample of p_{t_L}.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_finite
from .._random import randn
from ..targets import score_of
from ._common import SampleInfo, describe, finish, start, times_for


@torch.no_grad()
def langevin(score: Callable[[Tensor], Tensor], x: Tensor, *, step_size: float, n_steps: int,
             generator: torch.Generator | None = None, callback=None, return_info: bool = False):
    """Unadjusted Langevin: x <- x + step_size score(x) + sqrt(2 step_size) z, `n_steps` times."""
    check_finite(x, "x (the starting sample)")
    if step_size <= 0 or n_steps < 1 or int(n_steps) != n_steps:
        raise ValueError(f"need step_size > 0 and an integer n_steps >= 1; got {step_size}, {n_steps}")
    for k in range(int(n_steps)):
        z = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + step_size * score(x) + math.sqrt(2 * step_size) * z
        if callback is not None:
            callback({"i": k, "x": x})
    if return_info:
        return x, SampleInfo(nfe=int(n_steps), steps=int(n_steps), timesteps=torch.empty(0))
    return x


def _langevin_budget(nfe: int, options: dict) -> dict:
    """~30 Langevin steps relax one level at the default step 0.1 sigma^2 ((1 - 0.1)^30 = 4%), so a budget
    buys (nfe - 1) / 30 levels, plus the final denoising evaluation (a given steps_per_level is kept)."""
    per = options.get("steps_per_level") or max(1, min(30, nfe - 1))
    return {"steps": max(1, (nfe - int(options.get("denoise", True))) // per), "steps_per_level": per}


# one level per grid time with alpha > 0 (all N on paths with alpha(1) > 0), plus the final denoising
@describe(nfe=lambda steps, o: steps * o["steps_per_level"] + int(o["denoise"]), stochastic=True, budget=_langevin_budget)
@torch.no_grad()
def annealed_langevin(denoiser, path, x: Tensor, ts, *, eps: float | None = None, steps_per_level: int = 10,
                      denoise: bool = True, generator: torch.Generator | None = None, callback=None,
                      return_info: bool = False, **cond):
    """Song & Ermon's Algorithm 1 on the levels sigma(t_i)/alpha(t_i) of the grid's times with alpha > 0.

    `eps` is the algorithm's step scale (step alpha_i = eps sigma~_i^2 / sigma~_L^2); by default
    eps = 0.1 sigma~_L^2, i.e. alpha_i = 0.1 sigma~_i^2. NFE = levels x steps_per_level (+ 1 to denoise).
    """
    if steps_per_level < 1 or int(steps_per_level) != steps_per_level:
        raise ValueError(f"steps_per_level must be a positive integer, got {steps_per_level}")
    den, ts = start(denoiser, x, ts)
    t64 = ts[ts > 0]
    a_all, s_all = path.alpha(t64).tolist(), path.sigma(t64).tolist()
    levels = [(t, a, s / a) for t, a, s in zip(t64.tolist(), a_all, s_all) if a > 0]
    if not levels:
        raise ValueError("annealed Langevin needs at least one grid time with t > 0 and alpha(t) > 0")
    a0, s0 = float(path.alpha(ts[0])), float(path.sigma(ts[0]))
    # x~ = x / alpha at the start; where alpha = 0 (t = 1 on Linear, Cosine) rescale the prior draw instead.
    x = x / a0 if a0 > 0 else x * (levels[0][2] / s0)
    sigma_L = levels[-1][2]
    eps = 0.1 * sigma_L**2 if eps is None else float(eps)
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    for i, (t, a_i, sig_i) in enumerate(levels):
        step = eps * sig_i**2 / sigma_L**2  # alpha_i = eps sigma_i^2 / sigma_L^2
        tt = times_for(x, t)
        for _ in range(int(steps_per_level)):
            score = score_of(x, den(a_i * x, tt, **cond), 1.0, sig_i)  # Tweedie, in the VE coordinates x~
            z = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + step * score + math.sqrt(2 * step) * z
        if callback is not None:
            callback({"i": i, "t": float(t), "x": a_i * x})
    t_L, a_L, _ = levels[-1]
    x = den(a_L * x, times_for(x, t_L), **cond) if denoise else a_L * x  # x~ + sigma~_L^2 score = D
    return finish(x, den, ts, return_info)
