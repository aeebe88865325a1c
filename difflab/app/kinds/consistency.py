"""kind = "consistency": a consistency model (Song et al. 2023): consistency distillation from a teacher run
(requires.teacher, any run holding a diffusion model; started from its weights), or consistency training from the
data alone (no teacher: Song & Dhariwal 2023's curriculum, lognormal noise levels, pseudo-Huber distance;
`distillation.ConsistencyObjective`). Its network is a `distillation.ConsistencyModel` (the online network and the
moving-average target, both in the checkpoint); `dl.load` gives its consistency function as the denoiser, sampled by
default with `samplers.consistency` in its [consistency] sample_steps (1: one network call). Its section is
[consistency]. `difflab distill TEACHER --method consistency --steps K --out OUT`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..._checks import choose
from ..build import build_model, build_path
from ..schema import within
from .diffusion import _conditions
from .progressive import Student


@dataclass
class ConsistencyConfig:
    """A consistency model (kind = "consistency"): distilled from requires.teacher, or trained from data."""

    steps: int = 18  # N of the grid (distillation); training grows it from `start` to `end` over `curriculum` steps
    start: int = 10
    end: int = 1280
    curriculum: int = 0  # training steps over which N doubles from start to end (0: train.steps)
    mu: float = -1.0  # the target's moving-average rate; < 0: 0.95 distilling (Song et al.), 0 training (Song & Dhariwal)
    distance: str = "pseudo_huber"  # pseudo_huber | l2
    sigma_data: float = 0.5  # the boundary parameterisation's data scale (EDM)

    def __post_init__(self):
        from ...distillation import DISTANCES

        within(self, "steps", 2, 100_000)
        within(self, "start", 1, 100_000)
        within(self, "end", 1, 100_000)
        within(self, "curriculum", 0, 10**9)
        if self.start > self.end:
            raise ValueError(f"consistency.start ({self.start}) must not exceed consistency.end ({self.end})")
        if not (self.mu < 1 and math.isfinite(self.mu)):
            raise ValueError(f"consistency.mu (the target's moving-average rate) must be < 1, got {self.mu}")
        choose(self.distance, DISTANCES, "consistency.distance")
        if not (0 < self.sigma_data < math.inf):
            raise ValueError(f"consistency.sigma_data must be > 0, got {self.sigma_data}")


class Consistency(Student):
    name = "consistency"
    about = "a consistency model: the start of its probability-flow trajectory from any point, in one network call"
    sections = {"consistency": ConsistencyConfig}
    requires = {}
    optional = {"teacher": "diffusion_model", "autoencoder": "autoencoder"}

    def network(self, cfg, facts: dict):
        from ...distillation import ConsistencyModel

        low_res = (facts.get("low_res") or {}).get("shape")
        return ConsistencyModel(build_model(cfg.model, tuple(facts["shape"]), facts.get("num_classes"),
                                            (facts.get("captions") or {}).get("dim"), low_res[0] if low_res else 0))

    def objective(self, cfg, data, requires=None):
        from ...distillation import ConsistencyObjective

        c = cfg.consistency
        teacher = self.teacher_denoiser(cfg, requires)[0] if "teacher" in (requires or {}) else None
        steps = c.steps if teacher is not None else (c.start, c.end, c.curriculum or cfg.train.steps)
        mu = c.mu if c.mu >= 0 else (0.95 if teacher is not None else 0.0)
        return ConsistencyObjective(build_path(cfg.diffusion), prediction=cfg.diffusion.prediction, teacher=teacher,
                                    steps=steps, mu=mu, distance=c.distance, sigma_data=c.sigma_data,
                                    conditions=_conditions(cfg))

    def initialize(self, model, cfg, requires: dict) -> None:
        if "teacher" in requires:  # distillation starts from the teacher; training from scratch
            super().initialize(model, cfg, requires)
        else:
            model.target.load_state_dict(model.online.state_dict())

    def t_min(self, cfg) -> float:
        """The boundary time: the consistency grid's last time (the same for every grid size)."""
        from ...distillation import consistency_grid

        return float(consistency_grid(build_path(cfg.diffusion), 2)[-1])

    def raw_denoiser(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        """The consistency function f(x, t) as the denoiser (clipped to the data's range for images)."""
        from ...denoisers import clipped
        from ...distillation import ConsistencyDenoiser

        den, path = super().raw_denoiser(run, ema=ema, device=device, clip=False)
        den = ConsistencyDenoiser(den, path, self.t_min(run.config), run.config.consistency.sigma_data)
        return (clipped(den, *run.facts["range"]) if run.facts.get("range") and clip else den), path

    def distillation(self, teacher, steps: int, out) -> list:
        """One student of the teacher: consistency distillation on the grid N = [consistency] steps, sampled with
        `steps` consistency steps, trained with the teacher's budget."""
        values = self.student_values(teacher.config.to_dict(), teacher.folder, out, {"steps": 18},
                                     {"sampler": "consistency", "steps": steps})
        return [(values, out)]

    def describe(self, run) -> list[tuple[str, str]]:
        c = run.config.consistency
        how = (f"distilled, N = {c.steps}" if "teacher" in run.config.requires else
               f"trained from data, N from {c.start} to {c.end}")
        return [("consistency", f"{how}, {c.distance} distance; samples in {run.config.sample.steps} step(s)"),
                *super().describe(run)]


KIND = Consistency()
