"""Run configuration: TOML files and `--set key=value` overrides mapped onto typed dataclasses.

Every key is checked: an unknown key or a value of the wrong type is refused with the list of valid
keys (or the expected type), before any work starts. Builders turn a configuration into the
library's objects (path, network, data); they are the only place where names become classes.
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

from ._checks import choose

PRESETS_DIR = Path(__file__).parent / "configs"


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
    #                     the sentence encoder of the optional extra difflab[text], for a text-conditioned model

    def __post_init__(self):
        from .data import TOY_SETS

        choose(self.name, ("digits", "fashion_mnist", "folder", "toy", "text"), "data.name")
        choose(self.split, ("train", "test") + (("all",) if self.name == "digits" else ()), f"data.split of {self.name}")
        choose(self.toy, TOY_SETS, "data.toy")
        _within(self, "size", 1, 4096)
        _within(self, "toy_size", 1, 10_000_000)
        _within(self, "length", 2, 65536)
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
        _within(self, "downsample", 1, 64)
        if self.low_res and not 2 <= self.low_res <= 64:
            raise ValueError(f"data.low_res must be 0 (no super-resolution) or a factor from 2 to 64, got {self.low_res}")
        if (self.downsample > 1 or self.low_res) and (self.name in ("toy", "text") or self.levels):
            raise ValueError("data.downsample and data.low_res change the resolution of images: they need image data "
                             "(digits, fashion_mnist, folder) without data.levels")
        choose(self.captions, ("", "seen"), "data.captions")
        if self.captions and (self.downsample > 1 or self.low_res):
            raise ValueError("captions describe full-resolution Fashion-MNIST images: data.captions does not combine with "
                             "data.downsample or data.low_res")
        if self.captions and (self.name != "fashion_mnist" or self.levels):
            raise ValueError("data.captions describes Fashion-MNIST images (class, shade, size): it needs "
                             "data.name = 'fashion_mnist' without data.levels")

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
        choose(self.kind, ("unet", "dit", "mlp", "transformer", "vae"), "model.kind")
        _within(self, "heads", 1, 256)
        if self.kind in ("transformer", "dit") and self.width % self.heads:
            raise ValueError(f"model.width ({self.width}) must be divisible by model.heads ({self.heads})")
        choose(self.time_embedding, ("sinusoidal", "fourier"), "model.time_embedding")
        _within(self, "channels", 1, 4096)
        _within(self, "num_res_blocks", 1, 64)
        _within(self, "width", 2, 65536)
        _within(self, "depth", 1, 256)
        _within(self, "patch_size", 1, 64)
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
        from .couplings import COUPLINGS
        from .losses import WEIGHTINGS
        from .targets import KINDS

        choose(self.coupling, COUPLINGS, "diffusion.coupling")
        if not 0 <= self.flow_sigma_min < 1:
            raise ValueError(f"diffusion.flow_sigma_min must be in [0, 1), got {self.flow_sigma_min}")
        if not self.coupling_reg > 0:
            raise ValueError(f"diffusion.coupling_reg must be > 0, got {self.coupling_reg}")
        choose(self.path, PATHS, "diffusion.path")
        choose(self.prediction, KINDS, "diffusion.prediction")
        choose(self.weighting, WEIGHTINGS, "diffusion.weighting")
        choose(self.time_sampler, ("default", "log_normal"), "diffusion.time_sampler")
        _within(self, "T", 1, 100_000)
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


@dataclass
class CascadeConfig:
    """A cascade (kind = "cascade"; Ho et al. 2021): requires.base draws low-resolution images, requires.super_resolution
    draws full-resolution images given them. The [sample] section is the super-resolution stage's."""

    base_sampler: str = ""  # the base stage's sampler (a spec); empty: the base run's own
    base_steps: int = 0  # 0: the base run's own
    low_res_noise: float = 0.0  # the augmentation level the base's samples are noised to before the second stage
    #                             (at most the super-resolution run's diffusion.low_res_noise; Ho et al.: 0.1-0.3 helps)

    def __post_init__(self):
        if self.base_sampler:
            from .sampling import parse_sampler_spec

            parse_sampler_spec(self.base_sampler)
        _within(self, "base_steps", 0, 100_000)
        if not 0 <= self.low_res_noise <= 1:
            raise ValueError(f"cascade.low_res_noise must lie in [0, 1] (a time on the path), got {self.low_res_noise}")


