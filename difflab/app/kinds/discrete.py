"""kind = "discrete": categorical diffusion over the data's K symbols (text, or images and toy points quantized to
data.levels), its path, loss and sampler named in the [discrete] section (uniform, absorbing / masked,
multinomial, discretized Gaussian; the D3PM bound, hybrid, or the masked-diffusion bound), trained against
`objectives.CategoricalObjective`. `Tokens` holds what it shares with the autoregressive reference (sampling
integer tokens, what they stand for, bits per symbol).

`dl.load` gives (categorical denoiser `(x_t, t, **cond) -> p(x0 given x_t)`, categorical path, config).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..._checks import choose
from ..build import build_categorical_path, build_token_network
from ..outputs import Samples
from ..requests import labels_for
from ..schema import within
from .base import Kind

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
        from ...discrete import GAUSSIAN_SCHEDULES, SAMPLERS, SCHEDULES
        from ...nets.categorical import OUTPUTS
        from ...objectives import CATEGORICAL_LOSSES

        choose(self.path, DISCRETE_PATHS, "discrete.path")
        within(self, "steps", 1, 100_000)
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
        within(self, "sample_steps", 0, 100_000)
        if self.path != "masked" and self.sample_steps > self.steps:
            raise ValueError(f"discrete.sample_steps ({self.sample_steps}) cannot exceed the path's steps ({self.steps})")

    @property
    def loss_name(self) -> str:
        return self.loss or ("masked" if self.path == "masked" else "hybrid")

    @property
    def sampler_name(self) -> str:
        return self.sampler or ("masked" if self.path in ("masked", "absorbing") else "ancestral")


def symbols(facts: dict) -> int:
    """The number of symbols of a categorical run's data."""
    if not facts.get("symbols"):
        raise ValueError("the data record holds no number of symbols: this run's data are not categorical")
    return int(facts["symbols"])


class Tokens(Kind):
    """What runs over integer tokens share: their forms, labels, guidance, what tokens stand for, bits per symbol."""

    categorical = True
    networks = ("transformer", "unet", "dit")
    owns = {"discrete.p_uncond": "discrete.p_uncond drops class labels: it needs a class-conditional discrete or "
                                 "autoregressive run (model.class_conditional = true)"}
    sample_options = frozenset({"sampler", "steps", "label", "scale"})
    eval_options = frozenset({"nll", "split", "elbo_terms"})

    def check(self, cfg) -> None:
        if cfg.discrete.p_uncond and not cfg.model.class_conditional:
            raise ValueError(self.owns["discrete.p_uncond"])

    def form(self, run) -> str:
        shape = tuple(run.facts["shape"])
        return "text" if run.facts.get("alphabet") else "images" if len(shape) == 3 else "points" if shape == (2,) else "vectors"

    def _labels(self, run, label, n):
        if not run.config.model.class_conditional:
            if label is not None:
                raise ValueError(f"{run} is an unconditional model (model.class_conditional = false): --label does not apply")
            return None
        return labels_for(label, n, run.facts.get("num_classes") or 0, run.facts.get("class_names") or ())

    def check_sample(self, run, request) -> None:
        self._labels(run, request.label, request.n)
        if request.guidance.scale is not None and not (run.config.model.class_conditional and run.config.discrete.p_uncond):
            raise ValueError(f"classifier-free guidance needs a class-conditional run trained with label dropout "
                             f"(model.class_conditional = true, discrete.p_uncond = 0.1); {run} is not one")
        from ..requests import check_fits

        check_fits(request.n, 3 * math.prod(run.facts["shape"]))

    def values(self, run, tokens: torch.Tensor):
        """What sampled tokens stand for: a list of strings (text), images in [-1, 1] (quantized images) or points
        (quantized toy points)."""
        from ...data.categorical import decode, dequantize
        from ..build import TOY_RANGE

        if run.facts.get("alphabet"):
            return [decode(t) for t in tokens.reshape(tokens.shape[0], -1)]
        low, high = TOY_RANGE if run.config.data.name == "toy" else (-1.0, 1.0)
        return dequantize(tokens, symbols(run.facts), low, high)

    def sample(self, run, request) -> Samples:
        labels = self._labels(run, request.label, request.n)
        tokens, how = self.tokens(run, request.n, sampler=request.sampler, steps=request.steps, labels=labels,
                                  guidance=request.guidance.scale, seed=request.seed, batch_size=request.batch,
                                  device=request.device, progress=request.progress and request.n > request.batch)
        values = self.values(run, tokens)
        arrays = {"tokens": tokens, **({"labels": labels} if labels is not None else {})}
        nrow = run.facts.get("num_classes") if labels is not None and request.label is None else None
        return Samples(self.form(run), values, arrays, nrow=nrow, preview=values[:8] if isinstance(values, list) else [],
                       summary=f"{request.n} samples, {how['sampler']} with {how['steps']} steps, {how['nfe']} network "
                               "evaluations per sample")

    def check_eval(self, run, request) -> None:
        from ..evaluate import check_split

        if not request.nll:
            raise ValueError("say what to measure: --nll (bits per symbol on held-out data)")
        check_split(run.config.data, request.split or "test")

    def evaluate(self, run, request) -> list:
        from ..evaluate import write_report

        res = self.bits_per_symbol(run, split=request.split or "test", n=request.n, repeats=request.elbo_terms or 4,
                                   batch_size=min(request.batch, 256), seed=request.seed, device=request.device)
        write_report(run, "bits per symbol", res, request.command)
        return [run.folder / "eval.md"]

    def nats(self, run, model, path, x, generator, repeats, **cond) -> torch.Tensor:
        """Per-example nats of held-out tokens `x` (an estimate of the bound, or the exact NLL)."""
        raise NotImplementedError

    def bits_per_symbol(self, run, *, split: str = "test", n: int | None = None, repeats: int = 4, batch_size: int = 256,
                        seed: int = 0, device="cpu", progress: bool = True) -> dict:
        """Bits per symbol on held-out data (`nats` per example over its symbols)."""
        from ..._random import derive_seed
        from ..evaluate import held_out_tokens, mean_se

        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        model, path, cfg = self.load(run, device=device)
        x, labels = held_out_tokens(run, split, n, seed)
        positions = int(x[0].numel())
        g = torch.Generator().manual_seed(derive_seed(seed, "discrete-nll"))
        per_example, started = [], time.perf_counter()
        starts = range(0, len(x), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="bits per symbol", unit="batch")
        with torch.no_grad():
            for i in starts:
                xb = x[i:i + batch_size].to(device)
                cond = {"label": labels[i:i + batch_size].to(device)} if cfg.model.class_conditional and labels is not None else {}
                per_example.append(self.nats(run, model, path, xb, g, repeats, **cond).double().cpu())
        mean, se = mean_se(torch.cat(per_example))
        bits = 1 / (positions * math.log(2))
        exact = self.exact_likelihood
        return {"bits_per_symbol": mean * bits, "bits_per_symbol_se": se * bits, "nats_per_example": mean, "n": len(x),
                "split": split if cfg.data.name != "toy" else "fresh points", "positions": positions, "bound": not exact,
                "repeats": 1 if exact else repeats, "seconds": round(time.perf_counter() - started, 1)}

    exact_likelihood = False


