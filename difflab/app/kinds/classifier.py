"""kind = "classifier": a noise-conditional classifier p_t(c given x_t) on the run's Gaussian path (the U-Net's encoder
for images, the MLP for vectors), trained against `objectives.ClassifierObjective`; it guides the samples of a
diffusion run on the same path and data (`difflab sample RUN --classifier CLF --label 3 --guidance 4`).

`dl.load` gives (classifier, path, config) with `classifier(x_t, t, label) -> log p_t(label given x_t)`.
"""

from __future__ import annotations

from ..build import build_classifier, build_path, build_time_sampler
from .base import Kind


class Classifier(Kind):
    name = "classifier"
    about = "a noise-conditional classifier p_t(c given x_t): guides diffusion runs on the same path"
    networks = ("unet", "mlp")
    guides = True

    def check(self, cfg) -> None:
        if cfg.model.class_conditional:
            raise ValueError("a classifier run predicts the class: model.class_conditional does not apply to it")

    def network(self, cfg, facts: dict):
        return build_classifier(cfg.model, tuple(facts["shape"]), facts.get("num_classes"))

    def objective(self, cfg, data, requires=None):
        from ...objectives import ClassifierObjective

        path = build_path(cfg.diffusion)
        return ClassifierObjective(path, time_sampler=build_time_sampler(cfg.diffusion, path))

    def load(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        from ...guidance import as_classifier

        return as_classifier(run.network(ema=ema, device=device)), build_path(run.config.diffusion), run.config

    def as_classifier(self, run, device="cpu"):
        return self.load(run, device=device)[0]

    def no_samples(self, run) -> str:
        return (f"{run} is a classifier run, not a diffusion model: it has no samples (guide a diffusion run with it: "
                f"--classifier {run} --guidance W)")


KIND = Classifier()
