r"""Few-step generation: progressive distillation, consistency models and rectified-flow reflow, each an objective for
the one training loop (`training.fit`); their few-step samplers are `samplers.ddim` and `samplers.consistency`.

**Progressive distillation** (Salimans & Ho 2022, Algorithm 2 and eq. 8). A student of the teacher's architecture,
started from its weights, learns two DDIM steps of the teacher in one. For a student grid of K steps, t = k / K,
t' = t - 1 / (2K), t'' = t - 1 / K (snapped to a discrete path's own steps), the teacher's two DDIM steps

    x_{t'}  = alpha_{t'} D(x_t, t) + (sigma_{t'} / sigma_t) (x_t - alpha_t D(x_t, t)),
    x_{t''} = alpha_{t''} D(x_{t'}, t') + (sigma_{t''} / sigma_{t'}) (x_{t'} - alpha_{t'} D(x_{t'}, t')),

give the x0 that makes one DDIM step t -> t'' land on x_{t''}:

    x~ = (x_{t''} - (sigma_{t''} / sigma_t) x_t) / (alpha_{t''} - (sigma_{t''} / sigma_t) alpha_t),

and the student regresses it with the truncated-SNR weight max(alpha_t^2 / sigma_t^2, 1) on the x0 error. Halving K
round by round (64 -> 32 -> ... -> 1), each round's student is the next round's teacher.

**Consistency models** (Song, Dhariwal, Chen & Sutskever 2023; Song & Dhariwal 2023). A consistency function maps
every point of a probability-flow trajectory to its start, with f(x, t_min) = x / alpha(t_min). Here it is built
from a network's denoiser D_theta (any prediction kind) by the boundary parameterisation

    f(x, t) = c(t) x / alpha_t + (1 - c(t)) D_theta(x, t),   c(t) = sigma_data^2 / ((s_t - s_min)^2 + sigma_data^2),

s_t = sigma_t / alpha_t the noise level (EDM's c_skip, c_out = 1 - c_skip with D in place of F). On a grid
1 = t_0 > ... > t_{N-1} = t_min > 0, for adjacent t_n > t_{n+1} (n uniform, or lognormal in the noise level
with a curriculum for training),

    loss = w_n d(f_theta(x_{t_n}, t_n), f_target(x^_{t_{n+1}}, t_{n+1})),

with x_{t_n} = alpha x + sigma z and x^_{t_{n+1}} one DDIM (first-order probability-flow) step of the teacher
(consistency distillation) or the same z at t_{n+1} (consistency training, no teacher). The target network is an
exponential moving average of the student with rate `mu` (0: the student with stopped gradients, as improved
consistency training uses), held inside the model (`ConsistencyModel`) so that a resumed run continues exactly;
d is the squared error or the pseudo-Huber distance sqrt(|a - b|^2 + c^2) - c, c = 0.00054 sqrt(d). Consistency
training (Song & Dhariwal 2023) grows N from `start` to `end` (doubling over the run: its curriculum), draws n with
p(n) proportional to erf((ln s_{n} - P_mean) / (sqrt 2 P_std)) - erf((ln s_{n+1} - P_mean) / (sqrt 2 P_std)) and
weighs the loss by 1 / (s_n - s_{n+1}).

**Reflow** (Liu, Gong & Liu 2023, rectified flow): the teacher's probability-flow ODE pairs noise z with an end
x0 = Phi(z) (`reflow_pairs`); a flow on the linear path x_t = (1 - t) x0 + t z trained on those pairs (the batch's
"noise": `objectives.DiffusionObjective`) straightens the paths, so few Euler steps suffice; its path energy (the
mean kinetic energy of the trajectories, `metrics.path_energy`) falls towards the squared distance of the pairs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from ._checks import append_dims, choose
from ._random import rand, randn
from .denoisers import as_denoiser
from .objectives import model_inputs

__all__ = ["two_step_target", "ProgressiveObjective", "student_times", "ConsistencyModel", "ConsistencyDenoiser",
           "ConsistencyObjective", "consistency_grid", "pseudo_huber", "reflow_pairs", "DISTANCES"]

DISTANCES = ("pseudo_huber", "l2")


def _ab(path, t: Tensor, x: Tensor):
    t = t.to(torch.float64)
    return (append_dims(path.alpha(t), x.ndim).to(x.dtype), append_dims(path.sigma(t), x.ndim).to(x.dtype))


def _ddim(path, x: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """One deterministic DDIM step t -> s (per example) given x0_hat."""
    a_t, s_t = _ab(path, t, x)
    a_s, s_s = _ab(path, s, x)
    return a_s * x0 + (s_s / s_t) * (x - a_t * x0)


@torch.no_grad()
def two_step_target(teacher, path, x_t: Tensor, t: Tensor, t_mid: Tensor, t_next: Tensor, **cond) -> Tensor:
    """The x0 whose one DDIM step t -> t_next lands where the teacher's two DDIM steps t -> t_mid -> t_next do
    (module doc; Salimans & Ho eq. 8)."""
    x_mid = _ddim(path, x_t, teacher(x_t, t, **cond), t, t_mid)
    x_next = _ddim(path, x_mid, teacher(x_mid, t_mid, **cond), t_mid, t_next)
    a_t, s_t = _ab(path, t, x_t)
    a_n, s_n = _ab(path, t_next, x_t)
    return (x_next - (s_n / s_t) * x_t) / (a_n - (s_n / s_t) * a_t)


def student_times(path, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """(t, t', t'') of every step of a K-step student grid: t = k / K, the teacher's midpoint and the student's next
    time, on a discrete path's own steps i / T (which must allow 2K steps)."""
    k = torch.arange(1, steps + 1, dtype=torch.float64)
    t, mid, nxt = k / steps, (k - 0.5) / steps, (k - 1) / steps
    if path.discrete:
        if 2 * steps > path.T:
            raise ValueError(f"a student of {steps} steps needs a teacher of {2 * steps}; this path has only T = {path.T}")
        t, mid, nxt = (torch.round(v * path.T) / path.T for v in (t, mid, nxt))
    return t, mid, nxt


class ProgressiveObjective:
    """Progressive distillation of `teacher` (a denoiser) into a student of `steps` steps (module doc); the student
    network predicts `prediction` on `path`, and is conditioned on the batch's `conditions`."""

    def __init__(self, teacher, path, steps: int, *, prediction: str = "eps", conditions: tuple[str, ...] = ()):
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"the student's steps must be an integer >= 1, got {steps!r}")
        self.teacher, self.path, self.steps, self.prediction = teacher, path, int(steps), prediction
        self.conditions = tuple(conditions)
        self.times = student_times(path, self.steps)

    def __call__(self, model, batch: Mapping[str, Tensor], generator=None) -> Tensor:
        x0 = batch["x"]
        cond = model_inputs(batch, self.conditions)
        k = torch.floor(rand((x0.shape[0],), generator=generator, dtype=torch.float64) * self.steps).long().clamp_max(self.steps - 1)
        t, mid, nxt = (v[k].to(x0.device) for v in self.times)
        z = randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = self.path.perturb(x0, t, z)
        target = two_step_target(self.teacher, self.path, x_t, t, mid, nxt, **cond)
        x0_hat = as_denoiser(model, self.path, self.prediction)(x_t, t.to(x0.dtype), **cond)
        a, s = _ab(self.path, t, x0)
        weight = torch.clamp(a**2 / s**2, min=1.0).flatten()  # truncated SNR (Salimans & Ho)
        return weight * (x0_hat - target).float().flatten(1).square().mean(1)

    def __repr__(self) -> str:
        return f"ProgressiveObjective({self.path!r}, {2 * self.steps} -> {self.steps} steps, prediction={self.prediction!r})"


