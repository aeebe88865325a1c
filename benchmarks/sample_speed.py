"""Sampling throughput: images per second at 10 and 20 NFE, difflab beside diffusers' pipeline.

Three networks, each timed in its own fresh process per (precision, batch), the processes alternated and
the median of `--rounds` kept:

- `preset`: the network of difflab's `fashion_mnist` preset (a U-Net on 2x2 patches, 64 channels; what
  `difflab sample` runs), with the preset's sampler at each budget ([sample.by_nfe]: `unipc@karras` at 10 NFE,
  `dpmpp_2m_sde@karras` at 20), through `dl.sample`. `--run RUN` loads a trained run's EMA weights (clipped as
  `difflab sample` does); without it the weights are the freshly initialised ones (the cost does not depend on
  the weights' values).
- `difflab` and `diffusers`: the same architecture on both sides, as benchmarks/train_speed.py's default
  (`dl.nets.UNet(1, 32, (1, 2, 2), 1, attention_levels=(-1,))` against its `UNet2DModel` twin, linear betas,
  eps): difflab's samplers above through `dl.sample`, diffusers' pipeline loop (`DDPMPipeline`'s, written out:
  its `__call__` hands every scheduler a generator, which UniPC's `step` refuses) with its best schedulers on
  this task (benchmarks/README.md, "Quality per CPU-minute"): `UniPCMultistepScheduler` with Karras sigmas at
  10 NFE, `DPMSolverMultistepScheduler` (SDE-DPM-Solver++, Karras sigmas) at 20; one network evaluation per
  step on both sides.

Precisions: float32, and bf16 autocast (the network's convolutions and matmuls in bf16, the sampler's
arithmetic in float32) on both sides. Each figure is the whole call (starting noise to images) after one
warm-up call at the same batch.

    .venv/bin/python benchmarks/sample_speed.py --rounds 3
    .venv/bin/python benchmarks/sample_speed.py --rounds 1 --batch 64 --precision fp32 --nets difflab,diffusers
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
import time
from types import SimpleNamespace

import torch
from fresh import alternate, medians
from train_speed import make

NETS = ("preset", "difflab", "diffusers")
DIFFLAB_SAMPLERS = {10: "unipc@karras", 20: "dpmpp_2m_sde@karras"}  # the fashion_mnist preset's [sample.by_nfe]
SAME = SimpleNamespace(mult="1,2,2", channels=32, blocks=1, patch=1, size=28)  # train_speed.py's default pair
DIFFUSERS_SAMPLERS = {10: "UniPCMultistepScheduler karras", 20: "DPMSolverMultistepScheduler sde karras"}


def difflab_sampler(net: str, run: str | None, device: str = "cpu"):
    """draw(batch, nfe, seed) -> images with difflab's sampler at that budget, for the `preset` or same-architecture net."""
    import difflab as dl

    if net == "preset" and run:
        denoiser, path, _ = dl.load(run, device=device)
    elif net == "preset":
        cfg = dl.config.load_config("fashion_mnist")
        unet = dl.config.build_model(cfg.model, (1, 28, 28), None).eval().requires_grad_(False).to(device)
        path = dl.config.build_path(cfg.diffusion)
        denoiser = dl.as_denoiser(unet, path, cfg.diffusion.prediction)
    else:
        _, unet = make("difflab", SAME)
        unet.eval().requires_grad_(False).to(device)
        path = dl.paths.DiscreteVP.linear(1000)
        denoiser = dl.as_denoiser(unet, path, "eps")

    def draw(batch: int, nfe: int, seed: int):
        spec = dl.sampling.parse_sampler_spec(DIFFLAB_SAMPLERS[nfe])
        with torch.no_grad():
            return dl.sample(denoiser, path, (batch, 1, 28, 28), generator=torch.Generator().manual_seed(seed),
                             device=device, **spec.kwargs(nfe)).cpu()
    return draw


