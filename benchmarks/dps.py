"""Diffusion posterior sampling against exact posteriors: difflab's `dps` beside a plain implementation of Chung et
al.'s update, ΠGDM and the exact posterior's own denoiser, on problems whose posterior is known in closed form.

    .venv/bin/python benchmarks/dps.py                 # ~15 min on 2 CPU cores
    .venv/bin/python benchmarks/dps.py --quick         # fewer samples and settings, ~3 min

- The problems: a 2-D Gaussian mixture observed through its first coordinate (y = x_1 + n), and "digit images": a
  Gaussian mixture fitted to scikit-learn's 8x8 digits (one full-covariance component per class), observed by
  inpainting (the centre 4x4 unknown), 2x super-resolution (block averages) and a Gaussian blur (std 1 pixel), each
  noiseless (s = 0.001) and noisy (s = 0.05, pixels in [-1, 1]). `GaussianMixture.posterior` gives p(x0 | y) exactly
  (again a mixture), so its samples and its denoiser E[x0 | x_t, y] are exact.
- The methods, all on DDPM's linear schedule (T = 1000) with the exact prior denoiser:
  `exact` (the posterior's own denoiser: the floor a sampler reaches), `pgdm`, difflab's `dps` at several scales
  (bounded, its default, and `--unbounded` rows), and `chung`: Algorithm 1 of Chung et al. (2023) as
  `dl.inverse.chung_dps` writes it plainly, DDPM ancestral steps each followed by x <- x - zeta grad_{x_t}
  |y - A D(x_t)| (the gradient through the denoiser; the paper's zeta_i = zeta' / |y - A x0_hat| times the gradient
  of the squared residual), at several zeta.
- Figures: the sliced Wasserstein-2 distance from each method's samples to exact posterior samples (per observation,
  then the mean over observations), beside the floor (two exact sample sets); and the PSNR of the samples against
  the image the observation was simulated from. Steps: 1,000 (the paper's) and 20 (difflab's default budget).
Prints one table per problem and writes benchmarks/figures/dps.json when --json is given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import difflab as dl
from difflab.metrics import sliced_wasserstein


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Flat:
    """A denoiser of flat mixture vectors acting on examples of `shape`."""

    def __init__(self, den, shape):
        self.den, self.shape = den, tuple(shape)

    def __call__(self, x, t, **cond):
        return self.den(x.flatten(1), t).reshape(x.shape)


def digits_mixture() -> dl.oracles.GaussianMixture:
    """One Gaussian per digit class, fitted to the 8x8 training digits (covariance + 0.01 I)."""
    data = dl.data.digits("train")
    return dl.oracles.GaussianMixture.from_classes(data.images, data.labels, ridge=0.01)


def problems(quick: bool):
    """name -> (mixture, operator, example shape, noise std)."""
    mix2 = dl.oracles.GaussianMixture(means=[[-2.0, -1.0], [2.0, 1.0], [0.0, 2.5]], stds=[0.4, 0.6, 0.3],
                                      weights=[0.3, 0.5, 0.2])
    first = dl.inverse.Matrix(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    out = {"2-D mixture, y = x1, s = 0.3": (mix2, first, (2,), 0.3), "2-D mixture, y = x1, s = 0.05": (mix2, first, (2,), 0.05)}
    digits = digits_mixture()
    keep = torch.ones(1, 8, 8, dtype=torch.bool)
    keep[:, 2:6, 2:6] = False
    ops = {"inpaint": dl.inverse.Mask(keep), "sr2": dl.inverse.Downsample(2), "deblur": dl.inverse.Blur(1.0)}
    for name, A in ops.items():
        for s in ((0.05,) if quick else (0.001, 0.05)):
            out[f"digits, {name}, s = {s:g}"] = (digits, A, (1, 8, 8), s)
    return out


def run(args) -> dict:
    path = dl.paths.DiscreteVP.linear(1000)
    steps_list = args.steps or ((20,) if args.quick else (1000, 20))
    results = {}
    for name, (mix, A, shape, s) in problems(args.quick).items():
        if args.only and args.only not in name:
            continue
        g = gen(args.seed)
        k = args.observations if len(shape) > 1 else 1
        truth = mix.sample(k, g).double().reshape(k, *shape)
        y = A(truth) + s * torch.randn(A(truth).shape, generator=g, dtype=torch.float64)
        posts = [mix.posterior(A, y[i], s, shape=shape) for i in range(k)]
        n = args.n
        exact = [p.sample(n, gen(100 + i)).double() for i, p in enumerate(posts)]
        floor = sum(float(sliced_wasserstein(p.sample(n, gen(200 + i)).double(), exact[i], generator=gen(1)))
                    for i, p in enumerate(posts)) / k
        prior = Flat(mix.denoiser(path), shape)
        ys = y.repeat_interleave(n, 0)
        rows = []

        def score(label, x, seconds):
            x = x.reshape(k, n, -1)
            sw = sum(float(sliced_wasserstein(x[i], exact[i], generator=gen(1))) for i in range(k)) / k
            mse = ((x.clamp(-1, 1) - truth.reshape(k, 1, -1)) / 2).square().mean(-1)
            psnr = float((-10 * torch.log10(mse.clamp_min(1e-12))).mean()) if len(shape) > 1 else float("nan")
            rows.append({"method": label, "sw": sw, "psnr": psnr, "seconds": seconds})
            print(f"  {label:<34} SW {sw:8.4f}   PSNR {psnr:6.2f} dB   {seconds:6.1f} s", flush=True)

        print(f"\n{name}: {k} observation(s) x {n} samples; floor SW {floor:.4f}", flush=True)
        for steps in steps_list:
            ts = dl.samplers.grids.make_grid("trailing", path, steps)
            x_T = path.prior_sample((k * n, *shape), gen(args.seed + 7), dtype=torch.float64)

            def draw(den, label):
                t0 = time.perf_counter()
                x = dl.samplers.ddpm(den, path, x_T.clone(), ts, generator=gen(args.seed + 9), observation=ys)
                score(f"{label}, {steps} steps", x, time.perf_counter() - t0)

            exact_den = _PerExample([Flat(p.denoiser(path), shape) for p in posts], n)
            draw(exact_den, "exact")
            draw(dl.inverse.pgdm(prior, path, A, None, s), "pgdm")
            for scale in args.scales:
                draw(dl.inverse.dps(prior, path, A, None, s, scale=scale), f"dps scale {scale:g}")
                if args.unbounded:
                    draw(dl.inverse.dps(prior, path, A, None, s, scale=scale, bounded=False), f"dps scale {scale:g} unbounded")
            if s >= 0.01:  # the likelihood's own weight 1 / s^2 in place of the residual's norm
                draw(dl.inverse.dps(prior, path, A, None, s, scale=1.0, normalize=False, bounded=False), "dps w = 1/s^2")
            for zeta in args.zetas:
                t0 = time.perf_counter()
                x = dl.inverse.chung_dps(prior, path, x_T.clone(), ts, A=A, y=ys, zeta=zeta, generator=gen(args.seed + 9))
                score(f"chung zeta {zeta:g}, {steps} steps", x, time.perf_counter() - t0)
        results[name] = {"floor": floor, "rows": rows}
    return results


class _PerExample:
    """The exact posterior denoiser of each observation, for its block of `n` consecutive examples."""

    def __init__(self, dens, n):
        self.dens, self.n = dens, n

    def __call__(self, x, t, observation=None, **cond):
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]) if torch.as_tensor(t).ndim == 0 else t
        return torch.cat([d(x[i * self.n:(i + 1) * self.n], t[i * self.n:(i + 1) * self.n]) for i, d in enumerate(self.dens)])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=400, help="samples per observation")
    p.add_argument("--observations", type=int, default=6, help="observations of the digit problems")
    p.add_argument("--scales", type=lambda v: [float(x) for x in v.split(",")], default=[0.3, 1, 3, 10])
    p.add_argument("--zetas", type=lambda v: [float(x) for x in v.split(",")], default=[0.3, 1, 3, 10])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--unbounded", action="store_true", help="also dps without its bound (as before it had one)")
    p.add_argument("--only", default="", help="only the problems whose name holds this text (e.g. digits)")
    p.add_argument("--steps", type=lambda v: [int(x) for x in v.split(",")], default=None, help="grid sizes (1000,20)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.n, args.observations = min(args.n, 200), min(args.observations, 3)
    torch.set_num_threads(2)
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
