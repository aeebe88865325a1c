"""The configuration schema: TOML files and `--set key=value` overrides mapped onto typed dataclasses.

A configuration is the run's name, its `kind`, the runs it `requires` (role -> run folder) and one section per
subject: `data`, `model`, `diffusion` (the Gaussian path and its objective), `train`, `sample`, and the sections
the kinds declare for themselves (`discrete`, `autoencoder`, `cascade`: `kinds`). Every key is checked when it
is read: an unknown key or a value of the wrong type is refused with the list of valid keys (or the expected
type), each section checks its own values, and the run's kind checks what it accepts (`kinds.base.Kind.check`)
before any work starts. Names become objects in `build`, not here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .._checks import choose
from .kinds import KINDS, sections
from .schema import positive, within

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"
MODEL_KINDS = {"unet": "U-Net", "dit": "Diffusion Transformer", "mlp": "MLP", "transformer": "token network",
               "vae": "network"}  # what each model.kind is, for messages


@dataclass
class DataConfig:
    name: str = "digits"  # digits | fashion_mnist | folder | toy
    split: str = "train"
    root: str = ""  # fashion_mnist: folder of the IDX files (default: Debian's); folder: the image folder
    size: int = 32  # folder: side of the square images
    channels: int = 1  # folder: 1 (grey) or 3 (RGB)
    toy: str = "eight_gaussians"  # toy: which set
    toy_size: int = 50_000  # toy: number of training points
    source: str = ""  # flows: a toy set to start from at t = 1 instead of N(0, I), e.g. cfm_8gaussians
    levels: int = 0  # > 1: quantize images or toy points to this many levels (categorical data for kind = "discrete")
    text: str = "pydoc"  # text: pydoc (Python's own docs, always present) | fortunes (Debian) | a text file
    length: int = 128  # text: characters per example
    downsample: int = 1  # > 1: images averaged over f x f blocks (28x28 -> 14x14 for f = 2): a cascade's low-resolution base
    low_res: int = 0  # >= 2: super-resolution data: each image with its f-times smaller block average as the condition low_res
    captions: str = ""  # fashion_mnist: "seen" gives every image a caption (class, shade, size; data.captions), encoded by
    #                     the sentence encoder of the optional extra difflab[text], for a text-conditioned model;
    #                     "augmented": the seen wording widened by a thesaurus (data.thesaurus, from WordNet)
    text_encoder: str = "minilm"  # captions: the sentence encoder (difflab.text_encoder): minilm | mpnet (difflab[text-mpnet])

    def __post_init__(self):
        from ..data import TOY_SETS

        choose(self.name, ("digits", "fashion_mnist", "folder", "toy", "text"), "data.name")
        choose(self.split, ("train", "test") + (("all",) if self.name == "digits" else ()), f"data.split of {self.name}")
        choose(self.toy, TOY_SETS, "data.toy")
        within(self, "size", 1, 4096)
        within(self, "toy_size", 1, 10_000_000)
        within(self, "length", 2, 65536)
        if self.levels and not 2 <= self.levels <= 256:
            raise ValueError(f"data.levels must be 0 (no quantizing) or from 2 to 256, got {self.levels}")
        if self.levels and self.name == "text":
            raise ValueError("data.levels quantizes images and toy points; text is already categorical (27 symbols)")
        if self.channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.source:
            choose(self.source, TOY_SETS, "data.source")
            if self.name != "toy":
                raise ValueError("data.source (a toy set as the flow's source) needs toy data (data.name = 'toy'); "
                                 "leave data.source empty for the standard normal")
        within(self, "downsample", 1, 64)
        if self.low_res and not 2 <= self.low_res <= 64:
            raise ValueError(f"data.low_res must be 0 (no super-resolution) or a factor from 2 to 64, got {self.low_res}")
        if (self.downsample > 1 or self.low_res) and (self.name in ("toy", "text") or self.levels):
            raise ValueError("data.downsample and data.low_res change the resolution of images: they need image data "
                             "(digits, fashion_mnist, folder) without data.levels")
        choose(self.captions, ("", "seen", "augmented"), "data.captions")
        if self.captions and (self.downsample > 1 or self.low_res):
            raise ValueError("captions describe full-resolution Fashion-MNIST images: data.captions does not combine with "
                             "data.downsample or data.low_res")
        if self.captions and (self.name != "fashion_mnist" or self.levels):
            raise ValueError("data.captions describes Fashion-MNIST images (class, shade, size): it needs "
                             "data.name = 'fashion_mnist' without data.levels")
        from ..text_encoder import ENCODERS

        choose(self.text_encoder, tuple(ENCODERS), "data.text_encoder")
        if self.text_encoder != "minilm" and not self.captions:
            raise ValueError(f"data.text_encoder = {self.text_encoder!r} says how captions are encoded: it needs "
                             "data.captions = 'seen' (or 'augmented')")

    @property
    def categorical(self) -> bool:
        """Whether the data are integer tokens (text, or quantized images / toy points)."""
        return self.name == "text" or self.levels > 0


@dataclass
class ModelConfig:
    kind: str = "unet"  # unet | dit (images) | mlp (vectors) | transformer (token sequences: kind = "discrete" / "autoregressive")
    #                     | vae (the autoencoder of kind = "autoencoder": channels, channel_mult, num_res_blocks)
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (-1,)
    patch_size: int = 1  # unet: fold p x p pixel patches into channels first (the network runs at 1/p resolution); dit: p x p patches are its tokens
    dropout: float = 0.0
    width: int = 256  # mlp, transformer, dit
    depth: int = 3  # mlp, transformer, dit (blocks)
    heads: int = 4  # transformer, dit
    time_embedding: str = "sinusoidal"  # sinusoidal | fourier
    class_conditional: bool = False
    text_conditional: bool = False  # unet, dit: a caption's token states by cross-attention, its sentence embedding added
    #                                 to the time embedding (needs data.captions)
    text_tokens: bool = True  # a text-conditional model: false reads the sentence embedding alone (no cross-attention)

    def __post_init__(self):
        choose(self.kind, MODEL_KINDS, "model.kind")
        within(self, "heads", 1, 256)
        if self.kind in ("transformer", "dit") and self.width % self.heads:
            raise ValueError(f"model.width ({self.width}) must be divisible by model.heads ({self.heads})")
        choose(self.time_embedding, ("sinusoidal", "fourier"), "model.time_embedding")
        within(self, "channels", 1, 4096)
        within(self, "num_res_blocks", 1, 64)
        within(self, "width", 2, 65536)
        within(self, "depth", 1, 256)
        within(self, "patch_size", 1, 64)
        if self.width % 2:
            raise ValueError(f"model.width must be even (the time embedding has sines and cosines), got {self.width}")
        if self.kind == "dit" and self.width % 4:
            raise ValueError(f"model.width of a DiT must be divisible by 4 (its 2-D position embeddings), got {self.width}")
        if not self.channel_mult or not all(1 <= m <= 64 for m in self.channel_mult):
            raise ValueError(f"model.channel_mult needs one multiplier from 1 to 64 per level, got {list(self.channel_mult)}")
        levels = len(self.channel_mult)
        if not all(-levels <= a < levels for a in self.attention_levels):
            raise ValueError(f"model.attention_levels must index the {levels} levels (0 .. {levels - 1}, or -1 for the "
                             f"last), got {list(self.attention_levels)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not self.text_tokens and not self.text_conditional:
            raise ValueError("model.text_tokens = false says how a text-conditional model reads its caption: it needs "
                             "model.text_conditional = true")


PATHS = ("ddpm_linear", "ddpm_cosine", "vp", "subvp", "ve", "ncsn", "cosine", "linear")


@dataclass
class DiffusionConfig:
    path: str = "ddpm_linear"  # ddpm_linear | ddpm_cosine (discrete, T steps) | vp | subvp | ve | ncsn | cosine | linear
    T: int = 1000  # steps of a discrete path; for ncsn the number of noise levels L
    sigma_min: float = 0.01  # ve and ncsn: the smallest and largest noise levels
    sigma_max: float = 50.0
    flow_sigma_min: float = 0.0  # linear: the width of Lipman et al.'s tube around the data at t = 0
    prediction: str = "eps"  # eps | x0 | v | score | velocity
    weighting: str = "simple"  # simple | elbo | sigma2 | likelihood | min_snr
    snr_gamma: float = 5.0  # min_snr: the cap gamma in min(SNR, gamma) (Hang et al. 2023 use 5)
    time_sampler: str = "default"  # default (uniform on the path's times) | log_normal
    t_min: float = 1e-3
    coupling: str = "independent"  # independent | exact | sinkhorn: how data and source batches are paired (flows)
    coupling_reg: float = 0.05  # sinkhorn: entropic regulariser relative to the mean cost
    p_uncond: float = 0.0  # label dropout: the probability of training on the null label (for classifier-free guidance)
    low_res_noise: float = 0.0  # super-resolution (data.low_res): noise-conditioning augmentation, the low-resolution
    #                             image noised on the path to a level s ~ U[0, low_res_noise] (the network is told s); 0 = off

    def __post_init__(self):
        from ..couplings import COUPLINGS
        from ..losses import WEIGHTINGS
        from ..targets import KINDS

        choose(self.coupling, COUPLINGS, "diffusion.coupling")
        if not 0 <= self.flow_sigma_min < 1:
            raise ValueError(f"diffusion.flow_sigma_min must be in [0, 1), got {self.flow_sigma_min}")
        if not self.coupling_reg > 0:
            raise ValueError(f"diffusion.coupling_reg must be > 0, got {self.coupling_reg}")
        choose(self.path, PATHS, "diffusion.path")
        choose(self.prediction, KINDS, "diffusion.prediction")
        choose(self.weighting, WEIGHTINGS, "diffusion.weighting")
        choose(self.time_sampler, ("default", "log_normal"), "diffusion.time_sampler")
        within(self, "T", 1, 100_000)
        if not 0 < self.sigma_min < self.sigma_max < 1e6:
            raise ValueError(f"need 0 < diffusion.sigma_min < diffusion.sigma_max < 1e6; got {self.sigma_min}, {self.sigma_max}")
        if not 0 < self.t_min < 1:
            raise ValueError(f"diffusion.t_min must be in (0, 1), got {self.t_min}")
        if not self.coupling_reg < math.inf:
            raise ValueError(f"diffusion.coupling_reg must be finite, got {self.coupling_reg}")
        if not 0 < self.snr_gamma < math.inf:
            raise ValueError(f"diffusion.snr_gamma (min_snr's cap on the signal-to-noise ratio) must be positive and finite "
                             f"(5 is usual), got {self.snr_gamma}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"diffusion.p_uncond must lie in [0, 1) (0.1 is usual), got {self.p_uncond}")
        if not 0 <= self.low_res_noise <= 1:
            raise ValueError(f"diffusion.low_res_noise (the largest augmentation level, a time on the path) must lie in "
                             f"[0, 1], got {self.low_res_noise}")



LR_DECAYS = ("none", "cosine", "linear")


@dataclass
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 128  # per process
    lr: float = 2e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 mixed precision on CUDA
    # bf16 mixed precision on CPU too: true, false, or "auto" (on where the CPU computes bf16 natively: AVX512-BF16, AMX,
    # Arm BF16; there a step is 1.4-1.7x faster, elsewhere bf16 is emulated and slower)
    amp_cpu: bool | str = False
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 50
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall-clock training in all; 0 = no limit
    lr_decay: str = "none"  # none | cosine | linear: down to 0 at the end of the run (train.steps or max_minutes)
    decay_from: float = 0.0  # the fraction of the run where the decay starts (0.8: the last 20%)

    def __post_init__(self):
        positive(self, "steps", "batch_size", "checkpoint_every", "keep_last", "log_every")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"train.device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        choose(self.lr_decay, LR_DECAYS, "train.lr_decay")
        if not isinstance(self.amp_cpu, bool) and self.amp_cpu != "auto":
            raise ValueError(f'train.amp_cpu must be true, false or "auto", got {self.amp_cpu!r}')
        if not 0 <= self.decay_from < 1:
            raise ValueError(f"train.decay_from must be in [0, 1), got {self.decay_from}")
        if not (self.max_minutes >= 0 and math.isfinite(self.max_minutes)):
            raise ValueError(f"train.max_minutes must be >= 0 (0 = no limit); got {self.max_minutes}")
        if not (0 < self.lr < math.inf) or self.warmup < 0 or not (0 <= self.grad_clip < math.inf) or not 0 <= self.ema_decay < 1:
            raise ValueError(f"need 0 < train.lr < inf, train.warmup >= 0, 0 <= train.grad_clip < inf (0 = off) and "
                             f"0 <= train.ema_decay < 1; got lr={self.lr}, warmup={self.warmup}, grad_clip={self.grad_clip}, "
                             f"ema_decay={self.ema_decay}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if not -2**63 <= self.seed < 2**63:
            raise ValueError(f"train.seed must fit in 64 bits, got {self.seed}")


@dataclass
class SampleConfig:
    sampler: str = "dpmpp_2m"
    steps: int = 20
    grid: str = ""  # empty: the path's default grid
    n: int = 64
    options: dict = field(default_factory=dict)  # the sampler's own keywords, e.g. {steps_per_level = 100}
    grid_options: dict = field(default_factory=dict)  # the grid's own keywords, e.g. {rho = 5} for karras
    # NFE budget -> sampler spec measured best at it on this recipe ({10 = "dpmpp_2m_sde@karras"}): the sampler used
    # when none is named (`sampler_choice`); a run's own `difflab bench samplers --record` takes precedence
    by_nfe: dict = field(default_factory=dict)

    def __post_init__(self):
        from ..samplers import SAMPLERS
        from ..samplers.grids import GRIDS, grid_options
        from ..sampling import about

        choose(self.sampler, SAMPLERS, "sample.sampler")
        try:
            about(self.sampler).check(self.sampler, self.options)
        except ValueError as e:
            raise ValueError(f"sample.options: {e}") from None
        if self.grid:
            choose(self.grid, GRIDS, "sample.grid")
        own = grid_options(self.grid) if self.grid else {}
        for key, value in self.grid_options.items():
            if key not in own:
                raise ValueError(f"sample.grid_options key {key!r} is not an option of the "
                                 + (f"{self.grid!r} grid (its options: {', '.join(own) or 'none'})" if self.grid else
                                    "default grid: name a grid (sample.grid = \"karras\") to give its options"))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"sample.grid_options.{key} must be a number, got {value!r}")
        positive(self, "steps", "n")
        from .sampler_choice import check_table

        check_table(self.by_nfe, "sample.by_nfe")


def _check_config(cfg) -> None:
    """What no single section can check: the kind, the runs it requires, and what the kind accepts."""
    choose(cfg.kind, KINDS, "kind")
    kind = KINDS[cfg.kind]
    for role, where in cfg.requires.items():
        if not isinstance(where, str) or not where:
            raise ValueError(f"requires.{role} must name a run folder (a string), got {where!r}")
    if cfg.model.kind not in kind.networks:
        m = cfg.model.kind
        owners = [k.name for k in KINDS.values() if m in k.networks and k.trains]
        whose = _a(owners[0]) + " run" if len(owners) == 1 else ", ".join(owners[:-1]) + " and " + owners[-1] + " runs"
        raise ValueError(f"model.kind = {m!r} is not available for {_a(kind.name)} run (kind = \"{kind.name}\"), which takes "
                         f"model.kind = {' or '.join(map(repr, kind.networks))}; {m!r} is the {MODEL_KINDS[m]} of {whose}")
    if kind.categorical and not cfg.data.categorical:
        raise ValueError(f"{_a(kind.name)} run models categorical data: use data.name = 'text', or quantize images or "
                         "toy points with data.levels (e.g. 4)")
    if cfg.data.categorical and not kind.categorical:
        need = " or ".join(f'"{k.name}"' for k in KINDS.values() if k.categorical)
        raise ValueError(f"categorical data (data.name = {cfg.data.name!r}, data.levels = {cfg.data.levels}) need kind = {need}")
    for key, message in _refused_keys(cfg, kind):
        raise ValueError(message.format(kind=kind.name))
    kind.check(cfg)


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _refused_keys(cfg, kind):
    """(key, message) of every key set away from its default that only other kinds take (`Kind.owns`); a role in
    `requires` counts as set when named."""
    for other in KINDS.values():
        for key, message in other.owns.items():
            if key in kind.owns:
                continue
            section, _, name = key.partition(".")
            if section == "requires":
                given = name in cfg.requires
            else:
                part = getattr(cfg, section)
                default = {f.name: f for f in dataclasses.fields(part)}[name]
                value = default.default if default.default is not dataclasses.MISSING else default.default_factory()
                given = getattr(part, name) != value
            if given:
                yield key, message


def _to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _assemble():
    """Config: the core sections and every section a kind declares (`kinds.sections`), in a fixed order."""
    head = [("name", str, field(default="run")), ("kind", str, field(default="diffusion")),
            ("requires", dict, field(default_factory=dict)), ("data", DataConfig, field(default_factory=DataConfig)),
            ("model", ModelConfig, field(default_factory=ModelConfig)),
            ("diffusion", DiffusionConfig, field(default_factory=DiffusionConfig))]
    declared = [(name, cls, field(default_factory=cls)) for name, cls in sections().items()]
    tail = [("train", TrainConfig, field(default_factory=TrainConfig)), ("sample", SampleConfig, field(default_factory=SampleConfig))]
    doc = ("A run's whole configuration: name, kind (" + " | ".join(KINDS) + "), requires (role -> run folder) and "
           "one section per subject.")
    cls = dataclasses.make_dataclass("Config", head + declared + tail,
                                     namespace={"__post_init__": _check_config, "to_dict": _to_dict, "__doc__": doc})
    cls.__module__ = __name__  # where it is defined, for pickling-free reprs and documentation
    return cls


Config = _assemble()


# -- reading and overriding ----------------------------------------------------------------------

def _coerce(value, tp, key: str):
    """Check (and gently convert) `value` to the annotated type `tp`, or raise naming the key."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, inner, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table ([{key}] or {{name = value}}), got {value!r}")
        return dict(value)
    return value


