"""kind = "progressive": a student of a teacher run (requires.teacher: any run holding a diffusion model) that learns
two of its teacher's DDIM steps in one (`distillation.ProgressiveObjective`, Salimans & Ho 2022), started from the
teacher's weights. `difflab distill TEACHER --method progressive --steps K --out OUT` halves the steps round by round,
each round a run of this kind whose teacher is the round before (OUT-steps16, OUT-steps8, ..., OUT).

A student is a diffusion model like its teacher (`Student`, shared with the other ways to distil): `dl.load`,
`difflab sample` (with its own few-step sampler by default: DDIM on its K-step grid), `eval`, `bench`, `restore`
and `edit` work as for any diffusion run. Its section is [progressive].
"""

from __future__ import annotations

from dataclasses import dataclass

from ..schema import within
from .diffusion import Diffusion, _conditions


@dataclass
class ProgressiveConfig:
    """A progressive-distillation student (kind = "progressive")."""

    steps: int = 4  # the student's steps K: it learns its teacher's 2K-step DDIM sampler in K

    def __post_init__(self):
        within(self, "steps", 1, 4096)


class Student(Diffusion):
    """What every distilled student shares: a teacher (a run holding a diffusion model), started from its weights,
    the teacher's network and data, and the `difflab distill` recipe built from the teacher's configuration."""

    requires = {"teacher": "diffusion_model"}
    distils = True  # `difflab distill --method NAME` makes students of this kind

    def teacher_denoiser(self, cfg, requires: dict):
        """The teacher's denoiser (EMA weights, clipped like its samples) on the training device."""
        from ...training.distributed import resolve_device

        teacher = requires["teacher"]
        den, path, _ = teacher.load(device=resolve_device(cfg.train.device))
        if teacher.kind.diffusion_model is not True:
            raise ValueError(f"requires.teacher = {teacher} holds no diffusion model")
        return den, path

    def initialize(self, model, cfg, requires: dict) -> None:
        """The student starts as its teacher: the teacher's EMA weights in the student's network."""
        target = getattr(model, "online", model)
        state = requires["teacher"].network().state_dict()
        teacher_state = {k.removeprefix("online."): v for k, v in state.items() if not k.startswith(("target.", "count"))}
        try:
            target.load_state_dict(teacher_state)
        except RuntimeError:
            raise ValueError(f"the student's network is not its teacher's ({requires['teacher']}): a student starts from its "
                             "teacher's weights, so its [model] must be the teacher's (difflab distill copies it)") from None
        if hasattr(model, "target"):
            model.target.load_state_dict(teacher_state)

    def student_values(self, teacher: dict, folder, out, section: dict, sample: dict, train: dict | None = None) -> dict:
        """A student's configuration values: its teacher's (`teacher`, the configuration values of the run in `folder`),
        with this kind, that teacher, its section and sampler."""
        values = dict(teacher)
        values.update(kind=self.name, name=out.name,
                      requires={"teacher": str(folder.resolve()),
                                **{k: v for k, v in teacher["requires"].items() if k == "autoencoder"}})
        values[self.name] = section
        values["sample"] = {"sampler": sample.get("sampler", "ddim"), "steps": sample.get("steps", 1),
                            "grid": sample.get("grid", ""), "n": teacher["sample"]["n"], "options": {}, "grid_options": {}}
        values["train"] = {**teacher["train"], **(train or {})}
        return values

    def describe(self, run) -> list[tuple[str, str]]:
        teacher = run.config.requires.get("teacher")
        return [*([("teacher", f"{teacher} ({self.about})")] if teacher else []), *super().describe(run)]


class Progressive(Student):
    name = "progressive"
    about = "a progressive-distillation student: two of its teacher's DDIM steps in one"
    sections = {"progressive": ProgressiveConfig}

    def objective(self, cfg, data, requires=None):
        from ...distillation import ProgressiveObjective

        teacher, path = self.teacher_denoiser(cfg, requires)
        return ProgressiveObjective(teacher, path, cfg.progressive.steps, prediction=cfg.diffusion.prediction,
                                    conditions=_conditions(cfg))

    def distillation(self, teacher, steps: int, out) -> list:
        """Rounds from the teacher's steps (its [sample] steps rounded up to K times a power of two, at least 2K) down
        to K, each round's training budget the teacher's divided by the rounds; the last round's folder is `out`."""
        start = max(2 * steps, teacher.config.sample.steps)
        rounds = []
        k = steps
        while k * 2 <= start:
            rounds.append(k)
            k *= 2
        rounds.reverse()  # the student steps of each round, e.g. [16, 8, 4]
        t = teacher.config.train
        train = {"steps": max(1, t.steps // len(rounds)), "max_minutes": t.max_minutes / len(rounds)}
        plan, prev, prev_folder = [], teacher.config.to_dict(), teacher.folder
        for i, k in enumerate(rounds):
            folder = out if i == len(rounds) - 1 else out.with_name(f"{out.name}-steps{k}")
            values = self.student_values(prev, prev_folder, folder, {"steps": k}, {"sampler": "ddim", "steps": k}, train)
            plan.append((values, folder))
            prev, prev_folder = values, folder
        return plan

    def describe(self, run) -> list[tuple[str, str]]:
        return [*super().describe(run), ("student", f"{run.config.progressive.steps} DDIM steps")]


KIND = Progressive()
