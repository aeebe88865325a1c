"""What a user asks a run for: `SampleRequest`, `EvalRequest`, `BenchRequest` (with `Guidance`), each checked whole
before any work (`check`: values in range, names that exist, requests that fit in memory); what a run's kind
accepts of them is the kind's to say (`kinds.base.Kind`). Also `sampling_settings`, a run's [sample] settings with
a request's overrides, and `labels_for`, the label of each sample.

Bounds: at most `MAX_STEPS` sampler steps (the configuration's own bound on a path's T), guidance scales within
`MAX_GUIDANCE`, and outputs that fit in half of this machine's memory.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from .._checks import choose, is_finite_number

__all__ = ["Guidance", "SampleRequest", "EvalRequest", "BenchRequest", "RestoreRequest", "EditRequest", "sampling_settings", "labels_for", "check_fits",
           "MAX_STEPS", "MAX_GUIDANCE"]

MAX_STEPS = 100_000  # as the configuration bounds a path's T and discrete.sample_steps
MAX_GUIDANCE = 1000.0  # usual scales are 0.5-10; far beyond, float32 overflows to NaN


def _given(obj, options: dict) -> list[tuple[str, str]]:
    """(field, option) of every field of `obj` among `options` that a user set: away from its default."""
    out = []
    for f in fields(obj):
        if f.name in options:
            default = f.default if f.default is not MISSING else f.default_factory()
            if getattr(obj, f.name) != default:
                out.append((f.name, options[f.name]))
    return out


def _budget(steps: int | None, nfe: int | None) -> None:
    _steps(nfe, "--nfe")
    if steps is not None and nfe is not None:
        raise ValueError("--steps and --nfe both given: give --nfe N for a budget of N network evaluations per sample (the "
                         "sampler takes the most steps that fit), or --steps N for N steps")


def _steps(value: int | None, option: str) -> None:
    if value is not None and not 1 <= value <= MAX_STEPS:
        raise ValueError(f"{option} {value}: steps must lie in 1 .. {MAX_STEPS:,} (20-50 is usual; a discrete-time path "
                         "takes at most its own T)")


def _seed(seed: int) -> None:
    if not -2**63 <= seed < 2**63:
        raise ValueError(f"--seed {seed} does not fit in 64 bits; use a seed from {-2**63} to {2**63 - 1}")


def _device(name: str) -> str:
    from ..training.distributed import resolve_device

    return str(resolve_device(name))


@dataclass
class Guidance:
    """How to steer samples: a classifier-free scale w (or classifier guidance with a classifier run), the noise
    levels it acts on, a class to steer away from, a rescale factor, dynamic thresholding (`kinds.diffusion`)."""

    scale: float | None = None
    classifier: Path | None = None
    interval: tuple[float, float] | None = None
    negative: int | None = None
    rescale: float | None = None
    threshold: float | None = None

    OPTIONS = {"scale": "--guidance", "classifier": "--classifier", "interval": "--guidance-interval",
               "negative": "--negative-label", "rescale": "--guidance-rescale", "threshold": "--dynamic-threshold"}

    def given(self) -> list[tuple[str, str]]:
        return _given(self, self.OPTIONS)

    def check(self) -> None:
        if self.scale is not None:
            check_scale(self.scale)
        if self.scale is None and any(v is not None for v in (self.classifier, self.interval, self.negative, self.rescale)):
            raise ValueError("--classifier, --guidance-interval, --negative-label and --guidance-rescale shape guidance: "
                             "give its scale with --guidance W")
        if self.interval is not None:
            lo, hi = self.interval
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
                raise ValueError(f"--guidance-interval {lo:g},{hi:g}: give noise levels sigma/alpha with 0 <= LO < HI "
                                 "(e.g. 0.3,5)")
        if self.rescale is not None and not 0 <= self.rescale <= 1:
            raise ValueError(f"--guidance-rescale {self.rescale}: the rescale factor phi lies in [0, 1] (0.7 is usual)")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ValueError(f"--dynamic-threshold {self.threshold}: a percentile in (0, 1) (0.995 is usual)")
        if self.negative is not None and self.negative < 0:
            raise ValueError(f"--negative-label {self.negative}: labels are class numbers from 0")

    def keywords(self) -> dict:
        """Keywords of `kinds.diffusion.load_guided`."""
        return {"scale": self.scale, "classifier": self.classifier, "interval": self.interval, "negative": self.negative,
                "rescale": self.rescale or 0.0, "threshold": self.threshold}


def check_scale(w: float, option: str = "--guidance") -> None:
    if not (math.isfinite(w) and abs(w) <= MAX_GUIDANCE):
        raise ValueError(f"{option} {w:g}: a guidance scale must be a finite number within +-{MAX_GUIDANCE:g} "
                         "(0 = none; 1-5 is usual)")


@dataclass
class SampleRequest:
    """`difflab sample RUN ...`: how many samples, drawn how, conditioned on what, written where."""

    n: int = 64
    seed: int = 0
    batch: int = 500
    device: str = "cpu"
    out: Path | None = None  # None: the kind's default (samples.png, or samples.txt for text)
    sampler: str | None = None
    steps: int | None = None
    grid: str | None = None
    nfe: int | None = None  # a budget of network evaluations per sample, for the sampler measured best at it
    label: int | None = None
    prompts: tuple[str, ...] = ()
    guidance: Guidance = field(default_factory=Guidance)
    base_sampler: str | None = None
    base_steps: int | None = None
    low_res_noise: float | None = None
    progress: bool = True

    OPTIONS = {"sampler": "--sampler", "steps": "--steps", "grid": "--grid", "nfe": "--nfe", "label": "--label",
               "prompts": "--prompt", "base_sampler": "--base-sampler", "base_steps": "--base-steps", "low_res_noise": "--low-res-noise"}

    def given(self) -> list[tuple[str, str]]:
        return _given(self, self.OPTIONS) + self.guidance.given()

    def check(self) -> None:
        """Every value on its own (what a kind accepts is checked by the kind)."""
        from ..samplers.grids import GRIDS
        from ..sampling import parse_sampler_spec

        for name in ("n", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        _seed(self.seed)
        _steps(self.steps, "--steps")
        _budget(self.steps, self.nfe)
        _steps(self.base_steps, "--base-steps")
        for spec in (self.sampler, self.base_sampler):
            if spec is not None:
                parse_sampler_spec(spec)
        if self.grid is not None:
            choose(self.grid, GRIDS, "grid")
        if self.label is not None and self.label < 0:
            raise ValueError(f"--label {self.label}: labels are class numbers from 0")
        if self.low_res_noise is not None and not 0 <= self.low_res_noise <= 1:
            raise ValueError(f"--low-res-noise {self.low_res_noise}: the augmentation level is a time on the path in [0, 1]")
        self.guidance.check()
        self.device = _device(self.device)


@dataclass
class EvalRequest:
    """`difflab eval RUN ...`: what to measure (likelihoods, sample metrics, reconstructions, bits per symbol)."""

    nll: bool = False
    elbo: bool = False
    metrics: tuple[str, ...] = ()
    sampler: str | None = None
    steps: int | None = None
    grid: str | None = None
    nfe: int | None = None  # a budget of network evaluations per sample, for the sampler measured best at it
    split: str | None = None
    n: int | None = None
    method: str | None = None
    probes: int | None = None
    rtol: float | None = None
    atol: float | None = None
    elbo_terms: int | None = None
    batch: int = 500
    scales: tuple[float, ...] | None = None  # guidance scales: one, or several for a sweep
    guidance: Guidance = field(default_factory=Guidance)
    seed: int = 0
    device: str = "cpu"
    command: str = ""  # as typed, for the report

    OPTIONS = {"nll": "--nll", "elbo": "--elbo", "metrics": "--metrics", "sampler": "--sampler", "steps": "--steps",
               "grid": "--grid", "nfe": "--nfe", "split": "--split", "method": "--method", "probes": "--probes", "rtol": "--rtol",
               "atol": "--atol", "elbo_terms": "--elbo-terms", "scales": "--guidance"}

    def given(self) -> list[tuple[str, str]]:
        return _given(self, self.OPTIONS) + [(f, o) for f, o in self.guidance.given() if f != "scale"]

    def check(self) -> None:
        from ..samplers.grids import GRIDS
        from ..sampling import parse_sampler_spec

        if self.n is not None and self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}")
        if self.batch < 1:
            raise ValueError(f"--batch must be >= 1, got {self.batch}")
        _seed(self.seed)
        _steps(self.steps, "--steps")
        _budget(self.steps, self.nfe)
        if self.sampler is not None:
            parse_sampler_spec(self.sampler)
        if self.grid is not None:
            choose(self.grid, GRIDS, "grid")
        if self.method is not None:
            choose(self.method, ("exact", "hutchinson"), "--method")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"--rtol and --atol must be > 0, got {self.rtol}, {self.atol}")
        for name in ("probes", "elbo_terms"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_STEPS:
                raise ValueError(f"{self.OPTIONS[name]} must lie in 1 .. {MAX_STEPS:,}, got {value}")
        if self.scales is not None:
            if not self.scales:
                raise ValueError("--guidance takes one or more comma-separated numbers (e.g. 0,1,3)")
            for w in self.scales:
                check_scale(w)
        replace(self.guidance, scale=self.scales[0] if self.scales else None).check()  # the scales are checked above
        self.device = _device(self.device)


@dataclass
class BenchRequest:
    """`difflab bench samplers RUN ...`: which samplers at which budgets, on how many samples."""

    samplers: tuple[str, ...] = ()
    nfe: tuple[int, ...] = (5, 10, 20, 50)
    diffusers: bool = False
    n: int = 500
    batch: int = 500
    seed: int = 0
    device: str = "cpu"
    append: bool = False
    record: bool = False  # make the best difflab sampler at each budget the run's default (sampler_choice.record)
    progress: bool = True
    log: object = print  # where the rows are reported as they are measured

    def check(self) -> None:
        from ..sampling import parse_sampler_spec

        if not self.samplers:
            raise ValueError("--samplers names no sampler")
        for spec in self.samplers:
            parse_sampler_spec(spec)
        if not self.nfe or not all(1 <= b <= MAX_STEPS for b in self.nfe):
            raise ValueError(f"--nfe takes comma-separated integers from 1 to {MAX_STEPS:,} (e.g. 5,10,20), got "
                             f"{','.join(map(str, self.nfe))}")
        for name in ("n", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        _seed(self.seed)
        self.device = _device(self.device)


@dataclass
class RestoreRequest:
    """`difflab restore RUN ...`: a task (inpaint, sr, deblur, denoise), its observations (image files, or held-out
    images whose observations are simulated) and the method (pgdm, dps, repaint) that restores them."""

    task: str = "inpaint"
    method: str = "pgdm"
    images: tuple[Path, ...] = ()
    test_images: int | None = None
    box: tuple[int, int, int, int] | None = None
    factor: int = 2
    blur: float = 1.0
    noise: float | None = None  # None: 0.1 for denoise, else 0
    scale: float = 10.0  # dps (its measured best: inverse.transforms)
    jump: int = 10  # repaint
    resamples: int = 5  # repaint
    n: int = 4  # restorations of each observation
    sampler: str | None = None
    steps: int | None = None
    grid: str | None = None
    label: int | None = None
    prompts: tuple[str, ...] = ()
    seed: int = 0
    batch: int = 500
    device: str = "cpu"
    out: Path | None = None
    progress: bool = True

    OPTIONS = {"box": "--box", "scale": "--scale", "jump": "--jump", "resamples": "--resamples", "sampler": "--sampler",
               "steps": "--steps", "grid": "--grid", "label": "--label", "prompts": "--prompt"}

    def given(self) -> list[tuple[str, str]]:
        return _given(self, self.OPTIONS)

    @property
    def noise_std(self) -> float:
        return self.noise if self.noise is not None else (0.1 if self.task == "denoise" else 0.0)

    def check(self) -> None:
        from ..samplers.grids import GRIDS
        from ..sampling import parse_sampler_spec
        from .observations import METHODS, TASKS

        choose(self.task, TASKS, "--task")
        choose(self.method, METHODS, "--method")
        if self.method == "repaint" and self.task != "inpaint":
            raise ValueError(f"--method repaint fills in unobserved pixels: it is for --task inpaint; for {self.task} use "
                             "pgdm or dps")
        if bool(self.images) == (self.test_images is not None):
            raise ValueError("say what to restore: --image FILE (repeatable) or --test-images N (held-out images, the truth "
                             "known), not both")
        if self.test_images is not None and self.test_images < 1:
            raise ValueError(f"--test-images must be >= 1, got {self.test_images}")
        for name in ("n", "batch", "jump", "resamples", "factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.resamples > 100 or self.jump > MAX_STEPS:
            raise ValueError(f"--resamples {self.resamples}, --jump {self.jump}: at most 100 resamples (RePaint uses 10)")
        if not (is_finite_number(self.blur) and 0 < self.blur <= 1000):
            raise ValueError(f"--blur {self.blur}: a Gaussian blur's width in pixels, above 0 and at most 1000 (1.0 is its default)")
        if self.factor > 1024:
            raise ValueError(f"--factor {self.factor}: super-resolution's factor divides the image's side (2 or 4 is usual)")
        if not (math.isfinite(self.noise_std) and 0 <= self.noise_std <= 10):
            raise ValueError(f"--noise {self.noise}: the observation's noise standard deviation, from 0 to 10 (pixels in [-1, 1])")
        if not (math.isfinite(self.scale) and 0 <= self.scale <= MAX_GUIDANCE):
            raise ValueError(f"--scale {self.scale}: DPS's scale must lie in 0 .. {MAX_GUIDANCE:g} (10 is its default)")
        if self.box is not None and len(self.box) != 4:
            raise ValueError("--box takes TOP,LEFT,HEIGHT,WIDTH (four integers)")
        _seed(self.seed)
        _steps(self.steps, "--steps")
        if self.sampler is not None:
            parse_sampler_spec(self.sampler)
        if self.grid is not None:
            choose(self.grid, GRIDS, "grid")
        if self.label is not None and self.label < 0:
            raise ValueError(f"--label {self.label}: labels are class numbers from 0")
        if len(self.prompts) > 1:
            raise ValueError("--prompt: restoration takes one prompt (it conditions every restoration)")
        self.device = _device(self.device)


@dataclass
class EditRequest:
    """`difflab edit RUN ...`: SDEdit, images noised to `strength` on the path and sampled back."""

    images: tuple[Path, ...] = ()
    test_images: int | None = None
    strength: float = 0.5
    n: int = 4
    sampler: str | None = None
    steps: int | None = None
    grid: str | None = None
    label: int | None = None
    prompts: tuple[str, ...] = ()
    seed: int = 0
    batch: int = 500
    device: str = "cpu"
    out: Path | None = None
    progress: bool = True

    OPTIONS = {"sampler": "--sampler", "steps": "--steps", "grid": "--grid", "label": "--label", "prompts": "--prompt"}

    def given(self) -> list[tuple[str, str]]:
        return _given(self, self.OPTIONS)

    def check(self) -> None:
        from ..samplers.grids import GRIDS
        from ..sampling import parse_sampler_spec

        if bool(self.images) == (self.test_images is not None):
            raise ValueError("say what to edit: --image FILE (repeatable) or --test-images N, not both")
        if self.test_images is not None and self.test_images < 1:
            raise ValueError(f"--test-images must be >= 1, got {self.test_images}")
        if not (math.isfinite(self.strength) and 0 < self.strength <= 1):
            raise ValueError(f"--strength {self.strength}: how far the images are noised, in (0, 1] (0.5 is usual; 1 "
                             "forgets them)")
        for name in ("n", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        _seed(self.seed)
        _steps(self.steps, "--steps")
        if self.sampler is not None:
            parse_sampler_spec(self.sampler)
        if self.grid is not None:
            choose(self.grid, GRIDS, "grid")
        if self.label is not None and self.label < 0:
            raise ValueError(f"--label {self.label}: labels are class numbers from 0")
        if len(self.prompts) > 1:
            raise ValueError("--prompt: an edit takes one prompt")
        self.device = _device(self.device)


def _memory() -> int:
    """This machine's memory in bytes (the container's limit when it is lower)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(limit).read_text().strip()
            if value.isdigit():
                total = min(total, int(value))
        except OSError:
            pass
    return total


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def check_fits(n: int, values_per_example: int, option: str = "--n", copies: int = 3) -> None:
    """Refuse `n` examples of `values_per_example` float32 values each when `copies` of them (the samples, their
    starting noise, a decoded or written copy) need more than half of this machine's memory."""
    need = n * values_per_example * 4 * copies
    have = _memory()
    if need > have // 2:
        most = max(1, (have // 2) // (values_per_example * 4 * copies))
        raise ValueError(f"{option} {n:,}: that many examples of {values_per_example:,} values need about {_bytes(need)} of "
                         f"memory and this machine has {_bytes(have)}; use at most {most:,} (several commands with other "
                         "--seed values give more)")


def sampling_settings(cfg, sampler: str | None = None, steps: int | None = None, grid: str | None = None, *,
                      nfe: int | None = None, folder=None) -> dict:
    """Keywords for `dl.sample` / `sample_batched`: the run's [sample] settings, or its measured choice for the
    budget when no sampler is named, with what the user named overriding them (`sampler_choice.settle`)."""
    from .sampler_choice import settle

    return settle(cfg, sampler, steps, grid, nfe=nfe, folder=folder).kwargs


def labels_for(label: int | None, n: int, num_classes: int, class_names=()):
    """The label of each of `n` samples: `label` for all, or every class in turn; a label that is not a class is
    refused with the run's classes."""
    import torch

    if label is None:
        return torch.arange(n) % num_classes
    if not 0 <= label < num_classes:
        shown = ", ".join(f"{i} ({c})" for i, c in enumerate(class_names)) if class_names else f"0 .. {num_classes - 1}"
        raise ValueError(f"--label {label} is not a class of this run; its classes: {shown}")
    return torch.full((n,), label, dtype=torch.long)
