"""Training-step speed and peak memory: difflab's UNet against diffusers' UNet2DModel, side by side.

Both networks are sized alike (parameter counts printed), trained with the same loss (eps-MSE on
DDPM's linear schedule), AdamW, batch and resolution. Each model runs in its own fresh process so
that peak memory (max resident set size during the timed steps, minus the resident size before
them) is its own.

    ./dev bench train_speed                    # Fashion-MNIST sized: 1x28x28, batch 64
    ./dev bench train_speed --size 8 --batch 64 --channels 32 --mult 1,2 --blocks 2
    ./dev bench train_speed --patch 2 --channels 64 --mult 1,1   # difflab's fashion_mnist preset network

With `--patch` only difflab's network changes (a U-Net on patch x patch pixel patches, as
`model.patch_size`); diffusers' UNet2DModel has no such stem and stays at full resolution.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


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
                      down_block_types=down, up_block_types=up, norm_num_groups=min(32, a.channels), attention_head_dim=32)
    return lambda x, t: net(x, t * 1000).sample, net


def child(kind: str, a) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    import difflab as dl

    fn, net = make(kind, a)
    path = dl.paths.DiscreteVP.linear(1000)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(a.batch, 1, a.size, a.size, generator=g) * 2 - 1

    def step():
        t = torch.randint(1, 1001, (a.batch,), generator=g).float() / 1000
        z = torch.randn(x0.shape, generator=g)
        loss = (fn(path.perturb(x0, t, z), t) - z).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "params": sum(p.numel() for p in net.parameters()), "images_per_s": a.steps * a.batch / secs,
            "ms_per_step": 1000 * secs / a.steps, "peak_rss_mb": rss1 / 1024, "peak_growth_mb": (rss1 - rss0) / 1024}


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
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a)))
        return
    rows = []
    for kind in ("difflab", "diffusers"):
        r = subprocess.run([sys.executable, __file__, "--child", kind] + sys.argv[1:], capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"# training step, 1x{a.size}x{a.size}, batch {a.batch}, {a.threads} threads, torch {torch.__version__}"
          f"{f', difflab on {a.patch}x{a.patch} patches' if a.patch > 1 else ''}\n")
    print("| network | parameters | images/s | ms/step | peak RSS (MB) | RSS growth in the timed steps (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['params']:,} | {r['images_per_s']:.0f} | {r['ms_per_step']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_growth_mb']:.0f} |")
    d, f = rows
    print(f"\nspeed ratio difflab / diffusers: {d['images_per_s'] / f['images_per_s']:.2f}; "
          f"peak RSS ratio: {d['peak_rss_mb'] / f['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