DISCRETE_PATHS = ("masked", "absorbing", "uniform", "multinomial", "gaussian")


@dataclass
class DiscreteConfig:
    """Categorical diffusion (kind = "discrete"): the path over the data's symbols, the loss, the sampler."""

    path: str = "masked"  # masked (continuous time) | absorbing | uniform | multinomial | gaussian (discretized, ordinal)
    steps: int = 1000  # T of the discrete-time paths
    schedule: str = ""  # linear | cosine | cosine2; empty: the path's own (masked, absorbing: linear; uniform: cosine; multinomial: cosine2);
    # gaussian: its beta schedule, linear (beta_min -> beta_max, the default) | mutual_information (beta_max its largest)
    loss: str = ""  # vb | hybrid | masked; empty: masked for the masked path, hybrid otherwise
    lam: float = 0.01  # the hybrid loss's weight of the cross-entropy (D3PM: 0.01 text, 0.001 images)
    beta_min: float = 0.02  # gaussian: its beta schedule's range
    beta_max: float = 1.0
    p_uncond: float = 0.0  # label dropout, for classifier-free guidance
    output: str = "logits"  # images: the network's p(x0 | x_t) per pixel, logits (K free numbers) | logistic (D3PM's
    #                         truncated discretized logistic, 2 numbers: for ordinal levels, e.g. with path = "gaussian")
    sampler: str = ""  # ancestral | masked (absorbing paths: MDLM's cache); empty: masked on absorbing paths, else ancestral
    sample_steps: int = 0  # 0: the path's T (1000 for the masked path)

    def __post_init__(self):
        from .discrete import GAUSSIAN_SCHEDULES, SAMPLERS, SCHEDULES
        from .nets.categorical import OUTPUTS
        from .objectives import CATEGORICAL_LOSSES

        choose(self.path, DISCRETE_PATHS, "discrete.path")
        _within(self, "steps", 1, 100_000)
        if self.schedule and self.path == "gaussian":
            choose(self.schedule, GAUSSIAN_SCHEDULES, "discrete.schedule of the gaussian path (its beta schedule)")
        elif self.schedule:
            if self.schedule in GAUSSIAN_SCHEDULES and self.schedule not in SCHEDULES:
                raise ValueError(f"discrete.schedule = {self.schedule!r} is a beta schedule of the gaussian path; the "
                                 f"{self.path} path takes one of {', '.join(SCHEDULES)} (on absorbing paths 'linear' "
                                 "is D3PM's mutual-information schedule)")
            choose(self.schedule, SCHEDULES, "discrete.schedule")
        choose(self.output, OUTPUTS, "discrete.output")
        if self.loss:
            choose(self.loss, CATEGORICAL_LOSSES, "discrete.loss")
        if self.loss == "masked" and self.path != "masked":
            raise ValueError(f"discrete.loss = 'masked' is the bound of the continuous-time masked path; with "
                             f"discrete.path = {self.path!r} use vb or hybrid")
        if self.path == "masked" and self.loss in ("vb", "hybrid"):
            raise ValueError("the masked path runs in continuous time: its loss is 'masked' (for D3PM's bound use "
                             "discrete.path = 'absorbing')")
        if not 0 <= self.lam < math.inf:
            raise ValueError(f"discrete.lam must be >= 0, got {self.lam}")
        if not 0 < self.beta_min <= self.beta_max <= 1e3:
            raise ValueError(f"need 0 < discrete.beta_min <= discrete.beta_max; got {self.beta_min}, {self.beta_max}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"discrete.p_uncond must lie in [0, 1) (0.1 is usual), got {self.p_uncond}")
        if self.sampler:
            choose(self.sampler, SAMPLERS, "discrete.sampler")
            if self.sampler == "masked" and self.path not in ("masked", "absorbing"):
                raise ValueError("discrete.sampler = 'masked' needs an absorbing path (masked or absorbing)")
        _within(self, "sample_steps", 0, 100_000)
        if self.path != "masked" and self.sample_steps > self.steps:
            raise ValueError(f"discrete.sample_steps ({self.sample_steps}) cannot exceed the path's steps ({self.steps})")

    @property
    def loss_name(self) -> str:
        return self.loss or ("masked" if self.path == "masked" else "hybrid")

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("masked" if self.path in ("masked", "absorbing") else "ancestral")


@dataclass
class AutoencoderConfig:
    """The KL-regularised autoencoder of an `autoencoder` run (the first stage of latent diffusion; its network
    is [model] with model.kind = "vae": channels, channel_mult (one level per halving of the side), num_res_blocks)."""

    latent_channels: int = 4
    kl_weight: float = 1e-4  # the KL's weight against the summed reconstruction error (objectives.AutoencoderObjective)
    reconstruction: str = "l2"  # l2 | l1

    def __post_init__(self):
        from .objectives import RECONSTRUCTION_LOSSES

        _within(self, "latent_channels", 1, 1024)
        choose(self.reconstruction, RECONSTRUCTION_LOSSES, "autoencoder.reconstruction")
        if not 0 <= self.kl_weight < math.inf:
            raise ValueError(f"autoencoder.kl_weight must be >= 0 and finite, got {self.kl_weight}")


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
    amp_cpu: bool = False  # bf16 mixed precision on CPU too: 1.7x faster where the CPU has native bf16 (AVX512-BF16, AMX)
    checkpoint_every: int = 1000
    keep_last: int = 3
    log_every: int = 50
    max_minutes: float = 0.0  # stop (with a checkpoint) after this much wall-clock training in all; 0 = no limit
    lr_decay: str = "none"  # none | cosine | linear: down to 0 at the end of the run (train.steps or max_minutes)
    decay_from: float = 0.0  # the fraction of the run where the decay starts (0.8: the last 20%)

    def __post_init__(self):
        _positive(self, "steps", "batch_size", "checkpoint_every", "keep_last", "log_every")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise ValueError(f"train.device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        choose(self.lr_decay, LR_DECAYS, "train.lr_decay")
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

    def __post_init__(self):
        from .samplers import SAMPLERS
        from .samplers.grids import GRIDS, grid_options
        from .sampling import about

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
        _positive(self, "steps", "n")


@dataclass
class Config:
    name: str = "run"
    kind: str = "diffusion"  # what the run holds: diffusion (a denoiser on a path; flows too; latent diffusion with
    #                          requires.autoencoder) | classifier (p_t(c | x_t)) | autoencoder | discrete | autoregressive
    #                          | cascade (names its stages: requires.base, requires.super_resolution; trains nothing)
    requires: dict = field(default_factory=dict)  # other runs this one is built on: role -> run folder
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    discrete: DiscreteConfig = field(default_factory=DiscreteConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self):
        from .runs import KINDS  # what a run can hold: difflab.runs builds and loads each

        choose(self.kind, KINDS, "kind")
        for role, where in self.requires.items():
            if not isinstance(where, str) or not where:
                raise ValueError(f"requires.{role} must name a run folder (a string), got {where!r}")
        if self.diffusion.p_uncond and not (self.kind == "diffusion" and (self.model.class_conditional or self.model.text_conditional)):
            raise ValueError("diffusion.p_uncond drops class labels in training: it needs a class-conditional diffusion "
                             "model (model.class_conditional = true), or a text-conditional one (model.text_conditional = true)")
        if self.model.text_conditional:
            if self.kind != "diffusion" or self.model.kind not in ("unet", "dit"):
                raise ValueError("model.text_conditional is for a diffusion run on images with model.kind = 'unet' or 'dit'")
            if not self.data.captions:
                raise ValueError("model.text_conditional = true needs captioned data: data.name = 'fashion_mnist' with "
                                 "data.captions = 'seen'")
        elif not self.model.text_tokens:
            raise ValueError("model.text_tokens = false says how a text-conditional model reads its caption: it needs "
                             "model.text_conditional = true")
        token_kind = self.kind in ("discrete", "autoregressive")
        if token_kind and not self.data.categorical:
            raise ValueError(f"a {self.kind} run models categorical data: use data.name = 'text', or quantize images or "
                             "toy points with data.levels (e.g. 4)")
        if self.data.categorical and not token_kind:
            raise ValueError(f"categorical data (data.name = {self.data.name!r}, data.levels = {self.data.levels}) need "
                             "kind = \"discrete\" (categorical diffusion) or \"autoregressive\"")
        if self.discrete.output == "logistic" and not (self.kind == "discrete" and self.model.kind in ("unet", "dit")):
            raise ValueError("discrete.output = 'logistic' is a discrete run's image network over ordinal levels: it needs "
                             "kind = \"discrete\" with model.kind = 'unet' or 'dit' (text has no order: keep 'logits')")
        if token_kind and self.model.kind == "mlp":
            raise ValueError("model.kind for categorical data: transformer (sequences, toy points), unet or dit (images)")
        if not token_kind and self.model.kind == "transformer":
            raise ValueError(f"model.kind = 'transformer' is the token network of discrete and autoregressive runs; a {self.kind} "
                             "run uses 'unet' or 'dit' (images) or 'mlp' (vectors)")
        if self.discrete.p_uncond and not (token_kind and self.model.class_conditional):
            raise ValueError("discrete.p_uncond drops class labels: it needs a class-conditional discrete or "
                             "autoregressive run (model.class_conditional = true)")
        if (self.kind == "autoencoder") != (self.model.kind == "vae"):
            raise ValueError("an autoencoder run (kind = \"autoencoder\") has model.kind = 'vae', and only it does"
                             if self.kind == "autoencoder" else
                             f"model.kind = 'vae' is the network of an autoencoder run (kind = \"autoencoder\"); a {self.kind} "
                             "run uses 'unet' or 'dit' (latent diffusion names its autoencoder run in requires.autoencoder)")
        if self.kind == "autoencoder" and (self.data.categorical or self.data.captions or self.data.name == "toy"):
            raise ValueError("an autoencoder run encodes images: use data.name = digits, fashion_mnist or folder, "
                             "without data.levels or data.captions")
        if "autoencoder" in self.requires and self.kind != "diffusion":
            raise ValueError(f"requires.autoencoder makes a latent diffusion run (kind = \"diffusion\"); a {self.kind} run "
                             "does not take one")
        if self.data.low_res and self.kind != "diffusion":
            raise ValueError(f"data.low_res makes super-resolution data for a diffusion run; a {self.kind} run does not take it")
        if self.diffusion.low_res_noise and not self.data.low_res:
            raise ValueError("diffusion.low_res_noise augments a super-resolution run's low-resolution input: it needs data.low_res")
        if self.data.low_res and "autoencoder" in self.requires:
            raise ValueError("a super-resolution run works on pixels: data.low_res does not combine with requires.autoencoder")
        if self.kind == "classifier" and self.model.class_conditional:
            raise ValueError("a classifier run predicts the class: model.class_conditional does not apply to it")
        if self.kind == "diffusion":
            from .losses import check_weighting

            path = build_path(self.diffusion)
            try:
                check_weighting(self.diffusion.weighting, path, build_time_sampler(self.diffusion, path))
            except ValueError as e:
                raise ValueError(f"diffusion.weighting = {self.diffusion.weighting!r} with diffusion.path = "
                                 f"{self.diffusion.path!r}: {e}") from None
        if self.data.source:
            path = build_path(self.diffusion)
            a1, s1 = float(path.alpha(1.0)), float(path.sigma(1.0))
            if abs(a1) > 1e-6 or abs(s1 - 1) > 1e-6:
                raise ValueError(f"data.source needs a path that reaches the source itself at t = 1 (alpha(1) = 0, "
                                 f"sigma(1) = 1); diffusion.path = {self.diffusion.path!r} has alpha(1) = {a1:.3g}, "
                                 f"sigma(1) = {s1:.3g}. Use 'linear' (flow matching) or 'cosine'")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _within(obj, name: str, low, high):
    value = getattr(obj, name)
    if not low <= value <= high:
        section = type(obj).__name__.removesuffix("Config").lower()
        bound = f">= {low}" if value < low else f"<= {high}"
        raise ValueError(f"{section}.{name} must be {bound} (from {low} to {high}), got {value}")


def _positive(obj, *names):
    for n in names:
        if getattr(obj, n) < 1:
            raise ValueError(f"{type(obj).__name__.removesuffix('Config').lower()}.{n} must be >= 1, got {getattr(obj, n)}")


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


# -- builders (names become objects here, and only here) -----------------------------------------

def build_path(cfg: DiffusionConfig):
    from . import paths

    makers = {
        "ddpm_linear": lambda: paths.DiscreteVP.linear(cfg.T),
        "ddpm_cosine": lambda: paths.DiscreteVP.cosine(cfg.T),
        "ve": lambda: paths.VE(cfg.sigma_min, cfg.sigma_max),
        "ncsn": lambda: paths.DiscreteVE.geometric(cfg.T, cfg.sigma_min, cfg.sigma_max),
        "linear": lambda: paths.Linear(cfg.flow_sigma_min),
        "vp": paths.VP, "subvp": paths.SubVP, "cosine": paths.Cosine,
    }
    return makers[cfg.path]()


def build_time_sampler(cfg: DiffusionConfig, path):
    from . import losses

    if cfg.time_sampler == "log_normal":
        return losses.LogNormal(path)
    if path.discrete:
        return losses.UniformDiscrete(path.T)
    return losses.Uniform(cfg.t_min)


def build_source(cfg: DataConfig):
    """The flow's source at t = 1 when it is a data set (an object with `sample(n, generator)` and,
    where known, `log_prob`), or None for the path's own Gaussian prior."""
    from .data import toy_density

    return toy_density(cfg.source) if cfg.source else None


def build_data(cfg: DataConfig, split: str | None = None):
    """The configured data set; `split` picks another split of it (e.g. "test") without touching `cfg`."""
    from . import data

    if split is not None:
        cfg = dataclasses.replace(cfg, split=split)

    if cfg.name == "text":
        from .data import categorical

        return categorical.text(cfg.text, cfg.length, cfg.split)
    if cfg.levels:
        return _quantized(dataclasses.replace(cfg, levels=0), cfg.levels)
    if cfg.downsample > 1 or cfg.low_res:
        return _resized(cfg)
    if cfg.name == "digits":
        return data.digits(cfg.split)
    if cfg.name == "fashion_mnist":
        images = data.fashion_mnist(cfg.split, **({"root": cfg.root} if cfg.root else {}))
        if cfg.captions:
            from .data.captions import captioned

            return captioned(images, split=cfg.captions)
        return images
    if cfg.name == "folder":
        if not cfg.root:
            raise ValueError("data.root must name the image folder when data.name = 'folder'")
        return data.image_folder(cfg.root, cfg.size, cfg.channels)
    import torch

    return data.TensorData(data.toy(cfg.toy, cfg.toy_size, torch.Generator().manual_seed(12345)), name=f"toy:{cfg.toy}")


def _resized(cfg: DataConfig):
    """The configured images averaged over data.downsample blocks, and with data.low_res their low-resolution
    versions as a condition (`data.LowResImages`)."""
    from .data import ImageData, LowResImages, downsample

    raw = build_data(dataclasses.replace(cfg, downsample=1, low_res=0))
    images, name = raw.images, raw.name
    if cfg.downsample > 1:
        try:
            images = downsample(images, cfg.downsample)
        except ValueError as e:
            raise ValueError(f"data.downsample = {cfg.downsample}: {e}") from None
        name = f"{name} at 1/{cfg.downsample}"
    if cfg.low_res:
        try:
            return LowResImages(images, raw.labels, f"{name} with 1/{cfg.low_res} low-res", raw.class_names, factor=cfg.low_res)
        except ValueError as e:
            raise ValueError(f"data.low_res = {cfg.low_res}: {e}") from None
    return ImageData(images, raw.labels, name, raw.class_names)


TOY_RANGE = (-3.0, 3.0)  # the window toy points are quantized in (the swiss roll spans about +-2.8)


def _quantized(cfg: DataConfig, levels: int):
    """The configured images or toy points quantized to `levels` levels (categorical tokens)."""
    from .data.categorical import TokenData, quantize

    raw = build_data(cfg)
    low, high = TOY_RANGE if cfg.name == "toy" else (-1.0, 1.0)
    return TokenData(quantize(raw.images, levels, low, high), raw.labels, name=f"{raw.name}:{levels}-levels",
                     class_names=raw.class_names, num_symbols=levels)


def _check_images(cfg: ModelConfig, data_shape: tuple, other: str) -> None:
    """A U-Net or a DiT needs images (C, H, W) whose sides its patch size (and the U-Net's levels) divide;
    `other` names the network kind to use for other data."""
    if len(data_shape) != 3:
        raise ValueError(f"model.kind = {cfg.kind!r} is for images (C, H, W); this data has shape {data_shape} (use '{other}')")
    if cfg.kind == "dit":
        if data_shape[1] % cfg.patch_size or data_shape[2] % cfg.patch_size:
            raise ValueError(f"images of {data_shape[1]}x{data_shape[2]} need sides divisible by model.patch_size "
                             f"({cfg.patch_size}), the DiT's patches")
        return
    f = cfg.patch_size * 2 ** (len(cfg.channel_mult) - 1)
    if data_shape[1] % f or data_shape[2] % f:
        raise ValueError(f"images of {data_shape[1]}x{data_shape[2]} need sides divisible by model.patch_size x "
                         f"2^(levels - 1) = {cfg.patch_size} x {2 ** (len(cfg.channel_mult) - 1)} = {f}; "
                         f"use fewer levels in model.channel_mult or a smaller model.patch_size")


def build_classifier(cfg: ModelConfig, data_shape: tuple, num_classes: int | None):
    """The noise-conditional classifier a `classifier` run trains: the [model] section's U-Net encoder for
    images, its MLP (with class logits as outputs) for vectors."""
    from . import nets

    if not num_classes:
        raise ValueError("a classifier run needs labelled data (digits, fashion_mnist, a folder with class sub-folders)")
    if cfg.kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"model.kind = 'mlp' is for vector data; this data has shape {data_shape} (use 'unet')")
        return nets.MLP(data_shape[0], cfg.width, cfg.depth, cfg.time_embedding, None, out_dim=num_classes)
    if cfg.kind != "unet":
        raise ValueError(f"a classifier run's network is the U-Net encoder (images) or the MLP (vectors); model.kind = "
                         f"{cfg.kind!r} is not available for it")
    _check_images(cfg, data_shape, "mlp")
    return nets.NoisyClassifier(data_shape[0], num_classes, cfg.channels, cfg.channel_mult, cfg.num_res_blocks,
                                cfg.attention_levels, cfg.dropout, cfg.time_embedding, cfg.patch_size)


def build_model(cfg: ModelConfig, data_shape: tuple, num_classes: int | None, text_dim: int | None = None,
                low_res_channels: int = 0):
    """The denoising network; `text_dim` is the width of the caption embeddings of a text-conditional model,
    `low_res_channels` the channels of a super-resolution model's low-resolution input."""
    from . import nets

    if cfg.text_conditional and not text_dim:
        raise ValueError("model.text_conditional = true needs captioned data (data.captions = 'seen')")
    text = {"pooled_dim": text_dim, **({"context_dim": text_dim} if cfg.text_tokens else {})} if cfg.text_conditional else {}
    if low_res_channels:
        text["low_res_channels"] = int(low_res_channels)
    classes = num_classes if cfg.class_conditional else None
    if cfg.class_conditional and not num_classes:
        raise ValueError("model.class_conditional = true needs labelled data")
    if cfg.kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"model.kind = 'mlp' is for vector data; this data has shape {data_shape} (use 'unet')")
        if low_res_channels:
            raise ValueError("a super-resolution model (data.low_res) needs model.kind = 'unet' or 'dit'")
        return nets.MLP(data_shape[0], cfg.width, cfg.depth, cfg.time_embedding, classes)
    _check_images(cfg, data_shape, "mlp")
    if cfg.kind == "dit":
        return nets.DiT(data_shape[0], cfg.patch_size, cfg.width, cfg.depth, cfg.heads, classes, cfg.time_embedding,
                        dropout=cfg.dropout, **text)
    if cfg.kind == "transformer":
        raise ValueError("model.kind = 'transformer' is the token transformer of discrete and autoregressive runs; "
                         "for images use 'dit' (or 'unet')")
    return nets.UNet(data_shape[0], cfg.channels, cfg.channel_mult, cfg.num_res_blocks, cfg.attention_levels,
                     cfg.dropout, classes, cfg.time_embedding, patch_size=cfg.patch_size, **text)