# -- consistency models ------------------------------------------------------------------------

def consistency_grid(path, steps: int) -> Tensor:
    """The N times 1 = t_0 > ... > t_{N-1} = t_min > 0 of a consistency model: karras in the noise level, or N of a
    discrete path's own steps from 1 to 1 / T, evenly. t_min is the same for every N (the curriculum changes N)."""
    from .samplers.grids import karras

    if path.discrete:
        if not 2 <= steps <= path.T:
            raise ValueError(f"a consistency grid on a path of T = {path.T} steps takes 2 to {path.T} times, got {steps}")
        return torch.round(torch.linspace(path.T, 1, steps, dtype=torch.float64)) / path.T
    return karras(path, steps)[:-1]


def pseudo_huber(a: Tensor, b: Tensor) -> Tensor:
    """sqrt(|a - b|^2 + c^2) - c per example, c = 0.00054 sqrt(d) (Song & Dhariwal 2023)."""
    d = a[0].numel()
    c = 0.00054 * math.sqrt(d)
    return torch.sqrt((a - b).float().flatten(1).square().sum(1) + c**2) - c


def _noise_level(path, t: Tensor) -> Tensor:
    t = t.to(torch.float64)
    return path.sigma(t) / path.alpha(t)


class ConsistencyDenoiser:
    """The consistency function f(x, t) of a network's denoiser, as a denoiser (module doc): what
    `samplers.consistency` samples with, and any sampler can use."""

    def __init__(self, denoiser, path, t_min: float, sigma_data: float = 0.5):
        self.denoiser, self.path, self.sigma_data = denoiser, path, float(sigma_data)
        self.t_min = float(t_min)
        self.s_min = float(_noise_level(path, torch.tensor(self.t_min)))

    def skip(self, t: Tensor) -> Tensor:
        s = _noise_level(self.path, t)
        return self.sigma_data**2 / ((s - self.s_min) ** 2 + self.sigma_data**2)

    def __call__(self, x: Tensor, t, **cond) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        c = append_dims(self.skip(t), x.ndim).to(x.dtype)
        a, _ = _ab(self.path, t, x)
        return c * x / a + (1 - c) * self.denoiser(x, t, **cond)


