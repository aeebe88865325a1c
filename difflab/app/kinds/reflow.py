"""kind = "reflow": a rectified flow (Liu, Gong & Liu 2023) trained on pairs of its teacher's (requires.teacher: any
run holding a diffusion model): noise z and where the teacher's probability-flow ODE takes it (`distillation.
reflow_pairs`, encoded once per teacher and cached in difflab's cache folder), on the linear path x_t = (1 - t) x0 + t z
with the pairs' own velocity z - x0 (`objectives.DiffusionObjective` on `data.PairedData`). Straighter paths than the
teacher's: a few Euler steps suffice. With [reflow] one_step the flow is trained at t = 1 alone (the one-step
distillation of a rectified flow: x0 = z - v(z, 1)). `difflab distill TEACHER --method reflow --steps K --out OUT`:
the 2-rectified flow, and for K = 1 its one-step distillation after it (OUT-rectified, then OUT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..build import build_path
from ..schema import within
from .diffusion import _conditions
from .progressive import Student


@dataclass
class ReflowConfig:
    """A rectified flow on its teacher's ODE pairs (kind = "reflow")."""

    pairs: int = 20_000  # pairs drawn from the teacher
    sampler: str = "dpmpp_2m"  # the teacher's deterministic sampler for its ODE (a spec)
    teacher_steps: int = 20
    one_step: bool = False  # train at t = 1 only: the one-step distillation of a rectified flow

    def __post_init__(self):
        from ...sampling import parse_sampler_spec

        within(self, "pairs", 1, 10_000_000)
        within(self, "teacher_steps", 1, 100_000)
        parse_sampler_spec(self.sampler)


class _AtOne:
    """A time sampler that always draws t = 1."""

    def __call__(self, n, generator=None):
        return torch.ones(n, dtype=torch.float64)


class Reflow(Student):
    name = "reflow"
    about = "a rectified flow on its teacher's noise -> sample pairs"
    sections = {"reflow": ReflowConfig}
    optional = {}

    def check(self, cfg) -> None:
        super().check(cfg)
        if cfg.diffusion.path != "linear" or cfg.diffusion.prediction != "velocity":
            raise ValueError("a reflow run is a flow: diffusion.path = 'linear' with prediction = 'velocity' (difflab distill "
                             "sets them)")

    def _teacher_settings(self, cfg) -> dict:
        from ...sampling import parse_sampler_spec

        spec = parse_sampler_spec(cfg.reflow.sampler)
        return {**spec.kwargs(), "steps": cfg.reflow.teacher_steps}

    def plan(self, cfg, data, requires: dict, resuming) -> dict:
        teacher = requires["teacher"]
        if teacher.facts.get("latent") or teacher.facts.get("captions") or teacher.facts.get("low_res"):
            raise ValueError(f"reflow of {teacher} (latents, captions or a low-resolution condition) is not supported yet: "
                             "its pairs would need them too")
        facts = {k: v for k, v in teacher.facts.items() if k in ("shape", "num_classes", "class_names", "range")}
        return {**facts, "name": f"reflow pairs of {teacher.folder.name}", "size": cfg.reflow.pairs}

    def training_data(self, cfg, data, requires: dict):
        from ...data import PairedData
        from ...distillation import reflow_pairs
        from ..cache import cached

        teacher = requires["teacher"]
        den, path, tcfg = teacher.load()
        n, shape = cfg.reflow.pairs, tuple(teacher.facts["shape"])
        labels = torch.arange(n) % teacher.facts["num_classes"] if tcfg.model.class_conditional else None
        settings = self._teacher_settings(cfg)
        key = f"pairs-{teacher.weights_digest(teacher.checkpoint[0])[:16]}-{n}-{cfg.reflow.sampler}-{cfg.reflow.teacher_steps}"

        def draw():
            x0, z = reflow_pairs(den, path, n, shape, seed=cfg.train.seed, cond={"label": labels} if labels is not None else None,
                                 progress=True, **settings)
            return {"x0": x0, "z": z}

        pairs = cached("reflow", key, draw, {"x0": (n, *shape), "z": (n, *shape)})
        return PairedData(pairs["x0"], pairs["z"], f"reflow pairs of {teacher.folder.name}", labels,
                          teacher.facts.get("class_names") or (), value_range=teacher.facts.get("range"))

    def objective(self, cfg, data, requires=None):
        from ...objectives import DiffusionObjective

        path = build_path(cfg.diffusion)
        return DiffusionObjective(path, prediction="velocity", time_sampler=_AtOne() if cfg.reflow.one_step else None,
                                  conditions=_conditions(cfg))

    def initialize(self, model, cfg, requires: dict) -> None:
        """From the teacher's weights when the teacher is itself a flow on the linear path; else as built."""
        t = requires["teacher"].config.diffusion
        if t.path == "linear" and t.prediction == "velocity":
            super().initialize(model, cfg, requires)

    def distillation(self, teacher, steps: int, out) -> list:
        base = teacher.config.to_dict()
        flow = {"path": "linear", "prediction": "velocity", "weighting": "simple", "coupling": "independent",
                "time_sampler": "default", "p_uncond": 0.0, "low_res_noise": 0.0}
        rectified = out if steps > 1 else out.with_name(f"{out.name}-rectified")
        values = self.student_values(base, teacher.folder, rectified, {}, {"sampler": "ode_euler", "steps": max(steps, 4)
                                                                          if steps == 1 else steps})
        values["diffusion"] = {**values["diffusion"], **flow}
        plan = [(values, rectified)]
        if steps == 1:  # its one-step distillation, on pairs of the rectified flow's own (nearly straight) ODE
            one = self.student_values(values, rectified, out, {"one_step": True, "sampler": "ode_euler", "teacher_steps": 8},
                                      {"sampler": "ode_euler", "steps": 1})
            plan.append((one, out))
        return plan

    def describe(self, run) -> list[tuple[str, str]]:
        r = run.config.reflow
        how = "one-step distillation (t = 1)" if r.one_step else "rectified flow"
        return [("reflow", f"{how} on {r.pairs:,} pairs of its teacher's ODE ({r.sampler}, {r.teacher_steps} steps)"),
                *super().describe(run)]


KIND = Reflow()