def _build(cls, values: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            valid = ", ".join(f"{prefix}{k}" for k in fields)
            raise ValueError(f"unknown configuration key {full!r}; valid keys: {valid}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ValueError(f"{full} must be a table ([{full}]), got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full)
    return cls(**kwargs)


def _parse_value(text: str):
    """A --set value: TOML syntax when it parses (numbers, true/false, lists, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value (for example train.steps=500), got {item!r}")
        key, text = item.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = _parse_value(text.strip())
    return values


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def resolve_config_file(name_or_path: str | Path) -> Path:
    """A TOML path, or the name of a shipped preset (toy2d, digits, fashion_mnist)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    preset = PRESETS_DIR / f"{p.stem}.toml"
    if p.suffix in ("", ".toml") and preset.is_file() and not p.parent.parts[1:]:
        return preset
    raise FileNotFoundError(f"no configuration file {str(p)!r}; give a TOML file or a preset: {', '.join(preset_names())}")


def load_config(source: str | Path | dict | None = None, overrides: list[str] | None = None) -> Config:
    """A Config from a TOML file / preset name / dict (None: all defaults), with `key=value` overrides."""
    if source is None:
        values = {}
    elif isinstance(source, dict):
        values = json.loads(json.dumps(source))  # a deep copy
    else:
        with open(resolve_config_file(source), "rb") as f:
            values = tomllib.load(f)
    return _build(Config, apply_overrides(values, overrides or []), "")
