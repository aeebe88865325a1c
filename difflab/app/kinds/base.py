"""What a kind of run is: `Kind`, the one place that knows everything that depends on a run's kind.

A kind declares what it accepts (its config sections, the networks it builds, the runs it requires, the keys
only it takes, the options of each command) and says how to train it (network, objective, data), how to load
it (what `dl.load` gives), and how to sample, evaluate, benchmark and describe it. The application around it
(`run.Run`, `trainer`, `cli`) calls these and never compares a kind's name. The defaults here refuse, in one
line, what a kind does not do.

Adding a kind: one module in `kinds/` with a `Kind` subclass, one line in `kinds/__init__.py`, a preset and its
tests (docs/ARCHITECTURE.md, "Adding a kind").
"""

from __future__ import annotations

from ..outputs import Samples  # noqa: F401  (the type the kinds' `sample` returns)


def a(word: str) -> str:
    """'a diffusion', 'an autoencoder'."""
    return ("an " if word[:1] in "aeiou" else "a ") + word


class Kind:
    """One kind of run (module doc). Subclasses set the declarations and override what they do."""

    name: str = ""
    about: str = ""  # what a run of this kind holds, one line (docs, `info`)
    sections: dict = {}  # config sections this kind introduces: name -> dataclass (`config.Config` gathers them)
    networks: tuple = ()  # the model.kind values its network can be
    categorical: bool = False  # it models integer tokens (data.name = "text", or data.levels)
    requires: dict = {}  # role -> the kind of run that role must name, or a capability ("diffusion_model"); all required
    optional: dict = {}  # role -> the same, for roles it may name
    owns: dict = {}  # "section.key" (or "requires.role") -> the message refusing it on runs of other kinds
    trains: bool = True  # False: `difflab train` only writes the run folder (a cascade names its stages)
    diffusion_model: bool = False  # it holds a denoiser on a Gaussian path (classifier guidance, bench, a teacher, ...)
    guides: bool = False  # it is a classifier that guides diffusion runs (`as_classifier`)
    distils: bool = False  # `difflab distill --method NAME` makes students of this kind (`distillation`)
    sample_options: frozenset = frozenset()  # SampleRequest fields (and Guidance fields) it takes
    eval_options: frozenset = frozenset()  # EvalRequest fields it takes
    restore_options: frozenset = frozenset()  # RestoreRequest fields it takes (beyond what every restoration needs)
    edit_options: frozenset = frozenset()  # EditRequest fields it takes

    # -- configuration and training --------------------------------------------------------------

    def check(self, cfg) -> None:
        """Refuse a configuration of this kind that cannot work (after each section checked itself)."""

    def network(self, cfg, facts: dict):
        """The untrained network, from the configuration and the data's facts (data.json)."""
        raise ValueError(f"{a(self.name)} run has no network")

    def objective(self, cfg, data, requires: dict | None = None):
        """`objective(model, batch, generator) -> per-example loss` for `training.fit` (`requires`: the runs it
        names, e.g. a teacher)."""
        raise ValueError(f"{a(self.name)} run trains nothing")

    def build(self, cfg, data, model=None):
        """The objective (the name `runs.KINDS[kind].build` had)."""
        return self.objective(cfg, data)

    def initialize(self, model, cfg, requires: dict) -> None:
        """Set a fresh run's weights before training (a student starts from its teacher's); by default as built."""

    def distillation(self, teacher, steps: int, out) -> list:
        """[(configuration values, run folder)] that `difflab distill TEACHER --method NAME` trains in turn; a kind
        that is not a way to distil refuses."""
        raise ValueError(f"{self.name} is not a way to distil a model")

    def plan(self, cfg, data, requires: dict, resuming) -> dict:
        """The facts the network is built from (data.json), found without heavy work, every check done: training
        refuses here, before anything is written. `resuming` is the run folder when resuming, else None."""
        from ..build import data_record

        return data_record(data)

    def training_data(self, cfg, data, requires: dict):
        """The data the loop trains on (after every check: this may take time, e.g. encoding latents)."""
        return data

    def record(self, cfg, requires: dict, folder) -> dict:
        """data.json of a run that trains nothing."""
        raise NotImplementedError

    # -- using a trained run ---------------------------------------------------------------------

    def load(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        """What `dl.load` gives for a run of this kind: (model, path or None, config)."""
        return run.network(ema=ema, device=device), None, run.config

    def describe(self, run) -> list[tuple[str, str]]:
        """(label, text) lines `difflab info` shows for this kind."""
        return []

    def no_samples(self, run) -> str:
        return f"{run} is {a(self.name)} run, not a diffusion model: it has no samples"

    def form(self, run) -> str:
        """What its samples are (`outputs.FORMS`): images, points, vectors or text."""
        raise ValueError(self.no_samples(run))

    def check_sample(self, run, request) -> None:
        """Refuse a sample request this run cannot honour, before any work."""
        raise ValueError(self.no_samples(run))

    def sample(self, run, request) -> Samples:
        raise ValueError(self.no_samples(run))

    def check_eval(self, run, request) -> None:
        raise ValueError(f"{run} is {a(self.name)} run: `difflab eval` has nothing to measure on it")

    def evaluate(self, run, request) -> list:
        """Measure the run; returns the reports written (paths), the first one printed."""
        raise ValueError(f"{run} is {a(self.name)} run: `difflab eval` has nothing to measure on it")

    def check_bench(self, run, request) -> None:
        raise ValueError(f"{run} is {a(self.name)} run: `difflab bench samplers` measures the samplers of a diffusion run")

    def bench(self, run, request) -> dict:
        raise ValueError(f"{run} is {a(self.name)} run: `difflab bench samplers` measures the samplers of a diffusion run")

    def no_images(self, run, verb: str) -> str:
        return f"{run} is {a(self.name)} run: `difflab {verb}` works on a diffusion model of images"

    def check_restore(self, run, request) -> None:
        raise ValueError(self.no_images(run, "restore"))

    def restore(self, run, request) -> Samples:
        """Restorations of observations (`requests.RestoreRequest`): the inverse problem's task, method, images."""
        raise ValueError(self.no_images(run, "restore"))

    def check_edit(self, run, request) -> None:
        raise ValueError(self.no_images(run, "edit"))

    def edit(self, run, request) -> Samples:
        """Edits of images (SDEdit: `requests.EditRequest`)."""
        raise ValueError(self.no_images(run, "edit"))

    def as_classifier(self, run, device="cpu"):
        """`classifier(x_t, t, label) -> log p_t(label given x_t)` for classifier guidance, from a classifier run."""
        raise ValueError(f"--classifier {run} is {a(self.name)} run; train one with kind = \"classifier\"")

    def __repr__(self) -> str:
        return f"<kind {self.name}>"
