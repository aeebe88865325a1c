r"""Step grids: the decreasing sequence of times a sampler visits, from noise to data.

Every grid function is `grid(path, steps, ...) -> ts`, a float64 tensor of `steps + 1` strictly
decreasing times ending at 0; a sampler steps from ts[i] to ts[i + 1], so the previous time of
every step is read off the grid, never computed from a fixed stride.

- `uniform`: equal steps in t.
- `leading`, `trailing`, `linspace`: the discrete-time spacings as diffusers names them (Lin et al.
  2024, "Common diffusion noise schedules and sample steps are flawed", Table 2), for paths with
  `T` steps; diffusers' 0-based timestep k is the time (k + 1) / T, and the grid ends at 0.
- `karras`: Karras et al. (2022, eq. 5) in the noise-to-signal ratio sigma/alpha = exp(-log_snr/2):
  sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.
- `log_snr`: equal steps in log-SNR (the natural variable of DPM-Solver), then 0.

For `karras` and `log_snr` the noise end is `t_max` exactly and the data end is the path's
`t_min` before the final 0. By default (`t_max=None`, `noise_end`) the noise end is t = 1, except
where the path's log-SNR at t = 1 is below START_LOG_SNR = -2 ln 80 (Karras et al.'s sigma_max = 80
for data in [-1, 1]) and its sigma there is already sigma(1): cosine schedules, whose log-SNR falls
to -19.8 (diffusers' squaredcos_cap_v2 betas, T = 1000) or to -inf (the continuous cosine path),
and by a little the linear-beta VP and DDPM schedules (-10.05 and -10.1 at t = 1).
There the grid starts at log-SNR -2 ln 80, where the marginal alpha x0 + sigma z is the prior
N(0, I) up to a signal of alpha = 1/80 of the data; steps spent above it change nothing, and both
grids, equal in log-SNR or rho-spaced in sigma/alpha, would otherwise put a third to half of their
steps there (benchmarks/README.md measures it: at 10 NFE on the cosine Fashion-MNIST model, UniPC's
FD is 0.45 from -8.76 against 1.44 from -19.8).
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import Tensor

from .._checks import choose

__all__ = ["GRIDS", "START_LOG_SNR", "make_grid", "grid_options", "noise_end", "uniform", "leading", "trailing", "linspace", "karras", "log_snr"]

# log-SNR is clamped here where a path reaches alpha = 0 (Linear, Cosine at t = 1): sigma/alpha = e^15.
_MIN_LOG_SNR = -30.0
START_LOG_SNR = -2 * math.log(80.0)  # the default noise end of karras and log_snr (module doc)


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def _discrete_T(path, name: str) -> int:
    if not path.discrete:
        raise ValueError(
            f"the {name!r} grid is defined on a discrete-time path (DiscreteVP); {path!r} is continuous: "
            "use 'uniform', 'karras' or 'log_snr'"
        )
    return int(path.T)


def _from_discrete(k: Tensor, T: int) -> Tensor:
    return torch.cat([(k.to(torch.float64) + 1) / T, torch.zeros(1, dtype=torch.float64)])


def _check_discrete_steps(steps: int, T: int, name: str) -> None:
    if steps > T:
        raise ValueError(f"the {name!r} grid takes at most T={T} steps on this path; got steps={steps}")


def uniform(path, steps: int, *, t_max: float = 1.0, t_end: float = 0.0) -> Tensor:
    """Equal steps in t from t_max down to t_end."""
    steps = _check_steps(steps)
    if not 0 <= t_end < t_max <= 1:
        raise ValueError(f"need 0 <= t_end < t_max <= 1; got t_end={t_end}, t_max={t_max}")
    return torch.linspace(t_max, t_end, steps + 1, dtype=torch.float64)


def leading(path, steps: int) -> Tensor:
    """diffusers' 'leading': k = (N-1) r, ..., r, 0 with r = T // N."""
    T = _discrete_T(path, "leading")
    steps = _check_steps(steps)
    _check_discrete_steps(steps, T, "leading")
    k = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * (T // steps)
    return _from_discrete(k, T)


def trailing(path, steps: int) -> Tensor:
    """diffusers' 'trailing': k = round(T - j T / N) - 1 for j = 0..N-1 (starts at the last step T - 1)."""
    T = _discrete_T(path, "trailing")
    steps = _check_steps(steps)
    _check_discrete_steps(steps, T, "trailing")
    k = torch.round(T - torch.arange(steps, dtype=torch.float64) * (T / steps)) - 1
    return _from_discrete(k, T)


def linspace(path, steps: int) -> Tensor:
    """diffusers' 'linspace': k = round(linspace(0, T - 1, N)) reversed."""
    T = _discrete_T(path, "linspace")
    steps = _check_steps(steps)
    _check_discrete_steps(steps, T, "linspace")
    k = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).flip(0)
    if steps > 1 and bool((k[1:] >= k[:-1]).any()):
        raise ValueError(f"the 'linspace' grid repeats a timestep with steps={steps}, T={T}")
    return _from_discrete(k, T)


