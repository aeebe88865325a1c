r"""Affine noising paths: one object for every Gaussian forward process.

Every Gaussian forward process in the notes is an *affine path*

    x_t = alpha(t) x0 + sigma(t) z,     z ~ N(0, I),     t in [0, 1],

with t = 0 the data and t = 1 the noise (the prior). DDPM / VP, sub-VP, VE (NCSN), the cosine
schedule and the flow-matching linear interpolant differ only in `alpha` and `sigma`.

The SDE view follows from the path (Song et al. 2021, "Score-based generative modeling through
SDEs", eqs. 11, 29-31; Kingma et al. 2021, appendix): the forward SDE
dx = f(t) x dt + g(t) dW has the marginals N(alpha x0, sigma^2 I) if and only if

    f(t)   = alpha'(t) / alpha(t),
    g(t)^2 = d sigma^2 / dt - 2 f(t) sigma(t)^2,

so no SDE is ever coded by hand. The log signal-to-noise ratio is log_snr = log(alpha^2 / sigma^2);
it decreases strictly from +inf (data) as t grows, which is what lets a time be recovered from it.

Between two times s < t the path is itself Gaussian: x_t | x_s ~ N(alpha_{t|s} x_s, sigma_{t|s}^2 I)
with alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2, and
Bayes gives the posterior (Ho et al. 2020, eq. 7, for any pair of times)

    q(x_s | x_t, x0) = N( (alpha_{t|s} sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x0,
                          (sigma_{t|s}^2 sigma_s^2 / sigma_t^2) I ).

Discrete-time DDPM with betas beta_1..beta_T is the path `DiscreteVP` on the grid t_i = i / T with
alpha_i^2 = prod_{j <= i} (1 - beta_j) (alpha-bar in the notes); between grid points log alpha is
linear in t (a piecewise-constant beta), so continuous samplers run on it unchanged and the
discrete ancestral sampler is exact on the grid.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import append_dims, batch_times, check_finite, check_same_shape, check_times
from ._random import randn

__all__ = ["AffinePath", "VP", "ConstantVP", "SubVP", "Cosine", "VE", "Linear", "DiscreteVP", "DiscreteVE"]


def _as_time(t) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


class AffinePath:
    """Base class: subclasses give closed-form `alpha`, `sigma`, `d_alpha`, `d_sigma`.

    `T` is the number of steps of a discrete-time path (None for a continuous one) and `t_min` the
    smallest positive time a model of this path is meant to be evaluated at (1e-3, or 1/T).
    """

    T: int | None = None
    t_min: float = 1e-3

    @property
    def discrete(self) -> bool:
        """Whether this is a discrete-time path: T steps on the grid t_i = i / T (a model of it is trained
        and evaluated on those times only)."""
        return self.T is not None

    # -- the four primitives ------------------------------------------------------------------
    def alpha(self, t) -> Tensor:
        raise NotImplementedError

    def sigma(self, t) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t) -> Tensor:
        raise NotImplementedError

    def d_sigma(self, t) -> Tensor:
        raise NotImplementedError

    def d_sigma2(self, t) -> Tensor:
        """d sigma^2 / dt. Subclasses override it where 2 sigma sigma' is 0 * inf at t = 0."""
        t = _as_time(t)
        return 2 * self.sigma(t) * self.d_sigma(t)

    # -- derived quantities -------------------------------------------------------------------
    def log_snr(self, t) -> Tensor:
        """log(alpha^2 / sigma^2): +inf at t = 0, strictly decreasing."""
        t = _as_time(t)
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def d_log_snr(self, t) -> Tensor:
        """d log_snr / dt = 2 (alpha'/alpha - sigma'/sigma) (negative)."""
        t = _as_time(t)
        return 2 * self.d_alpha(t) / self.alpha(t) - self.d_sigma2(t) / self.sigma(t) ** 2

    def drift_diffusion(self, t) -> tuple[Tensor, Tensor]:
        """The forward SDE dx = f x dt + g dW whose marginals are this path: returns (f, g^2)."""
        t = _as_time(t)
        f = self.d_alpha(t) / self.alpha(t)
        g2 = self.d_sigma2(t) - 2 * f * self.sigma(t) ** 2
        return f, g2

    def transition(self, t, s) -> tuple[Tensor, Tensor]:
        """x_t | x_s for s < t: returns (alpha_{t|s}, sigma_{t|s}^2)."""
        t, s = _as_time(t), _as_time(s)
        a_ts = self.alpha(t) / self.alpha(s)
        var_ts = self.sigma(t) ** 2 - a_ts**2 * self.sigma(s) ** 2
        return a_ts, var_ts.clamp_min(0)

    def posterior(self, t, s) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_s | x_t, x0) for s < t: returns (coef_x0, coef_xt, variance) of the Gaussian posterior."""
        t, s = _as_time(t), _as_time(s)
        a_ts, var_ts = self.transition(t, s)
        sig_t2, sig_s2 = self.sigma(t) ** 2, self.sigma(s) ** 2
        coef_x0 = self.alpha(s) * var_ts / sig_t2
        coef_xt = a_ts * sig_s2 / sig_t2
        return coef_x0, coef_xt, var_ts * sig_s2 / sig_t2

    def t_from_log_snr(self, log_snr, *, iters: int = 64) -> Tensor:
        """The time with the given log-SNR (bisection on the strictly decreasing log_snr, float64)."""
        lam = torch.as_tensor(log_snr, dtype=torch.float64)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam  # still too early: the answer is later
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (lo + hi) / 2

    # -- using the path -----------------------------------------------------------------------
    def perturb(self, x0: Tensor, t, z: Tensor) -> Tensor:
        """x_t = alpha(t) x0 + sigma(t) z, with `t` a scalar or one time per example."""
        check_same_shape(x0, z, "x0", "z")
        t = check_times(batch_times(t, x0))
        a = append_dims(self.alpha(t), x0.ndim).to(x0.dtype)
        s = append_dims(self.sigma(t), x0.ndim).to(x0.dtype)
        return a * x0 + s * z

    def prior_sample(self, shape, generator: torch.Generator | None = None, *, device=None, dtype=None) -> Tensor:
        """A draw from the prior N(0, sigma(1)^2 I) that sampling starts from at t = 1."""
        dtype = dtype or torch.get_default_dtype()
        return float(self.sigma(torch.tensor(1.0, dtype=torch.float64))) * randn(
            shape, generator=generator, device=device, dtype=dtype
        )

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, sigma(1)^2 I), summed over all but the batch dimension (nats per example)."""
        check_finite(x, "x")
        s2 = float(self.sigma(torch.tensor(1.0, dtype=torch.float64))) ** 2
        d = x[0].numel()
        return -0.5 * (x.flatten(1) ** 2).sum(1) / s2 - 0.5 * d * math.log(2 * math.pi * s2)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class VP(AffinePath):
    r"""Variance preserving (DDPM's continuous limit): beta(t) = beta_min + t (beta_max - beta_min),

    alpha(t) = exp(-B(t) / 2),  sigma(t)^2 = 1 - alpha(t)^2,  B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2,
    so f = -beta/2 and g^2 = beta (Song et al. 2021, eq. 11). The defaults match DDPM's linear
    schedule 1e-4 .. 0.02 over T = 1000 steps (beta_i ~ beta(t_i) / T).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 <= beta_min <= beta_max) or beta_max <= 0:
            raise ValueError(f"need 0 <= beta_min <= beta_max and beta_max > 0; got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t) -> Tensor:
        return self.beta_min + _as_time(t) * (self.beta_max - self.beta_min)

    def _B(self, t) -> Tensor:
        t = _as_time(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def alpha(self, t):
        return torch.exp(-0.5 * self._B(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(-self._B(t)))

    def d_alpha(self, t):
        return -0.5 * self.beta(t) * self.alpha(t)

    def d_sigma2(self, t):
        return self.beta(t) * self.alpha(t) ** 2

    def d_sigma(self, t):
        return self.d_sigma2(t) / (2 * self.sigma(t))

    def log_snr(self, t):
        B = self._B(t)
        return -B - torch.log(-torch.expm1(-B))


class ConstantVP(VP):
    """VP with a constant beta(t) = beta: alpha(t) = exp(-beta t / 2)."""

    def __init__(self, beta: float = 10.0):
        super().__init__(beta, beta)

    def __repr__(self) -> str:
        return f"ConstantVP(beta={self.beta_min!r})"


class SubVP(VP):
    r"""Sub-VP (Song et al. 2021, eq. 12): the VP alpha with sigma(t) = 1 - alpha(t)^2.

    Its variance stays below VP's at every t; g^2 = beta(t) (1 - alpha(t)^4).
    """

    def sigma(self, t):
        return -torch.expm1(-self._B(t))

    def d_sigma(self, t):
        return self.beta(t) * self.alpha(t) ** 2

    def d_sigma2(self, t):
        return 2 * self.sigma(t) * self.d_sigma(t)

    def log_snr(self, t):
        return AffinePath.log_snr(self, t)


class Cosine(AffinePath):
    r"""Cosine schedule (Nichol & Dhariwal 2021, eq. 17) in continuous time:

    alpha(t) = cos(phi(t)) / cos(phi(0)),  phi(t) = (t + s) / (1 + s) * pi / 2,  sigma^2 = 1 - alpha^2.

    alpha(1) = 0 exactly, so the prior is N(0, I) with no leftover signal, and the SDE's drift is
    infinite at t = 1 (stochastic samplers must start just below 1). The 0.999 clip of the paper
    acts on the discrete betas: `DiscreteVP.cosine(T)` applies it.
    """

    def __init__(self, s: float = 0.008):
        if s < 0:
            raise ValueError(f"Cosine offset s must be >= 0, got {s}")
        self.s = float(s)

    # cos(phi(t)) is written sin(pi/2 - phi(t)) = sin((1 - t) / (1 + s) * pi / 2) so that alpha(1) is exactly 0.
    def _psi(self, t):
        return (1 - _as_time(t)) / (1 + self.s) * (math.pi / 2)

    @property
    def _norm(self) -> float:
        return math.sin(math.pi / 2 / (1 + self.s))

    def alpha(self, t):
        return torch.sin(self._psi(t)) / self._norm

    def sigma(self, t):
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))

    def d_alpha(self, t):
        return -torch.cos(self._psi(t)) * (math.pi / 2) / (1 + self.s) / self._norm

    def d_sigma2(self, t):
        return -2 * self.alpha(t) * self.d_alpha(t)

    def d_sigma(self, t):
        return self.d_sigma2(t) / (2 * self.sigma(t))


class VE(AffinePath):
    r"""Variance exploding (NCSN / SMLD as an SDE): alpha = 1 and geometric noise,

    sigma(t)^2 = sigma_min^2 (r^{2t} - 1),   r = sigma_max / sigma_min,

    the exact marginal of dx = g dW with g(t) = sigma_min r^t sqrt(2 log r) started at the data
    (Song et al. 2021, eq. 30): it is the notes' g(t) = sigma^t family, sigma^2(t) = int_0^t g^2.
    sigma(0) = 0 (t = 0 is clean data) and sigma(1) = sqrt(sigma_max^2 - sigma_min^2).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    @property
    def _log_r(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return torch.ones_like(_as_time(t))

    def sigma(self, t):
        return self.sigma_min * torch.sqrt(torch.expm1(2 * self._log_r * _as_time(t)))

    def d_alpha(self, t):
        return torch.zeros_like(_as_time(t))

    def d_sigma2(self, t):
        return 2 * self._log_r * self.sigma_min**2 * torch.exp(2 * self._log_r * _as_time(t))

    def d_sigma(self, t):
        return self.d_sigma2(t) / (2 * self.sigma(t))


class DiscreteVE(AffinePath):
    r"""NCSN's ladder of noise levels (Song & Ermon 2019) as a path: alpha = 1 and, on the grid t_i = i / L,

        sigma(t_i) = sigma_i,   sigma_1 < ... < sigma_L   (here increasing with t; the paper numbers them
                                                           from the largest),

    log sigma linear between levels and sigma linear from 0 at t = 0 to sigma_1 at t = 1/L (so t = 0
    is clean data). `geometric(L, sigma_min, sigma_max)` gives the paper's geometric ladder. Trained
    with the `sigma2` weighting on uniformly drawn levels, a score model's loss is Song & Ermon's
    weighted sum of Fisher divergences (lambda_i = sigma_i^2); `annealed_langevin` with `steps = L`
    on the default (trailing) grid visits exactly the levels, largest first.
    """

    def __init__(self, sigmas):
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if sigmas.numel() < 1 or not bool(torch.isfinite(sigmas).all()) or bool((sigmas <= 0).any()):
            raise ValueError("DiscreteVE needs at least one noise level, all finite and > 0")
        if bool((sigmas[1:] <= sigmas[:-1]).any()):
            raise ValueError("noise levels must be strictly increasing (sigma_1 < ... < sigma_L, t_i = i / L)")
        self.sigmas = sigmas
        self.T = sigmas.numel()
        self.t_min = 1.0 / self.T
        self._log_sigmas = torch.log(sigmas)

    @classmethod
    def geometric(cls, L: int = 10, sigma_min: float = 0.01, sigma_max: float = 1.0) -> "DiscreteVE":
        """L levels in geometric progression from sigma_min to sigma_max."""
        _check_T(L)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        return cls(torch.logspace(math.log10(sigma_min), math.log10(sigma_max), int(L), dtype=torch.float64)
                   if L > 1 else [sigma_max])

    def _locate(self, t):
        t = _as_time(t)
        u = t.to(torch.float64) * self.T
        ls = self._log_sigmas.to(t.device)
        i = torch.floor(u).clamp(1, max(self.T - 1, 1)).long()  # between levels i and i + 1 (1-based)
        lo = ls[(i - 1).clamp(max=self.T - 1)]
        slope = (ls[i.clamp(max=self.T - 1)] - lo) if self.T > 1 else torch.zeros_like(lo)
        return t, u, i, lo, slope

    def alpha(self, t):
        return torch.ones_like(_as_time(t))

    def d_alpha(self, t):
        return torch.zeros_like(_as_time(t))

    def sigma(self, t):
        t, u, i, lo, slope = self._locate(t)
        first = float(self.sigmas[0]) * u  # the ramp from 0 to sigma_1
        return torch.where(u <= 1, first, torch.exp(lo + (u - i) * slope)).to(t.dtype)

    def d_sigma(self, t):
        t, u, i, lo, slope = self._locate(t)
        ramp = torch.full_like(u, float(self.sigmas[0]) * self.T)
        return torch.where(u <= 1, ramp, torch.exp(lo + (u - i) * slope) * slope * self.T).to(t.dtype)

    def __repr__(self) -> str:
        return f"DiscreteVE(L={self.T}, sigma_1={float(self.sigmas[0]):.3g}, sigma_L={float(self.sigmas[-1]):.3g})"


class Linear(AffinePath):
    """The flow-matching linear interpolant (rectified flow): alpha = 1 - t, sigma = sigma_min + (1 - sigma_min) t.

    With sigma_min = 0 (the default) it is x_t = (1 - t) x0 + t z. Lipman et al.'s (2023) optimal-
    transport path keeps a tube of width sigma_min around the data, x = (1 - t) x0 + sigma_min z at t = 0.
    """

    def __init__(self, sigma_min: float = 0.0):
        if not 0 <= sigma_min < 1:
            raise ValueError(f"Linear sigma_min must be in [0, 1), got {sigma_min}")
        self.sigma_min = float(sigma_min)

    def alpha(self, t):
        return 1 - _as_time(t)

    def sigma(self, t):
        return self.sigma_min + (1 - self.sigma_min) * _as_time(t)

    def d_alpha(self, t):
        return -torch.ones_like(_as_time(t))

    def d_sigma(self, t):
        return torch.full_like(_as_time(t), 1 - self.sigma_min)

    def d_sigma2(self, t):
        return 2 * (1 - self.sigma_min) * self.sigma(t)

    def __repr__(self) -> str:
        return f"Linear(sigma_min={self.sigma_min})" if self.sigma_min else "Linear()"


class DiscreteVP(AffinePath):
    r"""The DDPM chain q(x_i | x_{i-1}) = N(sqrt(1 - beta_i) x_{i-1}, beta_i I), i = 1..T, on t_i = i / T.

    alpha(t_i)^2 = alpha-bar_i = prod_{j <= i} (1 - beta_j). Between grid points log alpha is linear
    in t. The one-step posterior q(x_{i-1} | x_i, x0) = N(c0_i x0 + ct_i x_i, beta-tilde_i I) has

        c0_i = beta_i sqrt(abar_{i-1}) / (1 - abar_i),   ct_i = sqrt(1 - beta_i) (1 - abar_{i-1}) / (1 - abar_i),
        beta-tilde_i = beta_i (1 - abar_{i-1}) / (1 - abar_i)            (Ho et al. 2020, eqs. 6-7),

    exposed as `posterior_mean_coef_x0`, `posterior_mean_coef_xt`, `beta_tilde` (index i - 1 for step i).
    A diffusers timestep k (0-based) is the time t = (k + 1) / T here.
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise ValueError("DiscreteVP needs at least one beta")
        if not bool(torch.isfinite(betas).all()) or bool(((betas <= 0) | (betas >= 1)).any()):
            raise ValueError("every beta must lie in the open interval (0, 1)")
        self.betas = betas
        self.T = betas.numel()
        self.t_min = 1.0 / self.T
        log_alpha = 0.5 * torch.cumsum(torch.log1p(-betas), 0)
        self._log_alpha = torch.cat([torch.zeros(1, dtype=torch.float64), log_alpha])  # index i <-> t_i
        self.alphas_cumprod = torch.exp(2 * log_alpha)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.beta_tilde = betas * (1 - abar_prev) / (1 - self.alphas_cumprod)
        self.posterior_mean_coef_x0 = betas * abar_prev.sqrt() / (1 - self.alphas_cumprod)
        self.posterior_mean_coef_xt = (1 - betas).sqrt() * (1 - abar_prev) / (1 - self.alphas_cumprod)

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "DiscreteVP":
        """Ho et al.'s linear schedule."""
        _check_T(T)
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "DiscreteVP":
        """Nichol & Dhariwal's cosine schedule: beta_i = min(1 - abar(i/T) / abar((i-1)/T), max_beta)."""
        _check_T(T)
        path = Cosine(s)
        t = torch.arange(T + 1, dtype=torch.float64) / T
        abar = path.alpha(t) ** 2
        return cls((1 - abar[1:] / abar[:-1]).clamp(max=max_beta))

    @classmethod
    def constant(cls, T: int = 1000, beta: float = 0.01) -> "DiscreteVP":
        _check_T(T)
        return cls(torch.full((T,), float(beta), dtype=torch.float64))

    def _locate(self, t):
        t = _as_time(t)
        u = t.to(torch.float64) * self.T
        i = torch.floor(u).clamp(0, self.T - 1)
        frac = u - i
        la = self._log_alpha.to(t.device)
        i = i.long()
        return t, la[i], la[i + 1] - la[i], frac

    def alpha(self, t):
        t, la0, dla, frac = self._locate(t)
        return torch.exp(la0 + frac * dla).to(t.dtype)

    def sigma(self, t):
        t, la0, dla, frac = self._locate(t)
        return torch.sqrt(-torch.expm1(2 * (la0 + frac * dla))).to(t.dtype)

    def d_alpha(self, t):
        t, la0, dla, frac = self._locate(t)
        return (torch.exp(la0 + frac * dla) * dla * self.T).to(t.dtype)

    def d_sigma2(self, t):
        return -2 * self.alpha(t) * self.d_alpha(t)

    def d_sigma(self, t):
        return self.d_sigma2(t) / (2 * self.sigma(t))

    def t_from_log_snr(self, log_snr, *, iters: int = 64) -> Tensor:
        """Exact and without bisection: log alpha = logsigmoid(log_snr) / 2 is linear in t between
        grid points, so find the segment and solve in it (times outside [0, 1] are clamped)."""
        lam = torch.as_tensor(log_snr, dtype=torch.float64)
        la = 0.5 * torch.nn.functional.logsigmoid(lam.reshape(-1))
        table = self._log_alpha.to(lam.device)  # decreasing from 0 at t = 0
        i = (torch.searchsorted(-table, -la) - 1).clamp(0, self.T - 1)
        frac = ((la - table[i]) / (table[i + 1] - table[i])).clamp(0, 1)
        return ((i + frac) / self.T).reshape(lam.shape)

    def __repr__(self) -> str:
        return f"DiscreteVP(T={self.T}, beta_1={float(self.betas[0]):.3g}, beta_T={float(self.betas[-1]):.3g})"


def _check_T(T: int) -> None:
    if int(T) != T or T < 1:
        raise ValueError(f"T (the number of diffusion steps) must be a positive integer, got {T!r}")
