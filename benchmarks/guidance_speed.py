"""What classifier-free guidance costs per step on this machine: one batched pass against two calls.

A guided step needs the conditional and the unconditional denoiser at the same (x_t, t): either two network
calls on B examples, or one call on 2B (each condition concatenated with its null). This script times, for the
network of the `fashion_mnist_cond` preset (a class-conditional U-Net on 2x2 patches), at each batch size B:

- the unguided step: one call on B (the conditional denoiser alone);
- `guidance.classifier_free(..., batched=False)`: two calls on B;
- `guidance.classifier_free(..., batched=True)`: one call on 2B;
- and which of the two `classifier_free` picks by default at that B (`guidance.SMALL_BATCH`).

Each time is the median of `--reps` interleaved calls after a warm-up of each. The costs are given as
multiples of the unguided step. It also counts the network's FLOPs that come before the condition enters
(the first convolution and the first residual block's first convolution see only x_t, which both passes
share): were those computed once, one guided step would still cost at least (2 - that share) unguided ones on
a machine where time follows FLOPs.

    .venv/bin/python benchmarks/guidance_speed.py
    .venv/bin/python benchmarks/guidance_speed.py --batch 1,8,64,512 --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time

import torch

import difflab as dl
from difflab.app.config import load_config


def network():
    """The fashion_mnist_cond preset's network (fresh weights: the cost does not depend on their values), path and
    prediction."""
    cfg = load_config("fashion_mnist_cond")
    unet = dl.config.build_model(cfg.model, (1, 28, 28), 10).eval().requires_grad_(False)
    return unet, dl.config.build_path(cfg.diffusion), cfg.diffusion.prediction


def shared_share(unet, batch: int = 8) -> float:
    """The share of one call's FLOPs that depends on x_t alone (conv_in, and the first block's norm1 -> conv1)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t = torch.randn(batch, 1, 28, 28), torch.rand(batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        unet(x, t, label=torch.zeros(batch, dtype=torch.long))
    counts = counter.get_flop_counts()
    total = sum(counts["Global"].values())
    shared = sum(sum(v.values()) for k, v in counts.items() if k.endswith(("UNet.conv_in", "UNet.down.0.0.conv1")))
    return shared / total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", default="1,4,16,64,256,512")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=None, help="the denoiser's parts (denoisers.NetworkDenoiser's chunk; "
                    "0: the whole batch in one call; default: the library's)")
    ap.add_argument("--scale", type=float, default=3.0, help="the guidance weight w (the cost does not depend on it)")
    a = ap.parse_args()
    batches = [int(b) for b in a.batch.split(",")]
    if min(batches) < 1 or a.reps < 1:
        ap.error("--batch takes positive integers, --reps at least 1")
    torch.manual_seed(0)
    unet, path, prediction = network()
    den = dl.as_denoiser(unet, path, prediction, chunk=a.chunk)
    variants = {"unguided": den,
                "two calls": dl.guidance.ClassifierFree(den, a.scale, batched=False),
                "one pass": dl.guidance.ClassifierFree(den, a.scale, batched=True)}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else contextlib.nullcontext()
    print(f"# classifier-free guidance per step, fashion_mnist_cond's network, {a.precision}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; median of {a.reps} interleaved calls; the denoiser's parts: "
          f"{'the library default' if a.chunk is None else a.chunk or 'whole batch'}\n")
    print("| batch B | unguided (ms) | ms per example | two calls on B (x unguided) | one pass on 2B (x unguided) | "
          "default picks |")
    print("|---|---|---|---|---|---|")
    with torch.no_grad(), autocast:
        for b in batches:
            x, t = torch.randn(b, 1, 28, 28), torch.rand(b) * 0.98 + 0.01
            label = torch.randint(0, 10, (b,))
            calls = {name: functools.partial(v, x, t, label=label) for name, v in variants.items()}
            for fn in calls.values():
                fn()  # warm-up: oneDNN picks its kernels for each new shape
            times = {name: [] for name in calls}
            for _ in range(a.reps):
                for name, fn in calls.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            picks = "one pass" if 2 * b <= dl.guidance.SMALL_BATCH else "two calls"
            print(f"| {b} | {1000 * med['unguided']:.1f} | {1000 * med['unguided'] / b:.2f} | "
                  f"{med['two calls'] / med['unguided']:.2f} | {med['one pass'] / med['unguided']:.2f} | {picks} |")
    share = shared_share(unet)
    print(f"\nFLOPs that see x_t alone (shared by both passes): {share:.1%} of a call; computed once, one guided step "
          f"would still cost at least {2 - share:.2f}x an unguided one where time follows FLOPs")


if __name__ == "__main__":
    main()
