r"""Probability-flow ODE samplers (Song et al. 2021, eq. 13).

The probability-flow ODE dx/dt = f x - (1/2) g^2 grad log p_t(x) shares the marginals p_t of the
SDE. On an affine path, substituting f, g^2 and Tweedie's score gives the simple form

    dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat,     x0_hat = D(x, t),  eps_hat = (x - alpha x0_hat) / sigma,

i.e. the path's own velocity with (x0, eps) replaced by their posterior means (the flow-matching
marginal velocity). `ode_euler` (first order) and `ode_heun` (second order; Karras et al. 2022,
Algorithm 1) step it on the grid; on a final step to t = 0, where sigma' may be infinite, Heun
takes an Euler step as in Karras et al. `ode_rk45` hands it to torchdiffeq's adaptive Dormand-
Prince solver between the first and the last positive time of the grid and, when the grid ends
at 0, finishes with one DDIM step to 0, i.e. x_0 = D(x, t_last) (it differs from the exact flow's
last stretch by O(sigma(t_last)^2): 1e-4 relative for VP with t_last = 1e-3). `ode_rk4` is the
classical fourth-order Runge-Kutta method; at t = 0 the velocity is 0/0 (eps_hat divides by sigma =
0), so a final step to 0 uses Heun's third-order rule, whose stages t, t + h/3, t + 2h/3 avoid the
end point: x_s = x_t + h (k1 + 3 k3) / 4. Its local error O(h^4) keeps the global order at 4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import choose
from ..targets import eps_of
from ._common import describe, finish, start, steps_of, times_for

_ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def velocity(x: Tensor, x0: Tensor, alpha: float, sigma: float, d_alpha: float, d_sigma: float) -> Tensor:
    """dx/dt of the probability-flow ODE at x given x0_hat = D(x, t) and the path's values at t."""
    return d_alpha * x0 + d_sigma * eps_of(x, x0, alpha, sigma)


def _coefficients(path, times) -> list[tuple[float, float, float, float]]:
    """(alpha, sigma, alpha', sigma') at each time, in one float64 pass."""
    tt = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    with torch.no_grad():
        cols = [fn(tt).tolist() for fn in (path.alpha, path.sigma, path.d_alpha, path.d_sigma)]
    return list(zip(*cols))


@describe()
@torch.no_grad()
def ode_euler(denoiser, path, x: Tensor, ts, *, callback=None, return_info: bool = False, generator=None, **cond):
    """Euler's method on the probability-flow ODE: x_s = x_t + (s - t) v(x_t, t)."""
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        x0 = den(x, times_for(x, st.t), **cond)
        x = x + (st.s - st.t) * velocity(x, x0, st.alpha_t, st.sigma_t, st.d_alpha_t, st.d_sigma_t)
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


@describe(nfe=lambda steps, o: 2 * steps - 1)  # Euler on the final step to 0
@torch.no_grad()
def ode_heun(denoiser, path, x: Tensor, ts, *, callback=None, return_info: bool = False, generator=None, **cond):
    """Heun's method (explicit trapezoid): Euler predictor, then the average of the two slopes.

    NFE = 2 per step, 1 on a final step to t = 0.
    """
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        h = st.s - st.t
        x0 = den(x, times_for(x, st.t), **cond)
        v = velocity(x, x0, st.alpha_t, st.sigma_t, st.d_alpha_t, st.d_sigma_t)
        x_euler = x + h * v  # predictor
        if st.s > 0:  # corrector: trapezoid with the slope at the predicted point
            x0_next = den(x_euler, times_for(x, st.s), **cond)
            x = x + h * 0.5 * (v + velocity(x_euler, x0_next, st.alpha_s, st.sigma_s, st.d_alpha_s, st.d_sigma_s))
        else:
            x = x_euler
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


@describe(nfe=lambda steps, o: 4 * steps - 1)  # three stages on the final step to 0
@torch.no_grad()
def ode_rk4(denoiser, path, x: Tensor, ts, *, callback=None, return_info: bool = False, generator=None, **cond):
    """Classical Runge-Kutta 4 (NFE = 4 per step); a final step to sigma = 0 uses Heun's third-order
    rule (NFE 3; see the module doc)."""
    den, ts = start(denoiser, x, ts)
    for i, st in enumerate(steps_of(path, ts)):
        t, h = st.t, st.s - st.t
        to_zero = st.sigma_s == 0
        nodes = (t, t + h / 3, t + 2 * h / 3) if to_zero else (t, t + h / 2, st.s)
        c = _coefficients(path, nodes)

        def v(y, k):
            y0 = den(y, times_for(y, nodes[k]), **cond)
            return velocity(y, y0, *c[k]), y0

        k1, x0 = v(x, 0)
        if to_zero:  # Heun's third-order rule: nodes 0, 1/3, 2/3, weights 1/4, 0, 3/4
            k2 = v(x + h / 3 * k1, 1)[0]
            k3 = v(x + 2 * h / 3 * k2, 2)[0]
            x = x + h * (k1 + 3 * k3) / 4
        else:
            k2 = v(x + h / 2 * k1, 1)[0]
            k3 = v(x + h / 2 * k2, 1)[0]
            k4 = v(x + h * k3, 2)[0]
            x = x + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        if callback is not None:
            callback({"i": i, "t": st.t, "s": st.s, "x": x, "x0": x0})
    return finish(x, den, ts, return_info)


# adaptive: its tolerances, not a budget, set the cost; the steps are chosen for the whole batch (its error norm)
@describe(nfe=None, batch_invariant=False)
@torch.no_grad()
def ode_rk45(denoiser, path, x: Tensor, ts, *, rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
             callback=None, return_info: bool = False, generator=None, **cond):
    """Adaptive Runge-Kutta (Dormand-Prince 5(4) by default, via torchdiffeq) with tolerances rtol, atol.

    NFE is whatever the solver needed (reported with `return_info=True`).
    """
    from torchdiffeq import odeint

    if not (0 < rtol < 1 and 0 < atol < 1):
        raise ValueError(f"ode_rk45 needs tolerances 0 < rtol, atol < 1 (e.g. 1e-5); got rtol={rtol}, atol={atol}")
    choose(method, _ADAPTIVE, "adaptive torchdiffeq method")
    den, ts = start(denoiser, x, ts)
    t_end = float(ts[-2] if float(ts[-1]) == 0 else ts[-1])

    def f(t: Tensor, y: Tensor) -> Tensor:
        tt = float(t)
        return velocity(y, den(y, times_for(y, tt), **cond), *_coefficients(path, tt)[0])

    if t_end < float(ts[0]):
        span = torch.tensor([float(ts[0]), t_end], dtype=x.dtype, device=x.device)
        # A step must end exactly at t_end (no stage beyond it, where the path may be undefined),
        # and the first step is given so that the initial-step heuristic never probes outside [0, 1].
        options = {"step_t": span[1:], "first_step": 0.02 * (float(ts[0]) - t_end)} if method in _ADAPTIVE else None
        x = odeint(f, x, span, rtol=rtol, atol=atol, method=method, options=options)[-1]
    if float(ts[-1]) == 0:
        x = den(x, times_for(x, t_end), **cond)  # DDIM step to t = 0: x_0 = x0_hat
    if callback is not None:
        callback({"i": 0, "t": float(ts[0]), "s": float(ts[-1]), "x": x, "x0": x})
    return finish(x, den, ts, return_info)