class Discrete(Tokens):
    name = "discrete"
    about = "categorical diffusion over symbols: text, quantized images or points"
    sections = {"discrete": DiscreteConfig}
    owns = {**Tokens.owns,
            "discrete.output": "discrete.output = 'logistic' is a discrete run's image network over ordinal levels: it needs "
                               "kind = \"discrete\" with model.kind = 'unet' or 'dit' (text has no order: keep 'logits')"}
    eval_options = frozenset({"nll", "split", "elbo_terms"})

    def check(self, cfg) -> None:
        super().check(cfg)
        if cfg.discrete.output == "logistic" and cfg.model.kind not in ("unet", "dit"):
            raise ValueError(self.owns["discrete.output"])

    def network(self, cfg, facts: dict):
        path = build_categorical_path(cfg.discrete, symbols(facts))
        return build_token_network(cfg.model, tuple(facts["shape"]), path.num_states, path.num_classes, facts.get("num_classes"),
                                   output=cfg.discrete.output)

    def objective(self, cfg, data, requires=None):
        from ...objectives import CategoricalObjective

        d = cfg.discrete
        return CategoricalObjective(build_categorical_path(d, data.num_symbols), loss=d.loss_name, lam=d.lam,
                                    conditions=("label",) if cfg.model.class_conditional else (), p_uncond=d.p_uncond)

    def load(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        from ...discrete import as_denoiser

        return (as_denoiser(run.network(ema=ema, device=device)), build_categorical_path(run.config.discrete, symbols(run.facts)),
                run.config)

    def check_sample(self, run, request) -> None:
        from ...discrete import SAMPLERS

        super().check_sample(run, request)
        d = run.config.discrete
        name = request.sampler or d.sampler_name
        choose(name, SAMPLERS, "discrete sampler")
        if name == "masked" and d.path not in ("masked", "absorbing"):
            raise ValueError("the masked sampler needs an absorbing path (masked or absorbing)")
        path = build_categorical_path(d, symbols(run.facts))
        path.times(request.steps or d.sample_steps or path.steps or 1000)  # more steps than a discrete-time path has: refused

    def tokens(self, run, n: int, *, sampler=None, steps=None, labels=None, guidance=None, seed: int = 0,
               batch_size: int = 500, device="cpu", progress: bool = False):
        """n samples (integer tokens), example i from its own generator: (tokens, {"nfe", "sampler", "steps"}); the
        run's [discrete] sampler and sample_steps unless `sampler` / `steps` say otherwise; `guidance` is the
        classifier-free scale w."""
        from ... import discrete

        model, path, cfg = self.load(run, device=device)
        d = cfg.discrete
        name = sampler or d.sampler_name
        count = steps or d.sample_steps or path.steps or 1000
        if guidance is not None:
            model = discrete.classifier_free(model, guidance)
        with torch.no_grad():
            tokens, out = discrete.sample_batched(model, path, n, tuple(run.facts["shape"]), seed=seed, batch_size=batch_size,
                                                  cond={"label": labels} if labels is not None else None, device=device,
                                                  progress=progress, steps=count, sampler=name)
        return tokens, {"nfe": out.get("nfe"), "sampler": name, "steps": count}

    def nats(self, run, model, path, x, generator, repeats, **cond) -> torch.Tensor:
        from ... import discrete

        loss = discrete.masked_loss if run.config.discrete.loss_name == "masked" else discrete.vb_loss
        return torch.stack([loss(model, path, x, generator=generator, **cond) for _ in range(repeats)]).double().mean(0)

    def describe(self, run) -> list[tuple[str, str]]:
        d = run.config.discrete
        steps = "continuous time" if d.path == "masked" else f"T = {d.steps}"
        return [("discrete", f"{d.path} path ({steps}), {d.loss_name} loss, samples with {d.sampler_name}")]


KIND = Discrete()
