"""kind = "diffusion": a network trained as a denoiser on a Gaussian path (`objectives.DiffusionObjective`: every
path, prediction and weighting; flow matching with couplings and data-set sources; label dropout), over pixels or,
with requires.autoencoder, over an autoencoder's scaled latents (`app.latents`); class-, text- (captions, encoded
by the run's sentence encoder) or low-resolution-conditioned (super-resolution, the second stage of a cascade).

`dl.load` gives (denoiser, path, config): the denoiser clipped to the data's range for images, a
`latent.LatentDenoiser` (its `decode` gives images) for latents. `difflab sample` draws with any sampler, guided
(`load_guided`: classifier-free, classifier, interval, negative class, rescale, dynamic thresholding); `eval`
measures the probability-flow likelihood, the ELBO and sample metrics; `bench samplers` compares samplers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ... import sampling
from ..build import (build_data, build_model, build_path, build_source, build_time_sampler, data_record, source_sample)
from ..folders import say
from ..outputs import Samples
from ..requests import check_fits, labels_for
from ..sampler_choice import settle
from .base import Kind, a

TEXT_FIELDS = ("context", "context_mask", "pooled")  # a caption's conditioning, as the batch and the networks name it


def text_fields(cfg) -> tuple[str, ...]:
    """The caption fields a run's network reads: the token states and the sentence embedding, or (model.text_tokens =
    false) the sentence embedding alone; none for a model without text."""
    if not cfg.model.text_conditional:
        return ()
    return TEXT_FIELDS if cfg.model.text_tokens else ("pooled",)


def _stated_accuracy(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """The share of `got == want` among the examples whose `want` is stated (>= 0); None when none is."""
    stated = want >= 0
    return float((got[stated] == want[stated]).double().mean()) if stated.any() else None


def _conditions(cfg) -> tuple[str, ...]:
    return (("label",) if cfg.model.class_conditional else ()) + text_fields(cfg) + (("low_res",) if cfg.data.low_res else ())


def _data_identity(run) -> dict:
    """What a classifier must have seen to guide a run: the same data set (any split), shape and classes."""
    d = run.config.data
    return {"data": d.name, "root": d.root, "toy": d.toy if d.name == "toy" else None, "shape": tuple(run.facts["shape"]),
            "classes": tuple(run.facts.get("class_names") or ())}


def _path_identity(cfg) -> dict:
    d = cfg.diffusion
    return {"path": d.path, "T": d.T, "sigma_min": d.sigma_min, "sigma_max": d.sigma_max, "flow_sigma_min": d.flow_sigma_min}


class Diffusion(Kind):
    name = "diffusion"
    about = "a denoiser on a Gaussian path (pixels or an autoencoder's latents; class-, text- or low-resolution-conditioned)"
    networks = ("unet", "dit", "mlp")
    optional = {"autoencoder": "autoencoder"}
    diffusion_model = True
    owns = {
        "diffusion.p_uncond": "diffusion.p_uncond drops class labels in training: it needs a class-conditional diffusion "
                              "model (model.class_conditional = true), or a text-conditional one (model.text_conditional = true)",
        "model.text_conditional": "model.text_conditional is for a diffusion run on images with model.kind = 'unet' or 'dit'",
        "data.low_res": "data.low_res makes super-resolution data for a diffusion run; a {kind} run does not take it",
        "diffusion.low_res_noise": "diffusion.low_res_noise augments a super-resolution run's low-resolution input: it needs "
                                   "data.low_res",
        "requires.autoencoder": "requires.autoencoder makes a latent diffusion run (kind = \"diffusion\"); a {kind} run does "
                                "not take one",
        "data.source": "data.source (a toy set the flow starts from) is for diffusion runs; a {kind} run does not take it",
    }
    sample_options = frozenset({"sampler", "steps", "grid", "nfe", "label", "prompts", "scale", "classifier", "interval", "negative",
                                "rescale", "threshold"})
    eval_options = frozenset({"nll", "elbo", "metrics", "sampler", "steps", "grid", "nfe", "split", "method", "probes", "rtol", "atol",
                              "elbo_terms", "scales", "classifier", "interval", "negative", "rescale"})
    restore_options = frozenset({"box", "scale", "jump", "resamples", "sampler", "steps", "grid", "label", "prompts"})
    edit_options = frozenset({"sampler", "steps", "grid", "label", "prompts"})

    # -- configuration and training --------------------------------------------------------------

    def check(self, cfg) -> None:
        from ...losses import check_weighting

        m, d = cfg.model, cfg.diffusion
        if d.p_uncond and not (m.class_conditional or m.text_conditional):
            raise ValueError(self.owns["diffusion.p_uncond"])
        if m.text_conditional:
            if m.kind not in ("unet", "dit"):
                raise ValueError(self.owns["model.text_conditional"])
            if not cfg.data.captions:
                raise ValueError("model.text_conditional = true needs captioned data: data.name = 'fashion_mnist' with "
                                 "data.captions = 'seen'")
        if d.low_res_noise and not cfg.data.low_res:
            raise ValueError(self.owns["diffusion.low_res_noise"])
        if cfg.data.low_res and "autoencoder" in cfg.requires:
            raise ValueError("a super-resolution run works on pixels: data.low_res does not combine with requires.autoencoder")
        path = build_path(d)
        try:
            check_weighting(d.weighting, path, build_time_sampler(d, path))
        except ValueError as e:
            raise ValueError(f"diffusion.weighting = {d.weighting!r} with diffusion.path = {d.path!r}: {e}") from None
        if cfg.data.source:
            a1, s1 = float(path.alpha(1.0)), float(path.sigma(1.0))
            if abs(a1) > 1e-6 or abs(s1 - 1) > 1e-6:
                raise ValueError(f"data.source needs a path that reaches the source itself at t = 1 (alpha(1) = 0, "
                                 f"sigma(1) = 1); diffusion.path = {d.path!r} has alpha(1) = {a1:.3g}, sigma(1) = {s1:.3g}. "
                                 "Use 'linear' (flow matching) or 'cosine'")

    def network(self, cfg, facts: dict):
        low_res = (facts.get("low_res") or {}).get("shape")
        return build_model(cfg.model, tuple(facts["shape"]), facts.get("num_classes"), (facts.get("captions") or {}).get("dim"),
                           low_res[0] if low_res else 0)

    def objective(self, cfg, data, requires=None):
        from ...objectives import DiffusionObjective

        d = cfg.diffusion
        path = build_path(d)
        source = build_source(cfg.data)
        if source is not None and tuple(source.sample(1).shape[1:]) != tuple(data.shape):
            raise ValueError(f"data.source {cfg.data.source!r} has shape {tuple(source.sample(1).shape[1:])} per example; "
                             f"the data have {tuple(data.shape)}")
        null = None  # a text model's dropout replaces the caption by the empty caption (and a label, if any, by -1)
        if cfg.model.text_conditional:
            null = {**{k: v for k, v in data.null.items() if k in text_fields(cfg)},
                    **({"label": -1} if cfg.model.class_conditional else {})}
        return DiffusionObjective(path, prediction=d.prediction, weighting=d.weighting, snr_gamma=d.snr_gamma,
                                  time_sampler=build_time_sampler(d, path), source=source, coupling=d.coupling,
                                  coupling_reg=d.coupling_reg, conditions=_conditions(cfg), p_uncond=d.p_uncond, null=null,
                                  low_res_noise=d.low_res_noise)

    def plan(self, cfg, data, requires: dict, resuming) -> dict:
        if "autoencoder" in requires:
            from ..latents import plan

            return plan(data, requires["autoencoder"], resuming)
        return data_record(data)

    def training_data(self, cfg, data, requires: dict):
        if "autoencoder" in requires:
            from ..latents import latent_data

            return latent_data(data, requires["autoencoder"])
        return data

    # -- loading ---------------------------------------------------------------------------------

    def load(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        """(denoiser, path, config); the denoiser clipped to the data's range [-1, 1] for images unless `clip=False`
        (likelihoods need the smooth denoiser: clipping zeroes its Jacobian), with `decode` for latents."""
        den, path = self.raw_denoiser(run, ema=ema, device=device, clip=clip)
        return self.with_decoder(run, den, device), path, run.config

    def raw_denoiser(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        """(denoiser, path) of the run's network, over what it was trained on (latents stay latents)."""
        from ...denoisers import as_denoiser, clipped

        path = build_path(run.config.diffusion)
        den = as_denoiser(run.network(ema=ema, device=device), path, run.config.diffusion.prediction)
        if run.facts.get("range") and clip:  # images live in [-1, 1], and so does E[x0 | x_t]
            den = clipped(den, *run.facts["range"])
        return den, path

    def with_decoder(self, run, den, device):
        if not run.facts.get("latent"):
            return den
        from ...latent import LatentDenoiser
        from ..latents import latent_of

        return LatentDenoiser(den, latent_of(run, device))

    def check_guidance(self, run, scale=None, classifier=None, interval=None, negative=None, rescale=0.0, threshold=None):
        """Refuse guidance this run cannot take (the classifier run opened and checked); returns it or None."""
        cfg = run.config
        if threshold is not None and not run.facts.get("range"):
            raise ValueError("dynamic thresholding keeps pixel values in [-1, 1]: it applies to image runs only")
        if scale is None:
            if classifier is not None or interval is not None or negative is not None or rescale:
                raise ValueError("--classifier, --guidance-interval, --negative-label and --guidance-rescale shape guidance: "
                                 "give its scale with --guidance W")
            return None
        if classifier is not None:
            if run.facts.get("latent"):
                raise ValueError(f"{run} samples latents; a classifier run judges images, so it cannot guide it (train the "
                                 "latent run class-conditional with diffusion.p_uncond = 0.1 for classifier-free guidance)")
            if negative is not None or rescale:
                raise ValueError("--negative-label and --guidance-rescale are options of classifier-free guidance, not of "
                                 "--classifier")
            clf = run.open_other(classifier)
            if not clf.kind.guides:
                raise ValueError(f"--classifier {classifier} is {a(clf.config.kind)} run; train one with kind = \"classifier\"")
            if _path_identity(clf.config) != _path_identity(cfg):
                raise ValueError(f"the classifier {classifier} was trained on the path {_path_identity(clf.config)}, this run "
                                 f"on {_path_identity(cfg)}: its p_t(c | x_t) is for other noise levels")
            if _data_identity(clf) != _data_identity(run):
                raise ValueError(f"the classifier {classifier} was trained on {clf.facts.get('name')} "
                                 f"({tuple(clf.facts['shape'])}), this run on {run.facts.get('name')} "
                                 f"({tuple(run.facts['shape'])}): it saw other data; train a classifier on this run's data")
            return clf
        if not (cfg.model.class_conditional or cfg.model.text_conditional):
            raise ValueError(f"{run} is unconditional: classifier-free guidance needs a class-conditional run trained "
                             "with label dropout; for this run give a classifier with --classifier CLF_RUN")
        if not cfg.diffusion.p_uncond:
            raise ValueError(f"{run} was trained without label dropout (diffusion.p_uncond = 0), so its unconditional "
                             "pass never learned anything: train with diffusion.p_uncond = 0.1 for classifier-free guidance")
        if negative is not None and not cfg.model.class_conditional:
            raise ValueError("--negative-label needs a class-conditional run")
        if negative is not None and not 0 <= negative < (run.facts.get("num_classes") or 0):
            raise ValueError(f"--negative-label {negative} is not a class of this run")
        return None

    def load_guided(self, run, *, scale=None, classifier=None, interval=None, negative=None, rescale=0.0, threshold=None,
                    device="cpu"):
        """(denoiser, path, config) with the guidance asked for (`difflab.guidance`), clipped to the data's range like
        `load`'s: `scale` alone is classifier-free guidance (towards `label=`, away from the null label or class
        `negative`), with `classifier` (a classifier run on the same path and data) classifier guidance; `interval`
        guides only where sigma/alpha lies in it, `rescale` is Lin et al.'s phi, `threshold` Imagen's dynamic
        thresholding. With neither `scale` nor `threshold` it is `load`."""
        from ... import guidance
        from ...denoisers import clipped

        clf = self.check_guidance(run, scale, classifier, interval, negative, rescale, threshold)
        if scale is None and threshold is None:
            return self.load(run, device=device)
        cfg = run.config
        den, path = self.raw_denoiser(run, device=device, clip=False)  # guidance acts on latents; the decoder comes last
        if clf is not None:
            den = guidance.classifier(den, path, clf.kind.as_classifier(clf, device), scale, interval=interval)
        elif scale is not None:
            null = None
            if cfg.model.text_conditional:  # the empty caption, as in training (and the null label too, if any)
                null = {**self.prompt_condition(run, [""], device), **({"label": -1} if cfg.model.class_conditional else {})}
            neg = None if negative is None else {**(null or {}), "label": int(negative)}
            den = guidance.classifier_free(den, scale, null=null, negative=neg, path=path, interval=interval, rescale=rescale)
        if threshold is not None:
            den = guidance.dynamic_threshold(den, threshold)
        den = clipped(den, *run.facts["range"]) if run.facts.get("range") else den
        return self.with_decoder(run, den, device), path, cfg

    def prompt_condition(self, run, prompts, device="cpu") -> dict:
        """The conditioning of a text-conditional run for `prompts` (one row each): {"context", "context_mask",
        "pooled"} from the run's sentence encoder, padded to the length of its training captions."""
        info = run.facts.get("captions")
        if not info:
            raise ValueError(f"{run} is not text-conditional (trained without data.captions): it takes no prompt")
        from ...text_encoder import NAME, encoder_spec, shared

        name = info.get("encoder", NAME)
        try:
            encoder_spec(name)
        except ValueError as e:
            raise ValueError(f"{run} was trained on captions encoded by {name}, an encoder this difflab does not have ({e})") from None
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        encoder = shared(str(device), name)
        longest = max(len(encoder.tokenizer(p)["input_ids"]) for p in prompts)
        if longest > info["length"]:
            say(f"note: a prompt of {longest} tokens is cut to the {info['length']} the run was trained on")
        enc = encoder(prompts, length=int(info["length"]))
        out = {"context": enc["context"], "context_mask": enc["mask"], "pooled": enc["pooled"]}
        return {k: out[k] for k in text_fields(run.config)}

    # -- sampling --------------------------------------------------------------------------------

    def image_shape(self, run) -> tuple:
        """The shape of one sample as it ends up (a latent run's decoded images)."""
        latent = run.facts.get("latent")
        return tuple(latent["image_shape"]) if latent else tuple(run.facts["shape"])

    def form(self, run) -> str:
        shape = self.image_shape(run)
        return "images" if len(shape) == 3 else "points" if shape == (2,) else "vectors"

    def refuse_unconditioned(self, run) -> None:
        if run.facts.get("low_res"):
            raise ValueError(f"{run} is a super-resolution run: it draws images given low-resolution ones; sample a "
                             "cascade that names it (kind = \"cascade\" with requires.base and requires.super_resolution: "
                             "configs/fashion_mnist_cascade.toml)")

    def _labels(self, run, label, n, clf):
        """The label of each sample (every class in turn unless `label`), or None for an unconditional run."""
        if not run.config.model.class_conditional and clf is None:
            if label is not None:
                raise ValueError(f"{run} is an unconditional model (model.class_conditional = false): --label does not apply "
                                 "(classifier guidance gives one labels: --classifier CLF_RUN --guidance W)")
            return None
        facts = (clf or run).facts
        return labels_for(label, n, facts.get("num_classes") or 0, facts.get("class_names") or ())

    def settings(self, run, sampler=None, steps=None, grid=None, nfe=None):
        """How `run` is sampled (`sampler_choice.Settings`): what the user named, else the run's measured choice for
        the budget, else its configuration's [sample]."""
        return settle(run.config, sampler, steps, grid, nfe=nfe, folder=run.folder)

    def check_settings(self, run, sampler, steps, grid, nfe=None):
        """The sampling settings (`settings`), their grid built once (a grid the path cannot take is refused here)."""
        from ...samplers.grids import make_grid

        chosen = self.settings(run, sampler, steps, grid, nfe)
        how = chosen.kwargs
        if how["steps"] is not None:
            path = build_path(run.config.diffusion)
            make_grid(how["grid"] or sampling.default_grid(path), path, how["steps"], **(how["grid_options"] or {}))
        return chosen

    def check_sample(self, run, request) -> None:
        self.refuse_unconditioned(run)
        cfg, g = run.config, request.guidance
        clf = self.check_guidance(run, **g.keywords())
        labels = self._labels(run, request.label, request.n, clf)
        if g.negative is not None and labels is not None and bool((labels == g.negative).any()):
            raise ValueError(f"--negative-label {g.negative} is also a class drawn ("
                             + (f"--label {request.label}" if request.label is not None else "every class in turn")
                             + "): guidance towards and away from the same class cancels; choose another --negative-label"
                             + ("" if request.label is not None else " or give --label"))
        if request.prompts and not cfg.model.text_conditional:
            raise ValueError(f"--prompt: {run} is not text-conditional (train one with model.text_conditional = true and "
                             "data.captions = 'seen')")
        if cfg.model.text_conditional and not request.prompts:
            raise ValueError(f"{run} is text-conditional: say what to draw with --prompt \"a dark ankle boot\" (repeat --prompt "
                             "for a grid)")
        self.check_settings(run, request.sampler, request.steps, request.grid, request.nfe)
        check_fits(request.n * max(1, len(request.prompts)), math.prod(self.image_shape(run)) + math.prod(run.facts["shape"]))

    def sample(self, run, request) -> Samples:
        n, g = request.n, request.guidance
        for p in request.prompts:
            if not p.strip():
                say("note: an empty --prompt is the unconditional model (the empty caption stood for no caption in training)")
        den, path, cfg = self.load_guided(run, **g.keywords(), device=request.device)
        labels = self._labels(run, request.label, n, None if g.classifier is None else run.open_other(g.classifier))
        cond = {"label": labels} if labels is not None else {}
        per_prompt, prompts = n, list(request.prompts)
        if prompts:  # n samples of each prompt, prompt after prompt
            text = self.prompt_condition(run, prompts, request.device)
            cond = {k: v.repeat(len(prompts), *[1] * (v.ndim - 1)) for k, v in cond.items()}
            cond.update({k: v.repeat_interleave(n, 0) for k, v in text.items()})
            n = n * len(prompts)
        chosen = self.settings(run, request.sampler, request.steps, request.grid, request.nfe)
        if chosen.source in ("measured", "preset"):
            say(f"sampler: {chosen.label}, {chosen.kwargs['steps']} steps: {chosen.reason}")
        x, info = sampling.sample_batched(den, path, n, tuple(run.facts["shape"]), seed=request.seed, batch_size=request.batch,
                                          device=request.device, x=source_sample(cfg.data, n, torch.Generator().manual_seed(request.seed)),
                                          cond=cond or None, return_info=True, progress=request.progress and n > request.batch,
                                          **chosen.kwargs)
        arrays = {"samples": x, "nfe": info.nfe, "timesteps": info.timesteps}
        if labels is not None:
            arrays["labels"] = labels
        if hasattr(den, "decode"):  # latent diffusion: the samples are latents; the pictures are their decodings
            from ...latent import decode_images

            arrays["latents"] = x
            x = arrays["samples"] = decode_images(den.decode, x, batch_size=request.batch, device=request.device)
        nrow = per_prompt if prompts else (run.facts.get("num_classes") if labels is not None and request.label is None else None)
        return Samples(self.form(run), x, arrays, nrow=nrow, summary=f"{n} samples, {info.nfe} network evaluations per sample")

    # -- measuring -------------------------------------------------------------------------------

    def sample_metrics(self, run, metrics, *, sampler=None, steps=None, grid=None, nfe=None, n: int = 1000, seed: int = 0,
                       device="cpu", batch_size: int = 500, guide: dict | None = None) -> dict:
        """`n` samples (guided as `guide` asks: `load_guided` keywords) scored against held-out data (`evaluate.scorer`)."""
        from ..evaluate import check_metrics, scorer

        guide = {k: v for k, v in (guide or {}).items() if v is not None}
        self.refuse_unconditioned(run)
        cfg = run.config
        if cfg.model.text_conditional:
            raise ValueError(f"{run} is text-conditional: its samples are drawn for prompts; measure it with "
                             "difflab.evaluate.run_text_metrics (benchmarks/text2image.py)")
        clf = self.check_guidance(run, **guide)
        labels = None
        if cfg.model.class_conditional or clf is not None:
            labels = torch.arange(n) % (clf or run).facts["num_classes"]
        check_metrics(cfg.data, metrics, labels is not None)
        chosen = self.check_settings(run, sampler, steps, grid, nfe)
        score, floors = scorer(cfg.data, metrics, n, seed)
        how = chosen.kwargs
        den, path, _ = self.load_guided(run, device=device, **guide)
        t0 = time.time()
        x, info = sampling.sample_batched(den, path, n, tuple(run.facts["shape"]), seed=seed, batch_size=batch_size,
                                          device=device, x=source_sample(cfg.data, n, torch.Generator().manual_seed(seed)),
                                          cond={"label": labels} if labels is not None else None, return_info=True, **how)
        if hasattr(den, "decode"):
            from ...latent import decode_images

            x = decode_images(den.decode, x, batch_size=batch_size, device=device)
        out = {"sampler": chosen.label,
               "grid": how["grid"] or sampling.default_grid(path), "steps": how["steps"], "nfe": info.nfe,
               "sample_seconds": round(time.time() - t0, 1), "n": n}
        if guide.get("scale") is not None:
            out["guidance"] = {k: str(v) if isinstance(v, Path) else v for k, v in guide.items()}
        out.update(score(x, labels))
        out.update(floors)
        return out

    def _likelihood_refused(self, run) -> None:
        if run.facts.get("latent"):
            raise ValueError(f"{run} is a latent diffusion run: its likelihood would be of latents, not of images; measure "
                             "its samples with --metrics fid,prdc")
        if run.facts.get("low_res"):
            raise ValueError(f"{run}: its likelihood would be of images given their low-resolution versions; measure its "
                             "samples (fid, prdc) instead")

    def likelihood(self, run, *, split: str = "test", n: int | None = None, method: str | None = None, probes: int = 1,
                   rtol: float = 1e-5, atol: float = 1e-5, flow: bool = True, with_elbo: bool = False,
                   elbo_terms: int | None = None, batch_size: int = 500, seed: int = 0, device="cpu",
                   progress: bool = True) -> dict:
        """The NLL on `n` held-out examples (all of the split when None) by the probability flow (`flow`) and / or the
        DDPM ELBO (`with_elbo`). Images are dequantized and reported in bits per dimension; for toy sets with a known
        density the true entropy of the same points is measured beside, so the KL gap E[log p - log p_model] comes
        with its standard error. A continuous-time model is trained down to its t_min only: the flow starts there."""
        from tqdm import tqdm

        from ...likelihood import bits_per_dim, dequantize, elbo, log_likelihood
        from ..evaluate import held_out, mean_se

        if not (flow or with_elbo):
            raise ValueError("nothing to measure: ask for the probability-flow NLL and/or the ELBO")
        self._likelihood_refused(run)
        cfg = run.config
        prior = None
        if flow and cfg.data.source:  # a flow from a data set: its log-density at t = 1 replaces the Gaussian prior's
            source = build_source(cfg.data)
            if not hasattr(source, "log_prob"):
                raise ValueError(f"the run's source {cfg.data.source!r} has no density in closed form, so the flow's "
                                 "likelihood cannot be computed; measure it by samples (W2) instead")
            prior = source.log_prob
        den, path, _ = self.load(run, device=device, clip=False)
        x, true_logp, image = held_out(run, split, n, seed)
        dims = x[0].numel()
        method = method or ("exact" if dims <= 64 else "hutchinson")
        g = torch.Generator().manual_seed(seed)
        t_start = path.t_min if path.discrete else cfg.diffusion.t_min
        value_range = tuple(run.facts.get("range") or (-1.0, 1.0))
        logps, elbos, nfes = [], [], []
        t0 = time.time()
        for xb in tqdm(x.split(batch_size), desc="likelihood", disable=not progress, unit="batch"):
            xb = xb.to(device)
            if flow:
                y = dequantize(xb, g, value_range=value_range) if image else xb
                lp, info = log_likelihood(den, path, y, method=method, probes=probes, rtol=rtol, atol=atol, generator=g,
                                          t_start=t_start, prior=prior, return_info=True)
                logps.append(lp.cpu())
                nfes.append(info.nfe)
            if with_elbo:
                elbos.append(elbo(den, path, xb, decoder="discretized" if image else "gaussian", terms=elbo_terms,
                                  steps=None if path.discrete else cfg.diffusion.T, generator=g).cpu())
        out = {"split": "held-out draw" if cfg.data.name == "toy" else split, "n": len(x), "seconds": round(time.time() - t0, 1)}
        if true_logp is not None:
            out["entropy_nats"], out["entropy_nats_se"] = mean_se(-true_logp)
        if flow:
            nll = -torch.cat(logps)
            out.update(method=method, probes=probes if method == "hutchinson" else None, rtol=rtol, atol=atol, t_start=t_start,
                       nfe_per_batch=sum(nfes) / len(nfes))
            out["nll_nats"], out["nll_nats_se"] = mean_se(nll)
            if image:
                out["bpd"], out["bpd_se"] = mean_se(bits_per_dim(nll, dims, value_range=value_range))
            if true_logp is not None:
                out["kl_gap_nats"], out["kl_gap_nats_se"] = mean_se(nll + true_logp)  # paired: E[log p - log p_model]
        if with_elbo:
            nelbo = -torch.cat(elbos)
            out["elbo_terms"] = elbo_terms
            out["nelbo_nats"], out["nelbo_nats_se"] = mean_se(nelbo)
            if image:
                out["elbo_bpd"], out["elbo_bpd_se"] = mean_se(nelbo / (dims * math.log(2)))
            if true_logp is not None:
                out["elbo_kl_gap_nats"], out["elbo_kl_gap_nats_se"] = mean_se(nelbo + true_logp)
        return out

    def text_metrics(self, run, prompts: list, scales, *, per_prompt: int = 4, sampler: str | None = None,
                     steps: int | None = None, seed: int = 0, batch_size: int = 500, device="cpu",
                     reference: int = 1000) -> list[dict]:
        """For each classifier-free scale w in `scales`: `per_prompt` samples of each prompt (a `data.captions.Caption`,
        which knows the class, shade and size it asks for), the shipped judge's class accuracy on them, the accuracy
        of each attribute measured from the samples' pixels against the run's training cut points (chance 1/3), and
        the Frechet distance, precision and recall of all the samples against `reference` test images.

        A class-conditional Fashion-MNIST run is measured the same way, given each prompt's class itself instead of
        its words (the ceiling a text model is compared with; its shade and size are not asked, so near chance);
        its cut points are those of its training images, as a captioned run's are."""
        from ...data.captions import Thresholds, attributes, thresholds
        from ...features import image_metrics, load_feature_net
        from ..evaluate import held_out

        cfg, info = run.config, run.facts
        # -1: the prompt does not say (a user's wording); an attribute is scored on the prompts that state it
        want = {k: torch.tensor([-1 if getattr(p, k) is None else getattr(p, k) for p in prompts]).repeat_interleave(per_prompt)
                for k in ("label", "shade", "size")}
        if cfg.model.text_conditional and info.get("captions"):
            cuts = Thresholds.from_dict(info["captions"]["thresholds"])
            text = self.prompt_condition(run, [p.text for p in prompts], device)
            cond = {k: v.repeat_interleave(per_prompt, 0) for k, v in text.items()}
        elif cfg.model.class_conditional and cfg.data.name == "fashion_mnist" and not info.get("latent"):
            train = build_data(cfg.data, "train")
            cuts = thresholds(train.images, train.labels)
            cond = {"label": want["label"].to(device)}
        else:
            raise ValueError(f"{run} is neither text-conditional nor a class-conditional Fashion-MNIST run: it takes no prompts")
        n = len(prompts) * per_prompt
        net, _ = load_feature_net("fashion_mnist", device=device)
        real, _, _ = held_out(run, "test", reference, seed)
        chosen = self.settings(run, sampler, steps)
        how = chosen.kwargs
        rows = []
        for w in scales:
            den, path, _ = self.load_guided(run, scale=float(w), device=device)
            t0 = time.time()
            x, done = sampling.sample_batched(den, path, n, tuple(info["shape"]), seed=seed, batch_size=batch_size,
                                              device=device, cond=cond, return_info=True, **how)
            if hasattr(den, "decode"):
                from ...latent import decode_images

                x = decode_images(den.decode, x, batch_size=batch_size, device=device)
            shade, size = attributes(x, want["label"], cuts)
            m = image_metrics(net, real, x, labels=want["label"])
            rows.append({"scale": float(w), "class_accuracy": m["accuracy"],
                         "shade_accuracy": _stated_accuracy(shade, want["shade"]),
                         "size_accuracy": _stated_accuracy(size, want["size"]),
                         "fd": m["fd"], "precision": m["precision"], "recall": m["recall"], "n": n, "nfe": done.nfe,
                         "sampler": chosen.label, "steps": how["steps"],
                         "sample_seconds": round(time.time() - t0, 1)})
        return rows

    def check_eval(self, run, request) -> None:
        from ..evaluate import SAMPLE_METRICS, check_metrics, check_split

        wanted = list(request.metrics)
        unknown = [m for m in wanted if m not in (*SAMPLE_METRICS, "nll", "elbo")]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join((*SAMPLE_METRICS, 'nll', 'elbo'))}")
        nll, elbo = request.nll or "nll" in wanted, request.elbo or "elbo" in wanted
        on_samples = [m for m in wanted if m in SAMPLE_METRICS]
        if not (nll or elbo or on_samples):
            raise ValueError("say what to measure: --metrics fid,prdc (or w2,mmd,... on toy sets), --nll, --elbo")
        if nll or elbo:
            self._likelihood_refused(run)
            check_split(run.config.data, request.split or "test")
        if request.scales is not None and not on_samples:
            raise ValueError("--guidance applies to the sample metrics: add --metrics accuracy,fid,prdc")
        if on_samples:
            self.refuse_unconditioned(run)
            if run.config.model.text_conditional:
                raise ValueError(f"{run} is text-conditional: its samples are drawn for prompts; measure it with "
                                 "difflab.evaluate.run_text_metrics (benchmarks/text2image.py)")
            g = request.guidance.keywords()
            clf = None
            for w in request.scales or [None]:
                clf = self.check_guidance(run, **{**g, "scale": w, "threshold": None})
            labelled = run.config.model.class_conditional or clf is not None
            check_metrics(run.config.data, on_samples, labelled)
            self.check_settings(run, request.sampler, request.steps, request.grid, request.nfe)
            check_fits(request.n or 1000, math.prod(self.image_shape(run)) + math.prod(run.facts["shape"]))

    def evaluate(self, run, request) -> list:
        from ..evaluate import SAMPLE_METRICS, guidance_sweep, write_report

        wanted = list(request.metrics)
        on_samples = [m for m in wanted if m in SAMPLE_METRICS]
        nll, elbo = request.nll or "nll" in wanted, request.elbo or "elbo" in wanted
        if nll or elbo:
            res = self.likelihood(run, split=request.split or "test", n=request.n, method=request.method,
                                  probes=request.probes or 1, rtol=request.rtol or 1e-5, atol=request.atol or 1e-5, flow=nll,
                                  with_elbo=elbo, elbo_terms=request.elbo_terms, batch_size=request.batch, seed=request.seed,
                                  device=request.device)
            write_report(run, "likelihood", res, request.command)
        if not on_samples:
            return [run.folder / "eval.md"]
        guide = {k: v for k, v in request.guidance.keywords().items() if k != "scale" and v is not None}
        common = dict(sampler=request.sampler, steps=request.steps, grid=request.grid, nfe=request.nfe, n=request.n or 1000, seed=request.seed,
                      device=request.device, batch_size=request.batch)
        scales = request.scales
        if scales is not None and len(scales) > 1:
            guidance_sweep(run, scales, on_samples, guide=guide, **common)
            return [run.folder / "guidance.md", run.folder / "guidance.png"]
        g = {**guide, "scale": scales[0]} if scales else None
        res = self.sample_metrics(run, on_samples, guide=g, **common)
        how = f", guidance {scales[0]:g}" + (" (classifier)" if guide.get("classifier") else "") if scales else ""
        write_report(run, f"samples: {res['sampler']}, {res['steps']} steps, {res['grid']} grid{how}", res, request.command)
        return [run.folder / "eval.md"]

    def check_bench(self, run, request) -> None:
        self.refuse_unconditioned(run)
        if run.config.model.text_conditional:
            raise ValueError(f"{run} is text-conditional: its samples are drawn for prompts, and `bench samplers` draws none "
                             "(measure it with benchmarks/text2image.py)")
        if request.diffusers and not build_path(run.config.diffusion).discrete:
            raise ValueError("diffusers' schedulers need a discrete-time (DDPM) path; this run's path is continuous")
        from ..evaluate import FEATURE_SETS

        if run.config.data.name != "toy" and run.config.data.name not in FEATURE_SETS:
            raise ValueError(f"bench samplers scores images in a shipped feature network ({', '.join(FEATURE_SETS)}); this "
                             f"run trained on {run.config.data.name!r}")
        check_fits(request.n, math.prod(self.image_shape(run)) + math.prod(run.facts["shape"]))

    def bench(self, run, request) -> dict:
        from ..bench import measure_samplers

        return measure_samplers(run, request)

    # -- restoring and editing ---------------------------------------------------------------------

    def _image_shape(self, run, verb: str, stage: bool = False) -> tuple:
        """One sample's image shape; a super-resolution run is refused unless it is a cascade's `stage`."""
        if not stage:
            self.refuse_unconditioned(run)
        shape = self.image_shape(run)
        if len(shape) != 3:
            raise ValueError(f"{run} draws samples of shape {shape}, not images: `difflab {verb}` works on image runs")
        return shape

    def _condition(self, run, label, prompts, n: int, device) -> dict:
        """What restorations and edits are drawn for: --label / --prompt, or the null condition of a run trained with
        dropout (the unconditional model), one row per example."""
        cfg, cond = run.config, {}
        dropout = cfg.diffusion.p_uncond > 0
        if cfg.model.class_conditional:
            if label is None and not dropout:
                raise ValueError(f"{run} is class-conditional without label dropout: give --label (its classes: 0 .. "
                                 f"{(run.facts.get('num_classes') or 1) - 1})")
            facts = run.facts
            cond["label"] = (labels_for(label, n, facts.get("num_classes") or 0, facts.get("class_names") or ())
                             if label is not None else torch.full((n,), -1, dtype=torch.long))
        elif label is not None:
            raise ValueError(f"{run} is an unconditional model (model.class_conditional = false): --label does not apply")
        if cfg.model.text_conditional:
            if not prompts and not dropout:
                raise ValueError(f"{run} is text-conditional without caption dropout: give --prompt")
            text = self.prompt_condition(run, [prompts[0] if prompts else ""], device)
            cond.update({k: v.expand(n, *v.shape[1:]) for k, v in text.items()})
        elif prompts:
            raise ValueError(f"--prompt: {run} is not text-conditional")
        return cond

    def _test_images(self, run, request):
        """--test-images N: N held-out images of the run's data (drawn with the request's seed), or None."""
        from ..evaluate import check_split

        if request.test_images is None:
            return None
        check_split(run.config.data, "test")
        data = build_data(run.config.data, "test")
        if len(data) < request.test_images:
            raise ValueError(f"--test-images {request.test_images}: the test split has {len(data)} images")
        index = torch.randperm(len(data), generator=torch.Generator().manual_seed(request.seed))[:request.test_images]
        return data.images[index].float()

    def observations(self, run, request, stage: bool = False):
        """(operator, truth or None, observations y) of a restore request, every option checked."""
        from .. import observations

        shape = self._image_shape(run, "restore", stage)
        A = observations.operator(request.task, shape, box=request.box, factor=request.factor, blur=request.blur)
        truth = self._test_images(run, request)
        if truth is not None:
            return A, truth, observations.observe(A, truth, request.noise_std, request.seed)
        return A, None, observations.read(request.images, request.task, A, shape)

    def _restore_settings(self, run, request) -> dict:
        default = "ddpm" if request.method == "repaint" else None  # RePaint resamples: it needs a stochastic sampler
        return self.check_settings(run, request.sampler or default, request.steps, request.grid).kwargs

    def check_restore(self, run, request) -> None:
        if request.method == "repaint" and run.facts.get("latent"):
            raise ValueError(f"{run} samples latents: RePaint replaces pixels, so it cannot restore them; use --method pgdm "
                             "or dps (they guide the latents through the decoder)")
        A, truth, y = self.observations(run, request)
        self._condition(run, request.label, request.prompts, 1, request.device)
        self._restore_settings(run, request)
        check_fits(len(y) * request.n, 2 * math.prod(self.image_shape(run)) + math.prod(run.facts["shape"]))

    def restore(self, run, request) -> Samples:
        import functools

        from ... import inverse
        from ...denoisers import clipped
        from ..observations import picture, psnr

        A, truth, y = self.observations(run, request)
        k, n, shape = len(y), request.n, self.image_shape(run)
        ys = y.repeat_interleave(n, 0)
        den, path = self.raw_denoiser(run, device=request.device, clip=False)
        latent = self.with_decoder(run, den, request.device)
        decode = latent.decode if latent is not den else None
        cond = self._condition(run, request.label, request.prompts, k * n, request.device)
        how = self._restore_settings(run, request)
        if request.method == "repaint":
            how["sampler"] = functools.partial(inverse.repaint, mask=A, sampler=how["sampler"], jump=request.jump,
                                               resamples=request.resamples)
            cond["y"] = ys
        else:
            guide = inverse.pgdm if request.method == "pgdm" else functools.partial(inverse.dps, scale=request.scale)
            den = guide(den, path, A, None, request.noise_std, decode=decode)
            cond["observation"] = ys
        den = clipped(den, *run.facts["range"]) if run.facts.get("range") else den
        t0 = time.time()
        x, info = sampling.sample_batched(den, path, k * n, tuple(run.facts["shape"]), seed=request.seed,
                                          batch_size=request.batch, device=request.device, cond=cond, return_info=True,
                                          progress=request.progress and k * n > request.batch, **how)
        if decode is not None:
            from ...latent import decode_images

            x = decode_images(decode, x, batch_size=request.batch, device=request.device)
        seen = picture(request.task, A, y, shape).clamp(-1, 1)
        rows = [torch.cat([seen[i:i + 1], x[i * n:(i + 1) * n], *([truth[i:i + 1]] if truth is not None else [])]) for i in range(k)]
        arrays = {"observations": y, "restorations": x, "nfe": info.nfe, **({"truth": truth} if truth is not None else {})}
        summary = (f"{k * n} restorations of {k} observations ({request.task}, {request.method}), {info.nfe} network "
                   f"evaluations each, {time.time() - t0:.1f} s")
        if truth is not None:
            gain = psnr(x, truth.repeat_interleave(n, 0)).mean()
            summary += f"; PSNR {float(gain):.2f} dB (the observation as it is: {float(psnr(seen, truth).mean()):.2f} dB)"
        return Samples("images", x, arrays, picture=torch.cat(rows), nrow=len(rows[0]), summary=summary)

    def edit_images(self, run, request, stage: bool = False, note: bool = False):
        from ...data import read_image
        from ...data.images import image_size

        shape = self._image_shape(run, "edit", stage)
        images = self._test_images(run, request)
        if images is not None:
            return images
        images = torch.stack([read_image(p, *shape) for p in request.images])
        if note:
            for p in request.images:
                w, h = image_size(p)
                if (w, h) != (shape[2], shape[1]):
                    say(f"note: {p} is {w}x{h} pixels; it is edited resized to the run's {shape[2]}x{shape[1]} (bicubic"
                        + (", its proportions not kept)" if w * shape[1] != h * shape[2] else ")"))
        return images

    def check_edit(self, run, request) -> None:
        images = self.edit_images(run, request)
        self._condition(run, request.label, request.prompts, 1, request.device)
        self.check_settings(run, request.sampler, request.steps, request.grid)
        check_fits(len(images) * request.n, 2 * math.prod(self.image_shape(run)) + math.prod(run.facts["shape"]))

    def edit(self, run, request) -> Samples:
        """SDEdit: each image noised to t = strength on the path, then sampled back (`sampling.sample`'s x_start)."""
        images = self.edit_images(run, request, note=True)
        k, n = len(images), request.n
        den, path, cfg = self.load(run, device=request.device)
        start = images.repeat_interleave(n, 0)
        if hasattr(den, "encode"):  # latent diffusion edits the latents of the images
            from ...latent import encode_images

            start = encode_images(den, start, batch_size=request.batch, device=request.device)
        how = self.settings(run, request.sampler, request.steps, request.grid).kwargs
        x, info = sampling.sample_batched(den, path, k * n, tuple(run.facts["shape"]), seed=request.seed,
                                          batch_size=request.batch, device=request.device, x_start=start,
                                          t_start=request.strength, return_info=True,
                                          cond=self._condition(run, request.label, request.prompts, k * n, request.device) or None,
                                          progress=request.progress and k * n > request.batch, **how)
        if hasattr(den, "decode"):
            from ...latent import decode_images

            x = decode_images(den.decode, x, batch_size=request.batch, device=request.device)
        rows = [torch.cat([images[i:i + 1], x[i * n:(i + 1) * n]]) for i in range(k)]
        return Samples("images", x, {"images": images, "edits": x}, picture=torch.cat(rows), nrow=n + 1,
                       summary=f"{k * n} edits of {k} images at strength {request.strength:g}, {info.nfe} network evaluations each")

    # -- info ------------------------------------------------------------------------------------

    def describe(self, run) -> list[tuple[str, str]]:
        lines = []
        lt, c, d = run.facts.get("latent"), run.facts.get("captions"), run.config.diffusion
        if lt:
            lines.append(("latent", f"diffusion over the latents of {run.config.requires.get('autoencoder', lt['autoencoder'])} "
                                    f"(its checkpoint of step {lt['autoencoder_step']}), scale {lt['scale']:.4f}; samples "
                                    f"decode to images of shape {tuple(lt['image_shape'])}"))
        if c:
            lines.append(("captions", f"{c['split']} wording, encoded by {c['encoder']} ({c['dim']} features, {c['length']} "
                                      "tokens); sample with --prompt \"a dark ankle boot\""))
        lines.append(("diffusion", f"{d.path}, predicts {d.prediction}, weighting {d.weighting}"))
        from ..sampler_choice import describe

        return lines + describe(run.config, run.folder)


KIND = Diffusion()
