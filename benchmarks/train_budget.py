"""Quality per CPU-minute: difflab's Fashion-MNIST recipe against a tuned diffusers baseline, each
trained for the same wall-clock minutes on this machine, then sampled at 10 and 20 NFE.

    ./dev bench train_budget                    # 2 x 20 min of training, then ~10 min of sampling
    .venv/bin/python benchmarks/train_budget.py --minutes 20 --out runs/budget

- difflab: the `fashion_mnist` preset with its fixed-time recipe (the preset's comment):
  `train.max_minutes` set to the budget, `train.lr=2e-3`, `train.lr_decay=cosine` (down to 0 at the
  end of the budget) and, with `--bf16` (the default), `train.amp_cpu=true`.
  Sampled with the sampler specs of DIFFLAB_SAMPLERS (`dpmpp_2m`, `unipc:variant=bh1`, `dpmpp_2m@karras`, ...,
  as `difflab bench samplers` writes them; the default grid is trailing); `--samplers default,...` adds what
  `difflab sample` picks with no sampler named (the preset's [sample.by_nfe] choice at each budget).
- diffusers: a `UNet2DModel` of about 1.1M parameters (32/64/64 channels, one ResNet block per level,
  attention at 7x7), `DDPMScheduler` (1,000 linear-beta steps, epsilon), AdamW, batch 128, EMA.
  Tuned for a short CPU run rather than its GPU example defaults (lr 1e-4, 500 warm-up steps,
  EMA max decay 0.9999): lr 2e-3 with 100 warm-up steps and a cosine decay to 0 at the end of the
  budget (the same clock-driven decay as difflab's; lr 1e-3 without decay gave FD 0.929 against 0.673),
  gradient clipping at 1, EMA warm-up
  with power 3/4 (diffusers' advice for runs under ~10k steps) capped at 0.999 and, with `--bf16`,
  bf16 autocast (what accelerate's `--mixed_precision bf16` does; 1.24x faster here). Its training loop is
  the one of diffusers' `train_unconditional.py` example, written plainly. `--schedule squaredcos_cap_v2
  --prediction v_prediction` trains it on cosine betas with v-prediction instead (DDPMScheduler's own
  options). Sampled with diffusers' `DPMSolverMultistepScheduler` (2M) and `UniPCMultistepScheduler`,
  with their defaults and with `use_karras_sigmas=True`, from the EMA UNet, with the schedule and
  prediction it was trained with. `--snr-gamma G` trains it with min-SNR-G loss weighting (as diffusers'
  `train_text_to_image.py --snr_gamma`; difflab's preset uses min-SNR-5 since 2026-12-05).
- latent (issue 19): latent diffusion, all within the same budget: the `fashion_mnist_vae` autoencoder for
  `--ae-minutes` (lr decayed to 0 over them), the training set encoded once, then the `fashion_mnist_latent`
  model on its scaled latents for the rest of the budget (same fixed-time recipe and bf16 as difflab's side;
  `--ae-set` / `--latent-set` change either preset). Sampled with DIFFLAB_SAMPLERS over latents and scored
  on the decoded images; the autoencoder's reconstruction FD (the floor any latent model over it can reach)
  is reported beside.
- cascade (issue 19): the `fashion_mnist_base` model (14x14) for `--base-minutes`, then the `fashion_mnist_sr`
  super-resolution stage (14 -> 28, noise-conditioning augmentation up to level 0.5) for the rest, joined by a
  `fashion_mnist_cascade` run (augmentation level `--level` at sampling). At an NFE budget N each stage takes
  N / 2 steps of the same sampler (the same number of network evaluations as a one-stage model; the stages'
  networks cost about the same per evaluation). `--cascade-set` changes both stages' presets. `--ablation` also trains a second stage without augmentation
  (the same minutes, outside the budget) and scores the cascade with it and at other levels.
- Each side is scored by its best sampler at each NFE: Frechet distance, precision and recall in the
  shipped Fashion-MNIST feature network's space (`difflab.features`), `--n` samples against `--n`
  test images, beside the floor (`--n` training images in place of samples). Both sides are measured
  by difflab's harness (`difflab.bench.sweep`): the same starting noise, each example's noise from its
  own generator (so the figures do not depend on the batch size). A stochastic sampler
  (SDE-DPM-Solver++) also draws noise as it goes; its FD moves with that noise's seed (by +-0.05 at
  n = 1,000), so `--noise-seeds K` averages it over K seeds.
- The report names the recommended recipe at each NFE: the side of difflab's (pixel, cascade, latent) with the
  lowest FD, and its ratio to the diffusers baseline's (goal: at most 0.5 in both feature nets). On 2026-12-06 (3 seeds,
  n = 5,000, benchmarks/README.md): the pixel preset's default sampler, 0.37 at 10 NFE and 0.41 at 20 (0.37 and 0.37 in
  the second net).
  Writes `train_budget.json` and `train_budget.md` into `--out`.
- Every FD is the mean and standard deviation over `--seeds` (3) seeds of the noise (the starting noise and the
  noise stochastic samplers draw) at `--n` (5,000) samples against the same 5,000 test images, in the shipped
  feature network and in a second one trained independently (another architecture and seed,
  `difflab.features.SECOND_NETS`), each beside its floor; the goal is checked in both. `--n 1000 --seeds 1`
  shortlists samplers faster but does not rank sides: the FD's bias at that size is large (the floor is 0.068 at
  n = 1,000, 0.021 at 5,000) and smaller for less diverse models.

Run it alone: a second job on 2 cores slows both sides and the wall-clock budget means fewer steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import difflab as dl
import difflab.bench
from difflab.app.bench import over_seeds
from difflab.features import features, image_metrics, load_feature_net, second_feature_net

DIFFLAB_BUDGET_RECIPE = ("train.lr=2e-3", "train.lr_decay=cosine")  # the preset's fixed-time recipe
# difflab sampler specs, as `difflab bench samplers` takes them (name[@grid][:key=value...]); the default grid is trailing
DIFFLAB_SAMPLERS = ("dpmpp_2m", "unipc:variant=bh1", "dpmpp_2m@karras", "unipc@karras", "dpmpp_2m_sde", "dpmpp_2m_sde@karras")
# label -> (scheduler class, options): each with its default spacing and with Karras sigmas
DIFFUSERS_SCHEDULERS = {"DPMSolverMultistepScheduler": ("DPMSolverMultistepScheduler", {}),
                        "UniPCMultistepScheduler": ("UniPCMultistepScheduler", {}),
                        "DPMSolverMultistepScheduler karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
                        "UniPCMultistepScheduler karras": ("UniPCMultistepScheduler", {"use_karras_sigmas": True}),
                        "DPMSolverMultistepScheduler sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
                        "DPMSolverMultistepScheduler sde karras": ("DPMSolverMultistepScheduler",
                                                                   {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True})}


def train_difflab(out: Path, minutes: float, bf16: bool = True, overrides: tuple[str, ...] = ()) -> dict:
    cfg = dl.config.load_config("fashion_mnist", [f"train.max_minutes={minutes}", "train.steps=1000000",
                                                  "train.checkpoint_every=500", "train.device=cpu", f"train.amp_cpu={str(bf16).lower()}",
                                                  *overrides])
    res = dl.training.train(cfg, out, resume=False)
    return {"steps": res.step, "seconds": res.seconds, "batch_size": cfg.train.batch_size, "bf16": bf16, "overrides": list(overrides),
            "parameters": sum(p.numel() for p in dl.runs.load_network(out)[0].parameters())}


def _clock_recipe(minutes: float, bf16: bool) -> list[str]:
    return [f"train.max_minutes={minutes}", "train.steps=1000000", "train.checkpoint_every=500", "train.device=cpu",
            f"train.amp_cpu={str(bf16).lower()}", "train.lr_decay=cosine"]


def train_latent(out: Path, minutes: float, ae_minutes: float, bf16: bool = True, ae_overrides: tuple[str, ...] = (),
                 overrides: tuple[str, ...] = DIFFLAB_BUDGET_RECIPE) -> dict:
    """The autoencoder for `ae_minutes`, the encoding of the training set, then the latent model for what is left
    of `minutes` (module doc)."""
    t0 = time.time()
    ae_cfg = dl.config.load_config("fashion_mnist_vae", [*_clock_recipe(ae_minutes, bf16), *ae_overrides])
    ae = dl.training.train(ae_cfg, out / "vae", resume=False)
    cfg = dl.config.load_config("fashion_mnist_latent", [f'requires.autoencoder="{out / "vae"}"', *_clock_recipe(1, bf16), *overrides])
    dl.runs.latent_data(dl.config.build_data(cfg.data), out / "vae")  # encoded (and cached) inside the budget
    left = max(minutes - (time.time() - t0) / 60, 0.05)
    cfg = dl.config.load_config(cfg.to_dict(), [f"train.max_minutes={left}"])
    res = dl.training.train(cfg, out / "latent", resume=False)
    params = sum(sum(p.numel() for p in dl.runs.load_network(out / r)[0].parameters()) for r in ("vae", "latent"))
    return {"steps": res.step, "autoencoder_steps": ae.step, "autoencoder_seconds": ae.seconds, "seconds": time.time() - t0,
            "batch_size": cfg.train.batch_size, "bf16": bf16, "overrides": list(overrides), "ae_overrides": list(ae_overrides),
            "parameters": params, "reconstruction": reconstruction_figures(out / "vae")}


def train_cascade(out: Path, minutes: float, base_minutes: float, level: float, bf16: bool = True,
                  base_overrides: tuple[str, ...] = DIFFLAB_BUDGET_RECIPE, sr_overrides: tuple[str, ...] = DIFFLAB_BUDGET_RECIPE,
                  ablation: bool = False) -> dict:
    """The 14x14 base for `base_minutes`, the super-resolution stage for the rest of `minutes`, the cascade run
    (module doc); with `ablation` a second stage without augmentation too (outside the budget)."""
    t0 = time.time()
    base = dl.training.train(dl.config.load_config("fashion_mnist_base", [*_clock_recipe(base_minutes, bf16), *base_overrides]),
                             out / "base", resume=False)
    left = max(minutes - (time.time() - t0) / 60, 0.05)
    sr = dl.training.train(dl.config.load_config("fashion_mnist_sr", [*_clock_recipe(left, bf16), *sr_overrides]),
                           out / "sr", resume=False)
    seconds = time.time() - t0
    stages = lambda sr_dir, lv: dl.config.load_config("fashion_mnist_cascade", [  # noqa: E731
        f'requires.base="{out / "base"}"', f'requires.super_resolution="{sr_dir}"', f"cascade.low_res_noise={lv}"])
    dl.training.train(stages(out / "sr", level), out / "cascade", resume=False)
    info = {"steps": base.step + sr.step, "base_steps": base.step, "sr_steps": sr.step, "base_seconds": base.seconds,
            "seconds": seconds, "batch_size": 64, "bf16": bf16, "level": level,
            "overrides": [f"base: {' '.join(base_overrides)}", f"sr: {' '.join(sr_overrides)}"],
            "parameters": sum(sum(p.numel() for p in dl.runs.load_network(out / r)[0].parameters()) for r in ("base", "sr"))}
    if ablation:
        plain = dl.training.train(dl.config.load_config("fashion_mnist_sr", [*_clock_recipe(left, bf16), *sr_overrides,
                                                                             "diffusion.low_res_noise=0"]),
                                  out / "sr_plain", resume=False)
        dl.training.train(stages(out / "sr_plain", 0.0), out / "cascade_plain", resume=False)
        info["sr_plain_steps"] = plain.step
    return info


def cascade_job(cascade, spec, level: float | None = None, label: str | None = None) -> dl.bench.Job:
    """A cascade as a harness job: at a budget of N network evaluations, N / 2 steps of `spec` in each stage."""
    spec = dl.sampling.parse_sampler_spec(spec)
    level = cascade.level if level is None else level

    def draw(x_T, nfe, gens, cond):
        kw = spec.kwargs(max(1, nfe // 2))
        y, done = dl.sample(cascade.base, cascade.base_path, x=x_T, generator=gens, return_info=True, **kw)
        low = dl.cascade.low_res_condition(y.clamp(-1, 1), cascade.sr_path, level, gens)
        x, done2 = dl.sample(cascade.sr, cascade.sr_path, (len(y), *cascade.shape), generator=gens, cond=low,
                             return_info=True, **kw)
        return x, done.nfe + done2.nfe

    return dl.bench.Job(label or spec.label, "cascade", draw, spec.stochastic)


def reference(n: int, seed: int = 0):
    """(feature net, n test images as the reference, n training images for the floor), the same for every side."""
    net, _ = load_feature_net("fashion_mnist")
    g = torch.Generator().manual_seed(10_000 + seed)
    test, train = dl.data.fashion_mnist("test").images, dl.data.fashion_mnist("train").images
    return net, test[torch.randperm(len(test), generator=g)[:n]], train[torch.randperm(len(train), generator=g)[:n]]


def second_judge(real):
    """FD in the second, independently trained feature network (`difflab.features.SECOND_NETS`) against `real`."""
    net, _ = load_feature_net(second_feature_net("fashion_mnist"))
    stats = dl.metrics.gaussian_stats(features(net, real)[0])
    return lambda x: dl.metrics.frechet_distance(stats, features(net, x)[0])


@torch.no_grad()
def reconstruction_figures(ae_dir: Path, n: int = 1000) -> dict:
    """FD, precision, recall of the autoencoder's reconstructions of the floor's training images, and their PSNR."""
    net, real, pick = reference(n)
    ae, _, _ = dl.load(ae_dir)
    rec = ae.decode(ae.encode(pick)).clamp(-1, 1)
    m = image_metrics(net, real, rec)
    psnr = float((-10 * torch.log10(((rec - pick) / 2).square().flatten(1).mean(1))).mean())
    return {"fd": m["fd"], "precision": m["precision"], "recall": m["recall"], "psnr": psnr}


def baseline_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(32, 64, 64),
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8)


def train_diffusers(out: Path, minutes: float, *, lr: float = 1e-3, batch_size: int = 128, warmup: int = 100,
                    seed: int = 0, bf16: bool = True, decay: str = "none", schedule: str = "linear",
                    prediction: str = "epsilon", snr_gamma: float | None = None) -> dict:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_constant_schedule_with_warmup
    from diffusers.training_utils import EMAModel, compute_snr
    from tqdm import tqdm

    torch.manual_seed(seed)
    images = dl.data.fashion_mnist("train").images
    unet = baseline_unet()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule=schedule, prediction_type=prediction)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    lr_sched = get_constant_schedule_with_warmup(opt, warmup)
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    g = torch.Generator().manual_seed(seed)
    deadline, t0, step, losses = time.time() + 60 * minutes, time.time(), 0, []
    bar = tqdm(desc="training diffusers baseline", unit="step", mininterval=30)
    unet.train()
    while time.time() < deadline:
        for idx in torch.randperm(len(images), generator=g).split(batch_size):
            if len(idx) < batch_size or time.time() >= deadline:
                break
            if decay != "none":  # the same clock-driven decay as difflab's train.lr_decay under train.max_minutes
                factor = dl.training.lr_decay_factor((time.time() - t0) / (60 * minutes), decay)
                for group in opt.param_groups:
                    group["lr"] = lr_sched.get_last_lr()[0] * factor
            x0 = images[idx]
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = unet(scheduler.add_noise(x0, noise, t), t).sample
            target = noise if prediction == "epsilon" else scheduler.get_velocity(x0, noise, t)
            if snr_gamma is None:
                loss = torch.nn.functional.mse_loss(pred.float(), target)
            else:  # min-SNR-gamma, as diffusers' train_text_to_image.py --snr_gamma writes it
                snr = compute_snr(scheduler, t)
                weight = snr.clamp(max=snr_gamma) / (snr if prediction == "epsilon" else snr + 1)
                loss = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3)).mul(weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            lr_sched.step()
            ema.step(unet.parameters())
            step += 1
            losses.append(loss.item())
            bar.update(1)
    bar.close()
    seconds = time.time() - t0
    ema.copy_to(unet.parameters())
    unet.eval().save_pretrained(out)  # safetensors
    info = {"steps": step, "seconds": seconds, "batch_size": batch_size, "lr": lr, "warmup": warmup, "bf16": bf16, "decay": decay,
            "schedule": schedule, "prediction": prediction, "snr_gamma": snr_gamma, "parameters": sum(p.numel() for p in unet.parameters()), "last_loss_mean_100": sum(losses[-100:]) / max(1, len(losses[-100:]))}
    (out / "train_info.json").write_text(json.dumps(info, indent=1))
    return info


@torch.no_grad()
def sample_diffusers(unet, name: str, x_T: torch.Tensor, nfe: int, generators=None, schedule: str = "linear",
                     prediction: str = "epsilon") -> torch.Tensor:
    """One batch drawn as diffusers users draw it: the scheduler's loop around the UNet (the SDE scheduler's
    noise from `generators`, one per example)."""
    import diffusers

    cls, options = DIFFUSERS_SCHEDULERS[name]
    sched = getattr(diffusers, cls)(num_train_timesteps=1000, beta_schedule=schedule, prediction_type=prediction, **options)
    sched.set_timesteps(nfe)
    extra = {"generator": list(generators)} if "sde" in options.get("algorithm_type", "") else {}
    x = x_T * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x, **extra).prev_sample
    return x.clamp(-1, 1)


def diffusers_side_job(unet, name: str, **param) -> dl.bench.Job:
    return dl.bench.Job(name, "diffusers", lambda x_T, nfe, gens, cond: (sample_diffusers(unet, name, x_T, nfe, gens, **param), nfe),
                        stochastic="sde" in name.split())


def fmt_fd(row: dict, key: str = "fd") -> str:
    """FD (`key`: fd, or fd_b in the second feature net), with its spread over the seeds when there were several."""
    if key not in row:
        return "-"
    k = row.get("seeds", row.get("noise_seeds", 1))
    return f"{row[key]:.3f}" if k == 1 else f"{row[key]:.3f} ± {row.get(key + '_std', 0.0):.3f}"


def score(out: Path, nfes, n: int, sides=("difflab", "diffusers"), seed: int = 0, diffusers_train: dict | None = None,
          labels=None, noise_seeds: int = 1, seeds: int = 1) -> dict:
    """Every side's samplers at each NFE through difflab's harness (`dl.bench.sweep`): the same starting noise
    for the pixel sides (a latent side draws its own, of its latents' shape), each example's noise from its own
    generator, stochastic samplers averaged over `noise_seeds`; all of it for `seeds` seeds of the noise (the
    starting noise and the noise drawn along the way), the figures their mean and spread (`over_seeds`), in both
    feature networks (fd; fd_b in the second) against the same real images."""
    if seeds > 1:
        runs = [score(out, nfes, n, sides, seed + k, diffusers_train, labels, noise_seeds) for k in range(seeds)]
        return {**runs[0], "seeds": seeds, "rows": over_seeds([r["rows"] for r in runs])}
    net, real, pick = reference(n, 0)  # the same real images for every seed: the spread is the samples' own
    floor = image_metrics(net, real, pick)
    fd_b = second_judge(real)
    floor["fd_b"] = fd_b(pick)

    def wanted(spec):
        return labels is None or spec in labels

    def difflab_jobs(den, path, folder):
        extra = [spec for spec in labels or () if spec not in DIFFLAB_SAMPLERS and spec not in DIFFUSERS_SCHEDULERS
                 and spec != "default"]
        default = [dl.bench.default_job(dl.runs.run_config(folder), den, path, folder)] if wanted("default") else []
        return default + [dl.bench.difflab_job(den, path, spec) for spec in DIFFLAB_SAMPLERS if wanted(spec)] + \
               [dl.bench.difflab_job(den, path, spec) for spec in extra]

    groups = []  # (side name or None to keep the job's library, jobs, starting noise, decode)
    pixel_jobs = []
    if "difflab" in sides:
        den, path, _ = dl.load(out / "difflab")
        x_T = dl.sampling.prior_noise(path, n, (1, 28, 28), seed)
        pixel_jobs += difflab_jobs(den, path, out / "difflab")
    else:
        x_T = dl.sampling.prior_noise(dl.paths.DiscreteVP.linear(1000), n, (1, 28, 28), seed)  # sigma(1) = 1 on both sides
    if "diffusers" in sides:
        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(out / "diffusers").eval()
        dt = diffusers_train or {}
        param = {"schedule": dt.get("schedule", "linear"), "prediction": dt.get("prediction", "epsilon")}
        pixel_jobs += [diffusers_side_job(unet, name, **param) for name in DIFFUSERS_SCHEDULERS if wanted(name)]
    if pixel_jobs:
        groups.append((None, pixel_jobs, x_T, None))
    if "cascade" in sides:
        import difflab.cascade  # noqa: F401

        cascade, _, _ = dl.load(out / "cascade" / "cascade")
        start = dl.sampling.prior_noise(cascade.base_path, n, cascade.base_shape, seed)
        jobs = [cascade_job(cascade, spec) for spec in DIFFLAB_SAMPLERS if wanted(spec)]
        groups.append(("cascade", jobs, start, None))
        if (out / "cascade" / "cascade_plain").is_dir() and labels is None:  # the ablation: levels, and no augmentation
            plain, _, _ = dl.load(out / "cascade" / "cascade_plain")
            spec = "dpmpp_2m_sde@karras"
            jobs = [cascade_job(cascade, spec, lv, f"{spec}, level {lv:g}") for lv in (0.0, 0.1, 0.3)]
            jobs.append(cascade_job(plain, spec, 0.0, f"{spec}, second stage without augmentation"))
            groups.append(("cascade ablation", jobs, start, None))
    if "latent" in sides:
        den, path, _ = dl.load(out / "latent" / "latent")
        shape = tuple(dl.runs.data_info(out / "latent" / "latent")["shape"])
        groups.append(("latent", difflab_jobs(den, path, out / "latent" / "latent"), dl.sampling.prior_noise(path, n, shape, seed), den.decode))

    def log(line):
        print(line, flush=True)

    rows = []
    for side, jobs, start, decode in groups:
        def figures(x, decode=decode):
            if decode is not None:
                with torch.no_grad():
                    x = torch.cat([decode(x[i:i + 500]) for i in range(0, len(x), 500)])
            m = image_metrics(net, real, x.clamp(-1, 1))
            return {**{key: m[key] for key in ("fd", "precision", "recall")}, "fd_b": fd_b(x.clamp(-1, 1))}

        # diffusers: Karras sigmas on cosine betas repeat timesteps (IndexError, AssertionError); a failure is a row
        got = dl.bench.sweep(jobs, start, nfes, figures, seed=seed, batch_size=500, noise_seeds=noise_seeds, log=log,
                             errors=(ValueError, IndexError, AssertionError))
        for r in got:
            library = r.pop("library")
            r["side"] = side or library
            r.setdefault("noise_seeds", 1)
            r.setdefault("fd_std", 0.0)
        rows += got
    return {"n": n, "seeds": 1, "floor": {k: floor[k] for k in ("fd", "fd_b", "precision", "recall")},
            "rows": [r for r in rows if "error" not in r]}


def report(result: dict) -> str:
    rows = result["scores"]["rows"]
    tr = {side: t for side, t in result["train"].items() if any(r["side"] == side for r in rows)}
    main_rows = [r for r in rows if r["side"] in tr]
    k = result["scores"].get("seeds", 1)
    lines = [f"# Quality per CPU-minute: {result['minutes']} min of training each, {result['scores']['n']} samples"
             + (f", FD as mean ± standard deviation over {k} noise seeds" if k > 1 else ""), "",
             "| side | parameters | batch | bf16 | steps in budget | images seen | recipe changes |", "|---|---|---|---|---|---|---|"]
    for side, t in tr.items():
        changes = (", ".join(t.get("overrides", [])) if side != "diffusers"
                   else f"lr {t['lr']:g}, warm-up {t['warmup']}, decay {t.get('decay', 'none')}, "
                        f"{t.get('schedule', 'linear')} betas, {t.get('prediction', 'epsilon')}")
        steps = f"{t['steps']}" + (f" (+ {t['autoencoder_steps']} autoencoder steps in {t['autoencoder_seconds'] / 60:.1f} min)"
                                   if "autoencoder_steps" in t else "")
        if "base_steps" in t:
            steps = f"{t['base_steps']} base ({t['base_seconds'] / 60:.1f} min) + {t['sr_steps']} super-resolution"
        lines.append(f"| {side} | {t['parameters'] / 1e6:.2f}M | {t['batch_size']} | {t.get('bf16', False)} | {steps} | "
                     f"{t['steps'] * t['batch_size']:,} | {changes or 'none'} |")
    fl = result["scores"]["floor"]
    lines += ["", f"Floor (real training images): FD {fl['fd']:.3f}"
              + (f" (second feature net: {fl['fd_b']:.3f})" if "fd_b" in fl else "")
              + f", precision {fl['precision']:.3f}, recall {fl['recall']:.3f}"]
    for side, t in tr.items():
        if "reconstruction" in t:
            r = t["reconstruction"]
            lines.append(f"{side}: the autoencoder's reconstructions of the same training images: FD {r['fd']:.3f}, precision "
                         f"{r['precision']:.3f}, recall {r['recall']:.3f}, PSNR {r['psnr']:.2f} dB (the floor of its latent model)")
    lines.append("")
    recommended = []
    if len(tr) > 1:
        names = list(tr)
        lines += ["| NFE | " + " | ".join(f"{s} best | FD | FD, second net | P / R | s per sample" for s in names)
                  + (" | FD ratio to diffusers (first net; second net) |" if "diffusers" in tr else " |"),
                  "|---|" + "---|---|---|---|---|" * len(names) + ("---|" if "diffusers" in tr else "")]
        for nfe in sorted({r["nfe"] for r in main_rows}):
            best = {side: min((r for r in rows if r["side"] == side and r["nfe"] == nfe), key=lambda r: r["fd"], default=None)
                    for side in names}
            cells = [f"{b['sampler']} | {fmt_fd(b)} | {fmt_fd(b, 'fd_b')} | {b['precision']:.3f} / {b['recall']:.3f} | "
                     f"{b['seconds_per_sample']:.4f}" if b else "- | - | - | - | -" for b in best.values()]
            ratio = ""
            if "diffusers" in tr and best["diffusers"]:
                # in the second net, each side's best there (the best sampler may differ between the nets)
                best_b = {side: min((r for r in rows if r["side"] == side and r["nfe"] == nfe and "fd_b" in r),
                                    key=lambda r: r["fd_b"], default=None) for side in names}
                ratio = " | " + ", ".join(f"{s} {best[s]['fd'] / best['diffusers']['fd']:.2f}"
                                          + (f"; {best_b[s]['fd_b'] / best_b['diffusers']['fd_b']:.2f}"
                                             if best_b[s] and best_b["diffusers"] else "")
                                          for s in names if s != "diffusers" and best[s])
            lines.append(f"| {nfe} | " + " | ".join(cells) + ratio + " |")
            ours = {side: b for side, b in best.items() if side != "diffusers" and b}
            if ours:  # the recommended recipe at this NFE: difflab's side with the lowest FD (issue 19)
                side = min(ours, key=lambda k: ours[k]["fd"])
                verdict = ""
                if "diffusers" in tr and best["diffusers"]:
                    r = ours[side]["fd"] / best["diffusers"]["fd"]
                    rb = (best_b[side]["fd_b"] / best_b["diffusers"]["fd_b"] if best_b.get(side) and best_b.get("diffusers")
                          else None)
                    met = r <= 0.5 and (rb is None or rb <= 0.5)
                    verdict = (f", {r:.2f} of the diffusers baseline's" + (f" ({rb:.2f} in the second feature net)" if rb else "")
                               + f" (goal <= 0.5{' in both' if rb else ''}: {'met' if met else 'not met'})")
                recommended.append(f"- {nfe} NFE: **{side}** with `{ours[side]['sampler']}`, FD {fmt_fd(ours[side])}{verdict}")
        lines += ["", "Recommended recipe (the lowest FD of difflab's sides):", "", *recommended, "", "Every sampler:", ""]
    lines += ["| side | sampler | NFE | FD | FD, second net | precision | recall | s per sample |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['side']} | {r['sampler']} | {r['nfe']} | {fmt_fd(r)} | {fmt_fd(r, 'fd_b')} | {r['precision']:.3f} | "
              f"{r['recall']:.3f} | {r['seconds_per_sample']:.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path("runs/budget"))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=3, metavar="K",
                    help="score every sampler with K seeds of the noise (starting and along the way): mean and spread")
    ap.add_argument("--nfe", default="10,20")
    ap.add_argument("--sides", default="difflab,diffusers", help="train and score only these sides (for sweeps)")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="a change to difflab's fashion_mnist preset, as for `difflab train --set` (repeatable; "
                         f"default: {' '.join(DIFFLAB_BUDGET_RECIPE)})")
    ap.add_argument("--ae-minutes", type=float, default=5.0, help="latent side: the autoencoder's share of --minutes")
    ap.add_argument("--ae-set", action="append", default=[], metavar="KEY=VALUE",
                    help="latent side: a change to the fashion_mnist_vae preset (repeatable)")
    ap.add_argument("--latent-set", action="append", default=None, metavar="KEY=VALUE",
                    help="latent side: a change to the fashion_mnist_latent preset (repeatable; default: "
                         f"{' '.join(DIFFLAB_BUDGET_RECIPE)})")
    ap.add_argument("--base-minutes", type=float, default=12.0, help="cascade side: the base stage's share of --minutes")
    ap.add_argument("--cascade-set", action="append", default=None, metavar="KEY=VALUE",
                    help="cascade side: a change to both stages' presets (repeatable; default: "
                         f"{' '.join(DIFFLAB_BUDGET_RECIPE)})")
    ap.add_argument("--level", type=float, default=0.2, help="cascade side: the augmentation level at sampling")
    ap.add_argument("--ablation", action="store_true", help="cascade side: also a second stage without augmentation "
                    "(outside the budget), and the cascade at levels 0, 0.1, 0.3")
    ap.add_argument("--lr", type=float, default=2e-3, help="the diffusers baseline's learning rate")
    ap.add_argument("--batch", type=int, default=128, help="the diffusers baseline's batch size")
    ap.add_argument("--decay", default="cosine", choices=("none", "cosine", "linear"),
                    help="the diffusers baseline's learning-rate decay over the budget (as train.lr_decay)")
    ap.add_argument("--schedule", default="linear", choices=("linear", "squaredcos_cap_v2"),
                    help="the diffusers baseline's beta schedule (DDPMScheduler's beta_schedule)")
    ap.add_argument("--prediction", default="epsilon", choices=("epsilon", "v_prediction"),
                    help="what the diffusers baseline's UNet predicts (DDPMScheduler's prediction_type)")
    ap.add_argument("--snr-gamma", type=float, default=None, metavar="GAMMA",
                    help="the diffusers baseline's loss with min-SNR-gamma weighting (its train_text_to_image.py --snr_gamma)")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="bf16 autocast in training on both sides (--no-bf16: float32)")
    ap.add_argument("--skip-train", action="store_true", help="score the models already in --out")
    ap.add_argument("--noise-seeds", type=int, default=1, metavar="K",
                    help="draw each stochastic sampler's noise from K seeds and report the mean FD (and its spread)")
    ap.add_argument("--samplers", default=None, metavar="LABELS",
                    help="score only these comma-separated sampler labels at --nfe on --sides, keeping --out's earlier rows "
                         "for the others (same --n); a difflab label may also be a spec name[@grid][:key=value...] "
                         "(e.g. ddpm, dpmpp_2m_sde@karras:rho=4:eta=0.5)")
    a = ap.parse_args()
    a.set = DIFFLAB_BUDGET_RECIPE if a.set is None else tuple(a.set)
    a.latent_set = DIFFLAB_BUDGET_RECIPE if a.latent_set is None else tuple(a.latent_set)
    a.cascade_set = DIFFLAB_BUDGET_RECIPE if a.cascade_set is None else tuple(a.cascade_set)
    if a.noise_seeds < 1 or a.seeds < 1:
        ap.error(f"--noise-seeds and --seeds must be at least 1, got {a.noise_seeds}, {a.seeds}")
    sides = tuple(a.sides.split(","))
    if not set(sides) <= {"difflab", "diffusers", "latent", "cascade"} or not sides:
        ap.error(f"--sides takes difflab, diffusers, latent and/or cascade, got {a.sides!r}")
    if "cascade" in sides and not 0 < a.base_minutes < a.minutes:
        ap.error(f"--base-minutes must lie between 0 and --minutes ({a.minutes}), got {a.base_minutes}")
    if "latent" in sides and not 0 < a.ae_minutes < a.minutes:
        ap.error(f"--ae-minutes must lie between 0 and --minutes ({a.minutes}), got {a.ae_minutes}")
    a.out.mkdir(parents=True, exist_ok=True)
    results_file = a.out / "train_budget.json"
    # Sides trained (and scored) earlier into --out are kept, so one side can be retrained and all scored again.
    earlier = json.loads(results_file.read_text()) if results_file.exists() else {}
    train = earlier.get("train", {})
    if a.skip_train:
        if missing := [s for s in sides if s not in train]:
            ap.error(f"--skip-train: {results_file} has no trained {', '.join(missing)} side; train it first")
    else:
        if "difflab" in sides:
            train["difflab"] = train_difflab(a.out / "difflab", a.minutes, a.bf16, a.set)
        if "cascade" in sides:
            train["cascade"] = train_cascade(a.out / "cascade", a.minutes, a.base_minutes, a.level, a.bf16, a.cascade_set,
                                             a.cascade_set, ablation=a.ablation)
        if "latent" in sides:
            train["latent"] = train_latent(a.out / "latent", a.minutes, a.ae_minutes, a.bf16, tuple(a.ae_set), a.latent_set)
        if "diffusers" in sides:
            train["diffusers"] = train_diffusers(a.out / "diffusers", a.minutes, lr=a.lr, batch_size=a.batch, bf16=a.bf16,
                                                 decay=a.decay, schedule=a.schedule, prediction=a.prediction,
                                                 snr_gamma=a.snr_gamma)
        kept_scores = {}
        if "scores" in earlier:  # the other sides' rows stay; a retrained side's are stale
            kept_scores = {"scores": {**earlier["scores"], "rows": [r for r in earlier["scores"]["rows"] if r["side"] not in sides]}}
        results_file.write_text(json.dumps({"minutes": a.minutes, "train": train, **kept_scores}, indent=1))
    for side, t in train.items():
        print(f"{side}: {t['steps']} steps of batch {t['batch_size']} in {t['seconds'] / 60:.1f} min ({t['parameters'] / 1e6:.2f}M parameters)")
    labels = None if a.samplers is None else a.samplers.split(",")
    for label in labels or []:
        if label not in DIFFUSERS_SCHEDULERS and label != "default":
            try:
                dl.sampling.parse_sampler_spec(label)
            except ValueError as e:
                ap.error(f"--samplers: {label!r} is neither one of diffusers' ({', '.join(DIFFUSERS_SCHEDULERS)}) nor a "
                         f"difflab sampler spec: {e}")
    nfes = [int(v) for v in a.nfe.split(",")]
    kept = []
    if labels is not None:  # keep the earlier rows of the samplers not rerun (the same n: the same noise and real set)
        previous = json.loads(results_file.read_text()).get("scores", {}) if results_file.exists() else {}
        if previous and (previous.get("n"), previous.get("seeds", 1)) != (a.n, a.seeds):
            ap.error(f"--samplers: {results_file} holds scores with n={previous.get('n')} and {previous.get('seeds', 1)} seed(s), "
                     f"not {a.n} and {a.seeds}: use its --n and --seeds, or another --out")
        kept = [r for r in previous.get("rows", [])
                if not (r["sampler"] in labels and r["nfe"] in nfes and r["side"] in sides)]
    scores = score(a.out, nfes, a.n, sides, diffusers_train=train.get("diffusers"), labels=labels,
                   noise_seeds=a.noise_seeds, seeds=a.seeds)
    scores["rows"] = sorted(kept + scores["rows"], key=lambda r: r["nfe"])
    result = {"minutes": a.minutes, "train": train, "scores": scores}
    results_file.write_text(json.dumps(result, indent=1))
    (a.out / "train_budget.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