class ConsistencyModel(torch.nn.Module):
    """A consistency model's networks: `online` (trained), `target` (the moving average the loss aims at, no
    gradients) and `count` (the steps taken: consistency training's curriculum), all saved with the checkpoint.
    Called like its online network."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.online = net
        self.target = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x, t, **cond):
        return self.online(x, t, **cond)


class ConsistencyObjective:
    """Consistency distillation (with a `teacher` denoiser) or training (without) of a `ConsistencyModel` whose online
    network predicts `prediction` on `path` (module doc). `steps`: N of the grid, or (training) its curriculum
    `(start, end, total_steps)`; `mu`: the target's moving-average rate; `distance`: "pseudo_huber" or "l2"."""

    def __init__(self, path, *, prediction: str = "eps", teacher=None, steps=18, mu: float = 0.95,
                 distance: str = "pseudo_huber", sigma_data: float = 0.5, conditions: tuple[str, ...] = (),
                 p_mean: float = -1.1, p_std: float = 2.0):
        self.path, self.prediction, self.teacher = path, prediction, teacher
        self.curriculum = tuple(steps) if isinstance(steps, (tuple, list)) else None
        self.steps = None if self.curriculum else int(steps)
        if self.steps is not None and self.steps < 2:
            raise ValueError(f"a consistency model's grid needs at least 2 times, got {steps}")
        if not 0 <= mu < 1:
            raise ValueError(f"the target's moving-average rate mu must lie in [0, 1), got {mu}")
        self.mu, self.distance = float(mu), choose(distance, DISTANCES, "consistency distance")
        self.sigma_data, self.conditions = float(sigma_data), tuple(conditions)
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self._grids: dict[int, Tensor] = {}

    def grid_size(self, count: int) -> int:
        """N at training step `count`: fixed, or the curriculum N(k) = min(start 2^floor(k / K'), end) + 1 with
        K' = total / (log2(end / start) + 1) (Song & Dhariwal 2023)."""
        if self.curriculum is None:
            return self.steps
        start, end, total = self.curriculum
        stage = max(1, int(total / (math.log2(end / start) + 1)))
        return min(int(start * 2 ** (count // stage)), int(end)) + 1

    def _grid(self, n: int) -> Tensor:
        n = min(n, self.path.T) if self.path.discrete else n  # a discrete path has T times to offer
        if n not in self._grids:
            self._grids[n] = consistency_grid(self.path, n)
        return self._grids[n]

    def function(self, net, t_min: float):
        return ConsistencyDenoiser(as_denoiser(net, self.path, self.prediction), self.path, t_min, self.sigma_data)

    def _pairs(self, ts: Tensor, size: int, generator) -> tuple[Tensor, Tensor, Tensor]:
        """(index n, t_n, t_{n+1}) of `size` adjacent pairs; uniform in n, or lognormal in the noise level."""
        if self.teacher is not None or self.curriculum is None:
            n = torch.floor(rand((size,), generator=generator, dtype=torch.float64) * (len(ts) - 1)).long().clamp_max(len(ts) - 2)
        else:
            levels = torch.log(_noise_level(self.path, ts))  # decreasing
            cdf = torch.special.erf((levels - self.p_mean) / (math.sqrt(2) * self.p_std))
            p = (cdf[:-1] - cdf[1:]).clamp_min(0)
            n = torch.multinomial(p / p.sum(), size, replacement=True, generator=generator)
        return n, ts[n], ts[n + 1]

    def __call__(self, model, batch: Mapping[str, Tensor], generator=None) -> Tensor:
        model = getattr(model, "module", model)  # under DistributedDataParallel
        if not isinstance(model, ConsistencyModel):
            raise ValueError("a consistency objective trains a ConsistencyModel (its online and target networks)")
        x0 = batch["x"]
        cond = model_inputs(batch, self.conditions)
        with torch.no_grad():  # the target follows the student (mu = 0: the student itself)
            for p_t, p in zip(model.target.parameters(), model.online.parameters()):
                p_t.lerp_(p, 1 - self.mu)
            model.count += 1
        ts = self._grid(self.grid_size(int(model.count) - 1))
        n, t, s = self._pairs(ts, x0.shape[0], generator)
        t, s = t.to(x0.device), s.to(x0.device)
        z = randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = self.path.perturb(x0, t, z)
        with torch.no_grad():
            if self.teacher is not None:  # one DDIM step of the teacher: consistency distillation
                x_s = _ddim(self.path, x_t, self.teacher(x_t, t.to(x0.dtype), **cond), t, s)
            else:  # the same noise one step nearer the data: consistency training
                x_s = self.path.perturb(x0, s, z)
            target = self.function(model.target, float(ts[-1]))(x_s, s.to(x0.dtype), **cond)
        out = self.function(model.online, float(ts[-1]))(x_t, t.to(x0.dtype), **cond)
        if self.distance == "l2":
            loss = (out - target).float().flatten(1).square().mean(1)
        else:
            loss = pseudo_huber(out, target)
        if self.teacher is None and self.curriculum is not None:  # 1 / (s_n - s_{n+1}) (Song & Dhariwal 2023)
            gap = (_noise_level(self.path, t) - _noise_level(self.path, s)).clamp_min(1e-8)
            loss = loss / gap.to(loss)
        return loss

    def __repr__(self) -> str:
        how = "distillation" if self.teacher is not None else "training"
        grid = f"N = {self.steps}" if self.curriculum is None else f"N from {self.curriculum[0]} to {self.curriculum[1]}"
        return f"ConsistencyObjective({how}, {self.path!r}, {grid}, mu={self.mu}, {self.distance})"


# -- reflow ------------------------------------------------------------------------------------------

@torch.no_grad()
def reflow_pairs(denoiser, path, n: int, shape, *, seed: int = 0, batch_size: int = 500, device=None, progress: bool = False,
                 cond: dict | None = None, **settings) -> tuple[Tensor, Tensor]:
    """(x0, z): n draws z of the prior and where the teacher's ODE (`settings`: a deterministic sampler, its steps,
    grid) takes them, example i from its own generator (`sampling.sample_batched`); `cond` one row per example."""
    from .sampling import about, prior_noise, sample_batched

    if about(settings.get("sampler", "ddim")).draws_noise({k: v for k, v in settings.items()
                                                           if k in about(settings.get("sampler", "ddim")).options}):
        raise ValueError(f"reflow pairs noise with the end of the teacher's ODE: {settings.get('sampler')} draws noise as it "
                         "goes; use a deterministic sampler (ddim, dpmpp_2m, unipc, ode_heun, ...)")
    z = prior_noise(path, n, shape, seed)
    x0 = sample_batched(denoiser, path, n, shape, x=z, seed=seed, batch_size=batch_size, device=device, progress=progress,
                        cond=cond, **settings)
    sigma1 = float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    return x0, z / sigma1
