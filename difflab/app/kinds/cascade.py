"""kind = "cascade": cascaded super-resolution (Ho et al. 2021; `difflab.cascade`). It trains nothing: it names
its stages, requires.base (a diffusion run drawing low-resolution images) and requires.super_resolution (a diffusion
run on data.low_res), checks that they fit, and samples them one after the other. Its [sample] section is the
second stage's sampler, its [cascade] section the base stage's and the augmentation level.

`dl.load` gives (cascade.Cascade, None, config); `difflab sample` writes each low-resolution sample above its
full-resolution one; `eval` measures its samples like any run's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ... import sampling
from ..outputs import Samples
from ..requests import labels_for, sampling_settings
from ..schema import within
from .base import Kind

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
            from ...sampling import parse_sampler_spec

            parse_sampler_spec(self.base_sampler)
        within(self, "base_steps", 0, 100_000)
        if not 0 <= self.low_res_noise <= 1:
            raise ValueError(f"cascade.low_res_noise must lie in [0, 1] (a time on the path), got {self.low_res_noise}")


class Cascade(Kind):
    name = "cascade"
    about = "two diffusion runs, a base and a super-resolution stage, sampled one after the other (trains nothing)"
    sections = {"cascade": CascadeConfig}
    networks = ("unet", "dit", "mlp")  # [model] is not read: any network kind a diffusion run takes
    requires = {"base": "diffusion", "super_resolution": "diffusion"}
    trains = False
    sample_options = frozenset({"sampler", "steps", "label", "scale", "base_sampler", "base_steps", "low_res_noise"})
    eval_options = frozenset({"metrics", "sampler", "steps", "scales"})

    def _stages(self, run_or_requires):
        requires = run_or_requires if isinstance(run_or_requires, dict) else run_or_requires.requires
        return requires["base"], requires["super_resolution"]

    def record(self, cfg, requires: dict, folder) -> dict:
        """data.json of a cascade: its stages checked to fit (the super-resolution run takes the base's images, at a
        level it was trained with), and what it draws."""
        base, sr = self._stages(requires)
        low = sr.facts.get("low_res") or {}
        if not low:
            raise ValueError(f"requires.super_resolution = {cfg.requires['super_resolution']!r} is not a super-resolution run "
                             "(train one with data.low_res = 2)")
        drawn = base.kind.image_shape(base)
        if tuple(drawn) != tuple(low["shape"]):
            raise ValueError(f"the base {cfg.requires['base']!r} draws images of shape {tuple(drawn)}; the super-resolution "
                             f"run takes low-resolution images of shape {tuple(low['shape'])}")
        trained = sr.config.diffusion.low_res_noise
        if cfg.cascade.low_res_noise > trained:
            raise ValueError(f"cascade.low_res_noise = {cfg.cascade.low_res_noise} is above the levels the super-resolution "
                             f"run was trained with (diffusion.low_res_noise = {trained}): at most {trained}")
        if base.config.model.text_conditional or sr.config.model.text_conditional:
            raise ValueError("a cascade of text-conditional stages is not supported yet: use class-conditional or "
                             "unconditional stages")
        bi, si = base.facts, sr.facts
        return {"name": f"cascade: {bi['name']} -> {si['name']}", "shape": list(si["shape"]), "size": si["size"],
                "num_classes": si.get("num_classes"), "class_names": si.get("class_names", []), "range": si.get("range"),
                "cascade": {"base": str(base.folder), "super_resolution": str(sr.folder), "factor": low["factor"],
                            "low_res_shape": list(low["shape"])}}

    def cascade(self, run, *, device="cpu", scale=None, sampler=None, steps=None, base_sampler=None, base_steps=None,
                level=None):
        """The `cascade.Cascade` of the run: each stage loaded (guided by `scale` where it is class-conditional with
        label dropout) with its sampling settings: the base's own unless cascade.base_sampler / base_steps or
        `base_sampler` / `base_steps` say otherwise, the second stage's from the cascade's [sample] and `sampler` /
        `steps`."""
        from ...cascade import Cascade as Stages

        rec = self.record(run.config, run.requires, run.folder)
        stages = dict(zip(("base", "super_resolution"), self._stages(run)))
        guided = {role: scale is not None and s.config.model.class_conditional and s.config.diffusion.p_uncond > 0
                  for role, s in stages.items()}
        if scale is not None and not any(guided.values()):
            raise ValueError(f"{run}: neither stage is class-conditional with label dropout (diffusion.p_uncond > 0), so "
                             "there is nothing for classifier-free guidance to steer")
        level = run.config.cascade.low_res_noise if level is None else float(level)
        trained = stages["super_resolution"].config.diffusion.low_res_noise
        if level > trained:
            raise ValueError(f"the augmentation level {level} is above the levels the super-resolution run was trained with "
                             f"(up to {trained})")
        loaded = {role: s.kind.load_guided(s, scale=scale if guided[role] else None, device=device) for role, s in stages.items()}
        b = run.config.cascade
        base = stages["base"]
        base_settings = sampling_settings(base.config, base_sampler or b.base_sampler or None, base_steps or b.base_steps or None,
                                          folder=base.folder)
        out = Stages(loaded["base"][0], loaded["base"][1], loaded["super_resolution"][0], loaded["super_resolution"][1],
                     rec["cascade"]["low_res_shape"], rec["shape"], level=level, base_settings=base_settings,
                     sr_settings=sampling_settings(run.config, sampler, steps), base_shape=base.facts["shape"],
                     decode_base=getattr(loaded["base"][0], "decode", None), clip=tuple(rec["range"]) if rec.get("range") else None)
        out.conditional = {role: s.config.model.class_conditional for role, s in stages.items()}
        return out

    def load(self, run, *, ema: bool = True, device="cpu", clip: bool = True):
        return self.cascade(run, device=device), None, run.config

    def draw(self, run, n: int, *, labels=None, guidance=None, sampler=None, steps=None, base_sampler=None, base_steps=None,
             level=None, seed: int = 0, batch_size: int = 500, device="cpu", progress: bool = False):
        """(x, y, info): n samples and the low-resolution images they came from; `labels` go to each class-conditional
        stage, `guidance` (classifier-free w) to each stage trained with label dropout."""
        cascade = self.cascade(run, device=device, scale=guidance, sampler=sampler, steps=steps, base_sampler=base_sampler,
                               base_steps=base_steps, level=level)
        if labels is not None and not any(cascade.conditional.values()):
            raise ValueError(f"{run}: neither stage is class-conditional: labels do not apply")
        cond = {role: ({"label": labels} if labels is not None and on else None) for role, on in cascade.conditional.items()}
        t0 = time.time()
        x, y = cascade.sample(n, seed=seed, batch_size=batch_size, base_cond=cond["base"], sr_cond=cond["super_resolution"],
                              device=device, progress=progress)
        return x, y, {"base": cascade.base_settings, "super_resolution": cascade.sr_settings, "level": cascade.level,
                      "sample_seconds": round(time.time() - t0, 1)}

    def _labels(self, run, label, n):
        """Labels for the class-conditional stages (the classes of the stage that has them), or None."""
        stages = [s for s in self._stages(run) if s.config.model.class_conditional]
        if not stages:
            if label is not None:
                raise ValueError(f"--label: neither stage of {run} is class-conditional")
            return None
        facts = stages[0].facts
        return labels_for(label, n, facts.get("num_classes") or 0, facts.get("class_names") or ())

    def form(self, run) -> str:
        return "images"

    def check_sample(self, run, request) -> None:
        from ..requests import check_fits

        self.cascade(run, scale=request.guidance.scale, sampler=request.sampler, steps=request.steps,
                     base_sampler=request.base_sampler, base_steps=request.base_steps, level=request.low_res_noise,
                     device=request.device)
        self._labels(run, request.label, request.n)
        check_fits(request.n, 3 * sum(math.prod(s) for s in (run.facts["shape"], run.facts["cascade"]["low_res_shape"])))

    def sample(self, run, request) -> Samples:
        from ...data import upsample

        n = request.n
        labels = self._labels(run, request.label, n)
        x, y, how = self.draw(run, n, labels=labels, guidance=request.guidance.scale, sampler=request.sampler,
                              steps=request.steps, base_sampler=request.base_sampler, base_steps=request.base_steps,
                              level=request.low_res_noise, seed=request.seed, batch_size=request.batch, device=request.device,
                              progress=request.progress and n > request.batch)
        up = upsample(y, run.facts["cascade"]["factor"])
        k = 8 if labels is None else (run.facts.get("num_classes") or 8)
        rows = [t for i in range(0, n, k) for t in (up[i:i + k], x[i:i + k])]  # each low-resolution row above its samples
        picture = torch.cat([torch.cat([r, -torch.ones(k - len(r), *r.shape[1:])]) if len(r) < k else r for r in rows])
        b, s = how["base"], how["super_resolution"]
        return Samples("images", x, {"samples": x, "low_res": y, **({"labels": labels} if labels is not None else {})},
                       picture=picture, nrow=k,
                       summary=f"{n} samples: base {b['sampler']} with {b['steps']} steps, super-resolution {s['sampler']} "
                               f"with {s['steps']} steps at augmentation level {how['level']:g}")

    def sample_metrics(self, run, metrics, *, sampler=None, steps=None, grid=None, n: int = 1000, seed: int = 0, device="cpu",
                       batch_size: int = 500, guide: dict | None = None) -> dict:
        """Samples of both stages scored against held-out data like any run's (`evaluate.scorer`)."""
        from ..evaluate import check_metrics, scorer

        if grid is not None or any(v for k, v in (guide or {}).items() if k != "scale" and v is not None):
            raise ValueError("a cascade is measured with --guidance W, --sampler and --steps (its second stage's); "
                             "grids and the other guidance options apply to single runs")
        sr = self._stages(run)[1]
        labels = self._labels(run, None, n)
        check_metrics(sr.config.data, metrics, labels is not None)
        score, floors = scorer(sr.config.data, metrics, n, seed)
        x, _, how = self.draw(run, n, labels=labels, guidance=(guide or {}).get("scale"), sampler=sampler, steps=steps,
                              seed=seed, batch_size=batch_size, device=device)
        b, s = how["base"], how["super_resolution"]
        out = {"sampler": f"{b['sampler']} then {s['sampler']}", "steps": s["steps"], "grid": s["grid"] or "default",
               "nfe": None, "base_steps": b["steps"], "level": how["level"], "sample_seconds": how["sample_seconds"], "n": n}
        if guide and guide.get("scale") is not None:
            out["guidance"] = {"scale": guide["scale"]}
        out.update(score(x.clamp(-1, 1), labels))
        out.update(floors)
        return out

    def check_eval(self, run, request) -> None:
        from ..evaluate import check_metrics

        if request.nll or request.elbo or "nll" in request.metrics or "elbo" in request.metrics:
            raise ValueError(f"{run} is a cascade: it has no likelihood here; measure its samples with --metrics fid,prdc")
        if not request.metrics:
            raise ValueError("say what to measure: --metrics fid,prdc")
        check_metrics(self._stages(run)[1].config.data, request.metrics, self._labels(run, None, 1) is not None)
        for w in request.scales or [None]:
            self.cascade(run, scale=w, sampler=request.sampler, steps=request.steps)

    def evaluate(self, run, request) -> list:
        from ..evaluate import guidance_sweep, write_report

        common = dict(sampler=request.sampler, steps=request.steps, n=request.n or 1000, seed=request.seed,
                      device=request.device, batch_size=request.batch)
        if request.scales is not None and len(request.scales) > 1:
            guidance_sweep(run, request.scales, request.metrics, **common)
            return [run.folder / "guidance.md", run.folder / "guidance.png"]
        scale = request.scales[0] if request.scales else None
        res = self.sample_metrics(run, request.metrics, guide={"scale": scale} if scale is not None else None, **common)
        how = f", guidance {scale:g}" if scale is not None else ""
        write_report(run, f"samples: {res['sampler']}, {res['steps']} steps, {res['grid']} grid{how}", res, request.command)
        return [run.folder / "eval.md"]

    # -- restoring and editing, at the top stage ----------------------------------------------------

    restore_options = frozenset({"box", "scale", "sampler", "steps", "label"})
    edit_options = frozenset({"sampler", "steps", "label"})
    BASE_NOISE = 0.1  # the least noise the base stage assumes: its low-resolution images cannot show fine detail

    def _restorer(self, run):
        """(base run, super-resolution run, factor); the stages checked to fit."""
        self.record(run.config, run.requires, run.folder)
        base, sr = self._stages(run)
        return base, sr, sr.facts["low_res"]["factor"]

    def _stage_condition(self, stage, label, n):
        if not stage.config.model.class_conditional:
            return {}
        if label is None and not stage.config.diffusion.p_uncond:
            raise ValueError(f"the stage {stage} is class-conditional without label dropout: give --label")
        facts = stage.facts
        return {"label": labels_for(label, n, facts.get("num_classes") or 0, facts.get("class_names") or ()) if label is not None
                else torch.full((n,), -1, dtype=torch.long)}

    def check_restore(self, run, request) -> None:
        if request.method == "repaint":
            raise ValueError(f"{run} is a cascade: it restores with --method pgdm or dps (guiding both stages)")
        base, sr, _ = self._restorer(run)
        if request.label is not None and not any(s.config.model.class_conditional for s in (base, sr)):
            raise ValueError(f"--label: neither stage of {run} is class-conditional")
        for stage in (base, sr):
            self._stage_condition(stage, request.label, 1)
        sr.kind.observations(sr, request, stage=True)
        sr.kind.check_settings(sr, request.sampler, request.steps, None)

    def restore(self, run, request) -> Samples:
        """The base stage draws low-resolution images guided by the observation seen through their enlargement
        (`inverse.Composed(A, Upsample(f))`, with at least `BASE_NOISE` of noise: what a low-resolution image cannot
        explain); the top stage, given them (noised to the cascade's augmentation level), restores guided by A."""
        import functools

        from ... import inverse
        from ...cascade import low_res_condition
        from ..._random import derive_seed, example_generators
        from ...denoisers import clipped
        from ..observations import picture, psnr

        base, sr, f = self._restorer(run)
        A, truth, y = sr.kind.observations(sr, request, stage=True)
        k, n, shape = len(y), request.n, tuple(sr.facts["shape"])
        ys, N = y.repeat_interleave(n, 0), len(y) * request.n
        method = inverse.pgdm if request.method == "pgdm" else functools.partial(inverse.dps, scale=request.scale)
        den, path = base.kind.raw_denoiser(base, device=request.device, clip=False)
        latent = base.kind.with_decoder(base, den, request.device)
        decode = latent.decode if latent is not den else None
        seen_low = inverse.Composed(A, inverse.Upsample(f), shape)  # A acts on the enlarged low-resolution image
        den = method(den, path, seen_low, None, max(request.noise_std, self.BASE_NOISE), decode=decode)
        den = clipped(den, *base.facts["range"]) if base.facts.get("range") else den
        b = run.config.cascade
        how = sampling_settings(base.config, b.base_sampler or None, b.base_steps or None, folder=base.folder)
        low, first = sampling.sample_batched(den, path, N, tuple(base.facts["shape"]), seed=derive_seed(request.seed, "base"),
                                             batch_size=request.batch, device=request.device, return_info=True, **how,
                                             cond={"observation": ys, **self._stage_condition(base, request.label, N)})
        if decode is not None:
            from ...latent import decode_images

            low = decode_images(decode, low, batch_size=request.batch, device=request.device)
        den, path = sr.kind.raw_denoiser(sr, device=request.device, clip=False)
        den = clipped(method(den, path, A, None, request.noise_std), *sr.facts["range"])
        cond = {"observation": ys, **self._stage_condition(sr, request.label, N),
                **low_res_condition(low.clamp(-1, 1), path, run.config.cascade.low_res_noise,
                                    example_generators(derive_seed(request.seed, "low_res"), N))}
        x, info = sampling.sample_batched(den, path, N, shape, seed=request.seed, batch_size=request.batch, device=request.device,
                                          cond=cond, return_info=True, **sampling_settings(run.config, request.sampler,
                                                                                          request.steps))
        seen = picture(request.task, A, y, shape).clamp(-1, 1)
        rows = [torch.cat([seen[i:i + 1], x[i * n:(i + 1) * n], *([truth[i:i + 1]] if truth is not None else [])]) for i in range(k)]
        summary = (f"{N} restorations of {k} observations ({request.task}, {request.method}, both stages guided), "
                   f"{first.nfe} + {info.nfe} network evaluations each")
        if truth is not None:
            summary += f"; PSNR {float(psnr(x, truth.repeat_interleave(n, 0)).mean()):.2f} dB"
        return Samples("images", x, {"observations": y, "restorations": x, "low_res": low, "nfe": first.nfe + info.nfe,
                                     **({"truth": truth} if truth is not None else {})},
                       picture=torch.cat(rows), nrow=len(rows[0]), summary=summary)

    def check_edit(self, run, request) -> None:
        base, sr, _ = self._restorer(run)
        self._stage_condition(sr, request.label, 1)
        sr.kind.edit_images(sr, request, stage=True)
        sr.kind.check_settings(sr, request.sampler, request.steps, None)

    def edit(self, run, request) -> Samples:
        """SDEdit at the top stage: each image noised to the strength and sampled back by the super-resolution stage,
        given the image's own low-resolution version."""
        from ...data import downsample

        base, sr, f = self._restorer(run)
        images = sr.kind.edit_images(sr, request, stage=True)
        k, n = len(images), request.n
        den, path, _ = sr.kind.load(sr, device=request.device)
        start = images.repeat_interleave(n, 0)
        cond = {"low_res": downsample(start, f), "low_res_level": torch.zeros(k * n), **self._stage_condition(sr, request.label, k * n)}
        x, info = sampling.sample_batched(den, path, k * n, tuple(sr.facts["shape"]), seed=request.seed, batch_size=request.batch,
                                          device=request.device, x_start=start, t_start=request.strength, cond=cond,
                                          return_info=True, **sampling_settings(run.config, request.sampler, request.steps))
        rows = [torch.cat([images[i:i + 1], x[i * n:(i + 1) * n]]) for i in range(k)]
        return Samples("images", x, {"images": images, "edits": x}, picture=torch.cat(rows), nrow=n + 1,
                       summary=f"{k * n} edits of {k} images at strength {request.strength:g} (the top stage), {info.nfe} "
                               "network evaluations each")

    def describe(self, run) -> list[tuple[str, str]]:
        base, sr = self._stages(run)
        low = sr.facts.get("low_res") or {}
        return [("cascade", f"base {run.config.requires['base']} ({tuple(base.kind.image_shape(base))}) -> super-resolution "
                            f"{run.config.requires['super_resolution']} (x{low.get('factor')}), augmentation level "
                            f"{run.config.cascade.low_res_noise:g}; trains nothing")]


KIND = Cascade()