def build_categorical_path(cfg: DiscreteConfig, num_symbols: int):
    """The categorical path of a discrete run over the data's `num_symbols` symbols."""
    from . import discrete

    sched = {"schedule": cfg.schedule} if cfg.schedule else {}
    makers = {
        "masked": lambda: discrete.Masked(num_symbols, **sched),
        "absorbing": lambda: discrete.Absorbing(num_symbols, steps=cfg.steps, **sched),
        "uniform": lambda: discrete.Uniform(num_symbols, steps=cfg.steps, **sched),
        "multinomial": lambda: discrete.Multinomial(num_symbols, steps=cfg.steps, **sched),
        "gaussian": lambda: discrete.DiscretizedGaussian(num_symbols, steps=cfg.steps, beta_min=cfg.beta_min, beta_max=cfg.beta_max,
                                                         **sched),
    }
    return makers[cfg.path]()


def build_token_network(cfg: ModelConfig, data_shape: tuple, num_states: int, num_outputs: int, num_classes: int | None,
                        *, causal: bool = False, output: str = "logits"):
    """The network of a discrete or autoregressive run: logits over `num_outputs` symbols per position, from
    tokens of `num_states` states; a transformer over the positions, or the U-Net for images (C, H, W), whose
    `output` is free logits or D3PM's discretized logistic (`nets.categorical`)."""
    from . import nets

    classes = num_classes if cfg.class_conditional else None
    if cfg.class_conditional and not num_classes:
        raise ValueError("model.class_conditional = true needs labelled data")
    if cfg.kind == "transformer":
        positions = math.prod(data_shape)
        if positions > 4096:
            raise ValueError(f"a transformer over {positions} positions is too slow here; use model.kind = 'unet' for images")
        return nets.TokenTransformer(num_states, num_outputs, positions, cfg.width, cfg.depth, cfg.heads, classes,
                                     time_conditioning=not causal, causal=causal, dropout=cfg.dropout,
                                     time_embedding_kind=cfg.time_embedding)
    if causal:
        raise ValueError("an autoregressive run needs model.kind = 'transformer'")
    _check_images(cfg, data_shape, "transformer")
    if cfg.kind == "dit":
        return nets.CategoricalDiT(data_shape[0], num_states, num_outputs, output, patch_size=cfg.patch_size, width=cfg.width,
                                   depth=cfg.depth, heads=cfg.heads, num_classes=classes, time_embedding_kind=cfg.time_embedding,
                                   dropout=cfg.dropout)
    return nets.CategoricalUNet(data_shape[0], num_states, num_outputs, output, channels=cfg.channels, channel_mult=cfg.channel_mult,
                                num_res_blocks=cfg.num_res_blocks, attention_levels=cfg.attention_levels, dropout=cfg.dropout,
                                num_classes=classes, time_embedding_kind=cfg.time_embedding, patch_size=cfg.patch_size)