def noise_end(path) -> float:
    """The default first time of the karras and log_snr grids: 1, or where the log-SNR is
    START_LOG_SNR if it falls below that before t = 1 while sigma is already sigma(1) (to 1e-3), so
    that the prior drawn for t = 1 is the marginal there (module doc). VE paths and the linear
    (rectified-flow) path, whose sigma still grows up to t = 1, always start at 1."""
    one = torch.tensor(1.0, dtype=torch.float64)
    if float(path.log_snr(one)) >= START_LOG_SNR:
        return 1.0
    t = path.t_from_log_snr(torch.tensor(START_LOG_SNR, dtype=torch.float64))
    return float(t) if float(path.sigma(t) / path.sigma(one)) > 1 - 1e-3 else 1.0


def _log_snr_range(path, t_max: float | None, t_min: float | None) -> tuple[float, float, float]:
    """(log-SNR at the noise end, at the data end, the noise end's time), with the defaults resolved."""
    t_max = noise_end(path) if t_max is None else float(t_max)
    t_min = path.t_min if t_min is None else float(t_min)
    if not 0 < t_min < t_max <= 1:
        raise ValueError(f"need 0 < t_min < t_max <= 1; got t_min={t_min}, t_max={t_max}")
    lam_lo = max(float(path.log_snr(torch.tensor(t_max, dtype=torch.float64))), _MIN_LOG_SNR)
    lam_hi = float(path.log_snr(torch.tensor(t_min, dtype=torch.float64)))
    return lam_lo, lam_hi, t_max


def _times_from_log_snr(path, lam: Tensor, t_max: float) -> Tensor:
    ts = path.t_from_log_snr(lam)
    ts[0] = t_max  # start exactly at the noise end
    return torch.cat([ts, torch.zeros(1, dtype=torch.float64)])


def karras(path, steps: int, *, rho: float = 7.0, t_max: float | None = None, t_min: float | None = None) -> Tensor:
    """Karras et al.'s rho-spaced noise levels (in sigma/alpha), mapped back to times, then 0."""
    steps = _check_steps(steps)
    if not (isinstance(rho, (int, float)) and 0 < rho < float("inf")):
        raise ValueError(f"the karras grid's rho must be a number > 0 (Karras et al. use 7), got {rho!r}")
    lam_lo, lam_hi, t_max = _log_snr_range(path, t_max, t_min)
    s_max, s_min = torch.exp(torch.tensor(-lam_lo / 2, dtype=torch.float64)), torch.exp(torch.tensor(-lam_hi / 2, dtype=torch.float64))
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _times_from_log_snr(path, -2 * torch.log(sig), t_max)


def log_snr(path, steps: int, *, t_max: float | None = None, t_min: float | None = None) -> Tensor:
    """Equal steps in log-SNR from t_max to t_min, then 0."""
    steps = _check_steps(steps)
    lam_lo, lam_hi, t_max = _log_snr_range(path, t_max, t_min)
    return _times_from_log_snr(path, torch.linspace(lam_lo, lam_hi, steps, dtype=torch.float64), t_max)


GRIDS = {"uniform": uniform, "leading": leading, "trailing": trailing, "linspace": linspace,
         "karras": karras, "log_snr": log_snr}


def grid_options(name: str) -> dict:
    """A grid's own keyword options and their defaults (`rho` of `karras`, the ends `t_max`, ...)."""
    fn = GRIDS[choose(name, GRIDS, "grid")]
    return {p.name: p.default for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_grid(name: str, path, steps: int, **kwargs) -> Tensor:
    """The grid called `name` (one of `GRIDS`) for `path` with `steps` steps and the grid's own options. On a
    discrete-time path every grid takes at most its T steps: a network of T times has no more to visit."""
    accepted = grid_options(name)
    if getattr(path, "discrete", False) and not isinstance(steps, bool) and isinstance(steps, int):
        _check_discrete_steps(steps, int(path.T), name)
    for key, value in kwargs.items():
        choose(key, accepted, f"option of the {name!r} grid")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"option {key!r} of the {name!r} grid must be a number, got {value!r}")
    return GRIDS[name](path, steps, **kwargs)
