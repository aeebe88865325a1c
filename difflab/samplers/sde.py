r"""Reverse-time SDE samplers (Song et al. 2021, "Score-based generative modeling through SDEs").

The forward SDE dx = f(t) x dt + g(t) dW of a path (see `paths.AffinePath.drift_diffusion`) has
the reverse-time SDE (Anderson 1982; Song et al. eq. 6)

    dx = [f(t) x - g(t)^2 grad log p_t(x)] dt + g(t) dW_bar,    t running from 1 down to 0,

with the score from the denoiser by Tweedie: grad log p_t(x) = (alpha D(x, t) - x) / sigma^2.

`euler_maruyama` discretises it on the grid (step h = t - s > 0):

    x_s = x_t - [f(t) x_t - g(t)^2 score] h + g(t) sqrt(h) z,        no noise on the final step to t = 0.

`pc` is Song et al.'s predictor-corrector sampler (Algorithms 1-3): at each grid time, Langevin
corrector steps on p_t followed by an Euler-Maruyama predictor step. The corrector's step size
follows the signal-to-noise rule of their Algorithm 4/5: eps = 2 (r ||z|| / ||score||)^2 with the
norms averaged over the batch as in their code. (Per-example norms would decouple the samples but
blow up in low dimension, where a sample near a stationary point of p_t has ||score|| ~ 0.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._random import randn
from ..targets import score_of
from ._common import Step, describe, finish, start, steps_of, times_for


def euler_maruyama_step(x: Tensor, x0: Tensor, st: Step, noise: Tensor | None) -> Tensor:
    """One reverse-SDE Euler-Maruyama step t -> s given x0_hat (noise is None on the last step)."""
    if not (math.isfinite(st.f_t) and math.isfinite(st.g2_t)):
        raise ValueError(
            f"the reverse SDE is singular at t={st.t:.6g} (drift {st.f_t}, g^2 {st.g2_t}): alpha(t) = 0 there; "
            f"start the grid below that time, e.g. timesteps from {1 - 1e-3} instead of 1"
        )
    h = st.t - st.s
    score = score_of(x, x0, st.alpha_t, st.sigma_t)  # Tweedie
    x_s = x - (st.f_t * x - st.g2_t * score) * h
    return x_s + math.sqrt(st.g2_t * h) * noise if noise is not None else x_s


def langevin_corrector_step(x: Tensor, score: Tensor, snr: float, noise: Tensor) -> Tensor:
    """One Langevin step with the signal-to-noise step size eps = 2 (snr ||z|| / ||score||)^2 (batch-mean norms)."""
    z_norm = noise.flatten(1).norm(dim=1).mean()
    g_norm = score.flatten(1).norm(dim=1).mean().clamp_min(torch.finfo(x.dtype).tiny)
    eps = 2 * (snr * z_norm / g_norm) ** 2
    return x + eps * score + torch.sqrt(2 * eps) * noise


@describe(stochastic=True)
@torch.no_grad()
def euler_maruyama(denoiser, path, x: Tensor, ts, *, generator: torch.Generator | None = None, callback=None,
                   return_info: bool = False, **cond):
    """Euler-Maruyama on the reverse-time SDE over the grid `ts`."""
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if st.s > 0 else None
        x = euler_maruyama_step(x, x0, st, noise)
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


# the corrector's step size is a batch statistic (Song et al.'s code): samples depend on their batch
@describe(nfe=lambda steps, o: steps * (1 + o["corrector_steps"]), stochastic=True, batch_invariant=False)
@torch.no_grad()
def pc(denoiser, path, x: Tensor, ts, *, snr: float = 0.16, corrector_steps: int = 1,
       generator: torch.Generator | None = None, callback=None, return_info: bool = False, **cond):
    """Predictor-corrector: `corrector_steps` Langevin corrections at each time, then an Euler-Maruyama step.

    NFE = (corrector_steps + 1) per grid step.
    """
    if not snr > 0 or corrector_steps < 0 or int(corrector_steps) != corrector_steps:
        raise ValueError(f"need snr > 0 and an integer corrector_steps >= 0; got snr={snr}, corrector_steps={corrector_steps}")
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        tt = times_for(x, st.t)
        for _ in range(int(corrector_steps)):  # Langevin MCMC on p_t at fixed t (Song et al., Algorithm 5)
            score = score_of(x, den(x, tt, **cond), st.alpha_t, st.sigma_t)
            x = langevin_corrector_step(x, score, snr, randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
        x0 = den(x, tt, **cond)  # predictor: reverse-SDE step t -> s
        noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) if st.s > 0 else None
        x = euler_maruyama_step(x, x0, st, noise)
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)