def diffusers_sampler(device: str = "cpu"):
    """draw(batch, nfe, seed) -> images from diffusers' DDPMPipeline on the same-architecture UNet2DModel."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
    from diffusers.utils.torch_utils import randn_tensor

    _, unet = make("diffusers", SAME)
    unet.eval().requires_grad_(False).to(device)
    schedulers = {10: UniPCMultistepScheduler(num_train_timesteps=1000, use_karras_sigmas=True),
                  20: DPMSolverMultistepScheduler(num_train_timesteps=1000, algorithm_type="sde-dpmsolver++",
                                                  use_karras_sigmas=True)}

    def draw(batch: int, nfe: int, seed: int):
        # DDPMPipeline's loop (its __call__ hands a generator to every scheduler's step, which UniPC's refuses)
        scheduler, g = schedulers[nfe], torch.Generator().manual_seed(seed)
        takes_generator = "generator" in inspect.signature(scheduler.step).parameters
        image = randn_tensor((batch, 1, 28, 28), generator=g, device=torch.device(device))
        scheduler.set_timesteps(nfe)
        with torch.no_grad():
            for t in scheduler.timesteps:
                out = unet(scheduler.scale_model_input(image, t), t).sample
                image = scheduler.step(out, t, image, **({"generator": g} if takes_generator else {})).prev_sample
        return (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()
    return draw


def child(spec: str, a) -> dict:
    """Time one network at one precision and batch: {nfe: images per second}."""
    net, precision, batch = spec.split(":")
    batch = int(batch)
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    if a.chunk is not None:
        import difflab as dl

        dl.denoisers.CPU_PART_NUMBERS = a.chunk * 28 * 28 or 2**62  # read at each call: a part is a.chunk images
    draw = diffusers_sampler(a.device) if net == "diffusers" else difflab_sampler(net, a.run, a.device)
    device_type = torch.device(a.device).type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    out = {"net": net, "precision": precision, "batch": batch}
    with autocast:
        draw(batch, 10, seed=1)  # warm-up: the first call of a shape pays for oneDNN's kernel choice
        for nfe in a.nfe:
            t0 = time.perf_counter()
            draw(batch, nfe, seed=0)
            out[f"nfe{nfe}"] = batch / (time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(NETS), help=f"which of {', '.join(NETS)}")
    ap.add_argument("--batch", default="64,512")
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--rounds", type=int, default=3, help="alternate all processes this many times; medians reported")
    ap.add_argument("--run", default=None, help="a trained fashion_mnist run whose weights the preset net loads")
    ap.add_argument("--chunk", type=int, default=None, help="difflab's denoiser evaluates a batch in parts of at most "
                    "this many examples (0: whole; default: the library's, denoisers.CPU_PART_NUMBERS)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both sides on it; images come back to the CPU)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.nfe = (10, 20)
    nets, precisions = a.nets.split(","), a.precision.split(",")
    batches = [int(b) for b in a.batch.split(",")]
    if not set(nets) <= set(NETS) or not set(precisions) <= {"fp32", "bf16"} or min(batches) < 1:
        ap.error(f"--nets takes {', '.join(NETS)}; --precision fp32 and/or bf16; --batch positive integers")
    if a.child:
        print(json.dumps(child(a.child, a)))
        return
    specs = [f"{n}:{p}:{b}" for p in precisions for b in batches for n in nets]
    runs = alternate(__file__, specs, sys.argv[1:], a.rounds)
    rows = {spec: medians(rs, [f"nfe{n}" for n in a.nfe]) for spec, rs in runs.items()}
    where = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else f"{a.threads} threads"
    print(f"# sampling throughput (images/s) on {a.device}, 1x28x28, {where}, torch {torch.__version__}; median of "
          f"{a.rounds} round(s), each (network, precision, batch) in a fresh process; preset weights: "
          f"{a.run or 'fresh initialisation'}; difflab's parts: {'library default' if a.chunk is None else a.chunk or 'whole batch'}\n")
    print("| network | sampler at 10 / 20 NFE | precision | batch | 10 NFE | 20 NFE | difflab / diffusers (10; 20) |")
    print("|---|---|---|---|---|---|---|")
    for spec, r in rows.items():
        net, precision, batch = spec.split(":")
        samplers = DIFFUSERS_SAMPLERS if net == "diffusers" else DIFFLAB_SAMPLERS
        twin = rows.get(f"diffusers:{precision}:{batch}")
        ratio = (f"{r['nfe10'] / twin['nfe10']:.2f}; {r['nfe20'] / twin['nfe20']:.2f}"
                 if net == "difflab" and twin else "")
        print(f"| {net} | {samplers[10]} / {samplers[20]} | {precision} | {batch} | {r['nfe10']:.0f} | {r['nfe20']:.0f} | {ratio} |")
    print("\nevery round's images/s at 10 NFE: " + "; ".join(
        f"{spec} {[round(r['nfe10'], 1) for r in rs]}" for spec, rs in runs.items()))


if __name__ == "__main__":
    main()
