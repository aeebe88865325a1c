"""What every sampler shares: what a sampler is (`About`, `describe`), grid validation, the per-step
coefficient table, NFE counting, callbacks.

All path coefficients a sampler needs are computed once per grid, vectorised in float64, and handed
to the step kernels as Python floats (`Step`), so the loop itself does no path arithmetic.

Every sampler states what it is beside its definition with `@describe(...)`: the network
evaluations a grid of N steps (ending at t = 0) costs with given options, whether it draws noise as
it goes, whether a sample depends on the rest of its batch, and (read off its signature) its own
keyword options with their defaults. `steps_for_nfe`,
the bench and the benchmarks read these facts instead of keeping lists of their own.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_finite, choose
from ..denoisers import CountingDenoiser


@dataclass
class SampleInfo:
    """What a sampling run cost: network evaluations (NFE), steps taken and the time grid used."""

    nfe: int
    steps: int
    timesteps: Tensor


# keywords every sampler takes; the rest of its keyword-only parameters are its own options
COMMON_KEYWORDS = frozenset({"denoiser", "path", "x", "ts", "generator", "callback", "return_info"})


@dataclass(frozen=True)
class About:
    """What a sampler is (see the module doc). `evaluations(steps, options)` and `stochastic(options)`
    receive the options merged over the sampler's defaults; `budget(nfe, options)`, when given,
    chooses steps (and options) for an NFE budget itself instead of the largest steps within it."""

    evaluations: Callable[[int, dict], int] | None  # None: adaptive (the solver decides)
    stochastic: Callable[[dict], bool]
    options: dict = field(default_factory=dict)  # name -> default
    budget: Callable[[int, dict], dict] | None = None
    batch_invariant: bool = True  # False: a sample depends on the others of its batch (pc's batch-mean step size)

    @property
    def adaptive(self) -> bool:
        return self.evaluations is None

    def merged(self, options: dict) -> dict:
        return {**self.options, **options}

    def check(self, sampler: str, options: dict) -> dict:
        """Refuse unknown options and values of the wrong type (judged by each option's default)."""
        for key, value in options.items():
            if key not in self.options:
                if not self.options:
                    raise ValueError(f"sampler {sampler!r} takes no options; got {key!r}")
                choose(key, self.options, f"option for sampler {sampler!r}")
            default = self.options[key]
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, (int, float)) or default is None:  # None: a number chosen by the sampler
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                    not isinstance(default, int) or isinstance(default, float) or float(value).is_integer())
            else:
                ok = isinstance(value, type(default))
            if not ok:
                want = "true or false" if isinstance(default, bool) else "a number" if not isinstance(default, str) else "a string"
                raise ValueError(f"option {key!r} of sampler {sampler!r} must be {want}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"option {key!r} of sampler {sampler!r} must be a finite number, got {value!r}")
        return options

    def nfe(self, steps: int, options: dict | None = None) -> int:
        """Network evaluations of `steps` grid steps ending at t = 0."""
        if self.adaptive:
            raise ValueError("an adaptive sampler's NFE is whatever its solver needs; it is known only after a run")
        return int(self.evaluations(int(steps), self.merged(options or {})))

    def draws_noise(self, options: dict | None = None) -> bool:
        return bool(self.stochastic(self.merged(options or {})))


def describe(*, nfe: Callable[[int, dict], int] | None = lambda steps, o: steps,
             stochastic: bool | Callable[[dict], bool] = False, budget: Callable[[int, dict], dict] | None = None,
             batch_invariant: bool = True):
    """Attach `About` to a sampler function as `fn.about` (its options are read off its signature)."""

    def wrap(fn):
        params = inspect.signature(fn).parameters.values()
        options = {p.name: p.default for p in params
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in COMMON_KEYWORDS}
        draws = stochastic if callable(stochastic) else (lambda o, value=bool(stochastic): value)
        fn.about = About(nfe, draws, options, budget, batch_invariant)
        return fn

    return wrap


@dataclass(frozen=True)
class Step:
    """Everything about one step t -> s (< t) of a path: alpha, sigma and their derivatives at both
    ends, the SDE (f, g^2) at t, half log-SNRs, and the posterior q(x_s | x_t, x0) and transition
    x_t | x_s variances."""

    t: float
    s: float
    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    d_alpha_t: float
    d_sigma_t: float
    d_alpha_s: float
    d_sigma_s: float
    f_t: float
    g2_t: float
    lambda_t: float  # log(alpha_t / sigma_t)
    lambda_s: float
    post_x0: float
    post_xt: float
    post_var: float
    trans_var: float  # sigma_{t|s}^2


def steps_of(path, ts: Tensor) -> list[Step]:
    """The `Step` table of a grid, computed in one vectorised pass."""
    ts = ts.to(torch.float64)
    with torch.no_grad():
        a, s = path.alpha(ts), path.sigma(ts)
        da, ds = path.d_alpha(ts), path.d_sigma(ts)
        f, g2 = path.drift_diffusion(ts)
        lam = 0.5 * path.log_snr(ts)
        t_, s_ = ts[:-1], ts[1:]
        post_x0, post_xt, post_var = path.posterior(t_, s_)
        trans_var = path.transition(t_, s_)[1]
    cols = [v.tolist() for v in (a, s, da, ds, f, g2, lam)]
    pair = [v.tolist() for v in (post_x0, post_xt, post_var, trans_var)]
    a, s, da, ds, f, g2, lam = cols
    return [
        Step(ts[i].item(), ts[i + 1].item(), a[i], s[i], a[i + 1], s[i + 1], da[i], ds[i], da[i + 1], ds[i + 1],
             f[i], g2[i], lam[i], lam[i + 1], *(p[i] for p in pair))
        for i in range(ts.numel() - 1)
    ]


def step_of(path, t: float, s: float) -> Step:
    """The `Step` from t to s, for using one kernel alone."""
    return steps_of(path, torch.tensor([float(t), float(s)], dtype=torch.float64))[0]


def check_grid(ts) -> Tensor:
    """A grid is a strictly decreasing 1-D sequence of at least two times in [0, 1], as float64."""
    ts = torch.as_tensor(ts, dtype=torch.float64).detach().cpu()
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"a time grid needs at least 2 times (start and end) in a 1-D sequence; got shape {tuple(ts.shape)}")
    check_finite(ts, "timesteps")
    if bool(((ts < 0) | (ts > 1)).any()):
        raise ValueError(f"timesteps must lie in [0, 1] (0 = data, 1 = noise); got {ts.tolist()}")
    if bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("timesteps must be strictly decreasing (from noise towards data), with no repeats")
    return ts


def start(denoiser, x: Tensor, ts) -> tuple[CountingDenoiser, Tensor]:
    """Validate the inputs of a sampler and wrap the denoiser to count its evaluations."""
    check_finite(x, "x (the starting sample)")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must have a batch dimension; got shape {tuple(x.shape)}")
    return CountingDenoiser(denoiser), check_grid(ts)


def times_for(x: Tensor, t: float) -> Tensor:
    """The (B,) time tensor handed to the denoiser."""
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def finish(x: Tensor, den: CountingDenoiser, ts: Tensor, return_info: bool):
    if return_info:
        return x, SampleInfo(nfe=den.nfe, steps=ts.numel() - 1, timesteps=ts)
    return x
