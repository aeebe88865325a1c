"""Training-step speed and peak memory: difflab's UNet against diffusers' UNet2DModel, side by side.

Both networks are the same architecture (channels, blocks, attention at the lowest level and in the middle,
the time embedding scaling and shifting each block's second GroupNorm; parameter counts printed, within 0.1%
at the default), trained with the same loss (eps-MSE on
DDPM's linear schedule), AdamW, batch and resolution. Each model runs in its own fresh process so
that peak memory (max resident set size during the timed steps, minus the resident size before
them) is its own.

    ./dev bench train_speed                    # Fashion-MNIST sized: 1x28x28, batch 64
    ./dev bench train_speed --size 8 --batch 64 --channels 32 --mult 1,2 --blocks 2
    ./dev bench train_speed --patch 2 --channels 64 --mult 1,1   # difflab's fashion_mnist preset network

With `--patch` only difflab's network changes (a U-Net on patch x patch pixel patches, as
`model.patch_size`); diffusers' UNet2DModel has no such stem and stays at full resolution.

Levers, applied to both sides alike: `--channels-last` (memory format of the network and its input), `--optim
foreach|fused` (AdamW's multi-tensor or fused kernels), `--bf16` (autocast), `--compile` (torch.compile; its
cold start is reported apart), `--micro K` (each batch in K parts whose gradients add up to the batch's). `--rounds R` runs the two sides alternately R times, each in a fresh process, and
reports medians. `--profile` prints each side's top operators (self CPU time and share of the step) and `--peak`
the fraction of the machine's float32 matmul peak (a large sgemm, measured in the same process) that the step's
FLOPs (counted by torch.utils.flop_counter) reach.

    .venv/bin/python benchmarks/train_speed.py --rounds 3 --peak --profile
    .venv/bin/python benchmarks/train_speed.py --rounds 3 --channels-last --optim fused
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch
from fresh import alternate, medians


def make(kind: str, a):
    mult = [int(m) for m in a.mult.split(",")]
    if kind == "difflab":
        import difflab as dl

        net = dl.nets.UNet(1, a.channels, tuple(mult), a.blocks, attention_levels=(-1,), patch_size=a.patch)
        return lambda x, t: net(x, t), net
    from diffusers import UNet2DModel

    chans = tuple(a.channels * m for m in mult)
    down = tuple("DownBlock2D" for _ in mult[:-1]) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + tuple("UpBlock2D" for _ in mult[:-1])
    net = UNet2DModel(sample_size=a.size, in_channels=1, out_channels=1, block_out_channels=chans, layers_per_block=a.blocks,
                      down_block_types=down, up_block_types=up, norm_num_groups=min(32, a.channels), attention_head_dim=32,
                      resnet_time_scale_shift="scale_shift")  # the time embedding scales and shifts, as difflab's ResBlock
    return lambda x, t: net(x, t * 1000).sample, net


def matmul_peak(threads: int, n: int = 2048, reps: int = 10) -> float:
    """The machine's float32 matmul rate (FLOP/s), the best of `reps` n x n sgemms."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child(kind: str, a) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    import contextlib

    import difflab as dl

    device = torch.device(a.device)
    fn, net = make(kind, a)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(device=device, memory_format=fmt)
    path = dl.paths.DiscreteVP.linear(1000)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, **({"foreach": True} if a.optim == "foreach" else
                                                          {"fused": True} if a.optim == "fused" else {"foreach": False}))
    g = torch.Generator(device).manual_seed(0)
    x0 = (torch.rand(a.batch, 1, a.size, a.size, generator=g, device=device) * 2 - 1).contiguous(memory_format=fmt)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if a.bf16 else contextlib.nullcontext
    call = torch.compile(fn) if a.compile else fn

    def step():
        t = torch.randint(1, 1001, (a.batch,), generator=g, device=device).float() / 1000
        z = torch.randn(x0.shape, generator=g, device=device).contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        for xs, ts, zs in zip(x0.chunk(a.micro), t.chunk(a.micro), z.chunk(a.micro)):  # the same gradient, summed by parts
            with autocast():
                loss = (call(path.perturb(xs, ts, zs), ts).float() - zs).pow(2).sum() / z.numel()
            loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    _sync(device)
    cold = time.perf_counter() - t0
    for _ in range(a.warmup - 1):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    _sync(device)
    secs = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":  # on a GPU the memory that matters is the device's: its peak during the timed steps
        rss0, rss1 = 0, torch.cuda.max_memory_allocated(device) / 1024
    out = {"kind": kind, "params": sum(p.numel() for p in net.parameters()), "images_per_s": a.steps * a.batch / secs,
           "ms_per_step": 1000 * secs / a.steps, "peak_rss_mb": rss1 / 1024, "peak_growth_mb": (rss1 - rss0) / 1024,
           "first_step_s": cold}
    if a.peak:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        out["flops_per_step"] = counter.get_total_flops()
        out["matmul_peak_flops"] = matmul_peak(a.threads)
        out["peak_fraction"] = out["flops_per_step"] / (secs / a.steps) / out["matmul_peak_flops"]
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        out["top_ops"] = [(e.key, e.self_cpu_time_total / total) for e in events[:12]]
        out["conv_share"] = sum(e.self_cpu_time_total for e in events if "convolution" in e.key) / total
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--mult", default="1,2,2")
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--patch", type=int, default=1, help="difflab's U-Net on patch x patch pixel patches (diffusers' has no such stem)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--channels-last", action="store_true", help="channels-last memory format (network and input)")
    ap.add_argument("--optim", default="plain", choices=("plain", "foreach", "fused"), help="AdamW's implementation")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network call (first step reported apart)")
    ap.add_argument("--micro", type=int, default=1, help="the batch in this many parts, their gradients summed (cache-sized "
                    "activations; the same gradient)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the sides this many times; medians reported")
    ap.add_argument("--peak", action="store_true", help="the fraction of the float32 matmul peak the step reaches")
    ap.add_argument("--profile", action="store_true", help="each side's top operators by self CPU time")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU, memory is the device's peak allocation)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a)))
        return
    if a.device != "cpu" and (a.profile or a.peak):
        ap.error("--profile and --peak measure the CPU: run them with --device cpu")
    runs = alternate(__file__, ("difflab", "diffusers"), sys.argv[1:], a.rounds)
    rows = []
    for kind, rs in runs.items():
        row = medians(rs, ("images_per_s", "ms_per_step", "peak_rss_mb", "peak_growth_mb", "first_step_s", "peak_fraction"))
        row["images_per_s_all"] = [round(r["images_per_s"], 1) for r in rs]
        rows.append(row)
    if a.peak:  # one peak for both sides: the best sgemm rate seen in any process (single runs vary by up to 40%)
        peak = max(r["matmul_peak_flops"] for rs in runs.values() for r in rs)
        for row in rows:
            row["matmul_peak_flops"] = peak
            row["peak_fraction"] = row["flops_per_step"] / (row["ms_per_step"] / 1000) / peak
    levers = [name for name, on in (("channels-last", a.channels_last), (f"AdamW {a.optim}", a.optim != "plain"),
                                     ("bf16 autocast", a.bf16), ("torch.compile", a.compile),
                                     (f"{a.micro} micro-batches", a.micro > 1)) if on]
    where = torch.cuda.get_device_name(a.device) if a.device.startswith("cuda") else f"{a.threads} threads"
    print(f"# training step on {a.device}, 1x{a.size}x{a.size}, batch {a.batch}, {where}, torch {torch.__version__}"
          f"{f', difflab on {a.patch}x{a.patch} patches' if a.patch > 1 else ''}; {', '.join(levers) or 'float32, no lever'}; "
          f"median of {a.rounds} round(s), each side in a fresh process\n")
    memory = "peak GPU memory (MB) | growth (MB)" if a.device != "cpu" else "peak RSS (MB) | RSS growth in the timed steps (MB)"
    print(f"| network | parameters | images/s | ms/step | {memory} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['params']:,} | {r['images_per_s']:.0f} | {r['ms_per_step']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_growth_mb']:.0f} |")
    d, f = rows
    print(f"\nspeed ratio difflab / diffusers: {d['images_per_s'] / f['images_per_s']:.2f}; "
          f"peak RSS ratio: {d['peak_rss_mb'] / f['peak_rss_mb']:.2f}; every round's images/s: "
          + "; ".join(f"{r['kind']} {r['images_per_s_all']}" for r in rows))
    if a.compile:
        print("first step (compilation included): " + ", ".join(f"{r['kind']} {r['first_step_s']:.1f} s" for r in rows))
    if a.peak:
        for r in rows:
            print(f"{r['kind']}: {r['flops_per_step'] / 1e9:.2f} GFLOP per step, {r['peak_fraction']:.1%} of the float32 matmul "
                  f"peak ({r['matmul_peak_flops'] / 1e9:.0f} GFLOP/s)")
    if a.profile:
        for r in rows:
            print(f"\n{r['kind']}: top operators by self CPU time (share of the profiled steps)\n\n| operator | share |\n|---|---|")
            for name, share in r["top_ops"]:
                print(f"| {name} | {share:.1%} |")
            conv = r["conv_share"]
            print(f"\nconvolution forward and backward: {conv:.1%} of the step; were every other operator free, the step "
                  f"would be at most {1 / conv:.2f}x faster (Amdahl)")


if __name__ == "__main__":
    main()
