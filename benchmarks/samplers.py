"""Sampler quality against NFE with exact oracles: difflab's samplers beside diffusers' schedulers.

Two data sets with exact denoisers (no training, so only the sampler is measured):
  ring2d  8 isotropic Gaussians on a circle of radius 1 (std 0.1) in 2-D,
  mix64d  10 isotropic Gaussians in 64-D (means ~ N(0, 0.5^2 I), std 0.1, unequal weights, fixed seed),
both on DDPM's linear schedule (T = 1000, `DiscreteVP.linear(1000)`). For each NFE budget every
sampler starts from the same prior noise (per seed), and the sliced 2-Wasserstein distance of its
samples to a fresh data sample is reported as the mean over seeds (and the spread). The noise floor
is the same distance between two independent data samples.

diffusers' schedulers (DDPM, DDIM, DPM-Solver++ 2M and its SDE variant, UniPC, Euler, Heun) run with their defaults
(clipping and thresholding off, since the data are not images in [-1, 1]) and are driven by the same
exact oracle through `difflab.interop.diffusers_sample` (epsilon prediction).

    ./dev bench samplers                   # the full table (about 30 minutes on 2 CPU cores)
    ./dev bench samplers --seeds 1 --n 4000 --nfe 5,10,20   # a quick look
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import difflab as dl
import difflab.bench


def make_sets():
    g = torch.Generator().manual_seed(1234)
    ring = dl.oracles.ring_mixture(8, radius=1.0, std=0.1)
    means = 0.5 * torch.randn(10, 64, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(10, generator=g, dtype=torch.float64)  # unequal: weights from 0.5 to 1.5
    mix = dl.oracles.GaussianMixture(means, 0.1, weights)
    return {"ring2d": ring, "mix64d": mix}


# difflab sampler specs (name@grid[:key=value]); steps from each NFE budget by the sampler's own NFE facts
DIFFLAB = ["ddpm@trailing", "ddim@trailing", "ddim@log_snr", "euler_maruyama@trailing", "pc@log_snr", "ode_euler@log_snr",
           "ode_heun@karras", "annealed_langevin@log_snr", "dpmpp_2m@uniform", "dpmpp_2m@log_snr", "dpmpp_2m@karras",
           "dpmpp_2m_sde@trailing", "dpmpp_2m_sde@karras", "unipc@trailing", "unipc@karras"]
ADAPTIVE = ["ode_rk45:rtol=1e-3:atol=1e-3", "ode_rk45:rtol=1e-5:atol=1e-5"]


def diffusers_schedulers():
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           HeunDiscreteScheduler, UniPCMultistepScheduler)

    common = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    return {
        "diffusers DDPM": (lambda: DDPMScheduler(**common, clip_sample=False), lambda n: n),
        "diffusers DDIM": (lambda: DDIMScheduler(**common, clip_sample=False), lambda n: n),
        "diffusers DPM-Solver++ 2M": (lambda: DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2), lambda n: n),
        "diffusers SDE-DPM-Solver++ 2M": (lambda: DPMSolverMultistepScheduler(**common, algorithm_type="sde-dpmsolver++", solver_order=2),
                                          lambda n: n),
        "diffusers UniPC": (lambda: UniPCMultistepScheduler(**common), lambda n: n),
        "diffusers Euler": (lambda: EulerDiscreteScheduler(**common), lambda n: n),
        "diffusers Heun": (lambda: HeunDiscreteScheduler(**common), lambda n: max(1, (n + 1) // 2)),  # 2N - 1 NFE
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="samples per run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--nfe", default="5,10,20,50,100,1000")
    ap.add_argument("--sets", default="ring2d,mix64d")
    ap.add_argument("--projections", type=int, default=256)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dtype = getattr(torch, args.dtype)
    budgets = [int(b) for b in args.nfe.split(",")]
    sets = make_sets()
    path = dl.paths.DiscreteVP.linear(1000)
    schedulers = diffusers_schedulers()
    print(f"# samplers benchmark: {args.n} samples, {args.seeds} seeds, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    for set_name in args.sets.split(","):
        mix = sets[set_name]
        den = mix.denoiser(path)
        d = mix.dim
        results: dict[str, dict[int, list[float]]] = {}
        nfe_used: dict[str, dict[int, int]] = {}
        floors, adaptive = [], {}
        t_start = time.time()
        jobs = [dl.bench.difflab_job(den, path, spec) for spec in DIFFLAB]
        jobs += [dl.bench.diffusers_job(label, den, path, make, steps_of) for label, (make, steps_of) in schedulers.items()]
        for seed in range(args.seeds):
            g = torch.Generator().manual_seed(seed)
            ref = mix.sample(args.n, g, dtype=dtype)
            sw = lambda x: dl.metrics.sliced_wasserstein(x, ref, projections=args.projections,  # noqa: E731
                                                         generator=torch.Generator().manual_seed(10_000 + seed))
            floors.append(sw(mix.sample(args.n, g, dtype=dtype)))
            x_T = dl.sampling.prior_noise(path, args.n, (d,), seed, dtype=dtype)

            def score(x):
                return {"SW2": sw(x) if torch.isfinite(x).all() else float("nan")}

            # a failure is a result too: reported, and NaN in the table
            for row in dl.bench.sweep(jobs, x_T, budgets, score, seed=seed, batch_size=args.n, errors=(Exception,)):
                if "error" in row:
                    print(f"  {row['sampler']} at {row['nfe_budget']} NFE failed: {row['error']}", file=sys.stderr)
                results.setdefault(row["sampler"], {}).setdefault(row["nfe_budget"], []).append(row.get("SW2", float("nan")))
                nfe_used.setdefault(row["sampler"], {})[row["nfe_budget"]] = row.get("nfe", 0)
            for row in dl.bench.sweep([dl.bench.difflab_job(den, path, spec) for spec in ADAPTIVE], x_T, [0], score,
                                      seed=seed, batch_size=args.n):
                adaptive.setdefault(row["sampler"], []).append((row["SW2"], row["nfe"]))
            print(f"  [{set_name}] seed {seed} done ({time.time() - t_start:.0f}s)", file=sys.stderr)

        floor = torch.tensor(floors, dtype=torch.float64)
        print(f"## {set_name} (d = {d}, {mix.num_components} modes): sliced W2 to fresh data, mean over {args.seeds} seeds\n")
        print(f"Noise floor (two independent data samples): **{floor.mean():.4f}** (seed-to-seed std {floor.std(unbiased=args.seeds > 1) if args.seeds > 1 else 0:.4f})\n")
        print("| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        best = {b: min((torch.tensor(v[b]).mean().item(), k) for k, v in results.items() if not math.isnan(torch.tensor(v[b]).mean().item()))
                for b in budgets}
        for label, per_b in results.items():
            cells = []
            for b in budgets:
                v = torch.tensor(per_b[b], dtype=torch.float64)
                m = v.mean().item()
                cell = "NaN" if math.isnan(m) else f"{m:.4f}"
                if nfe_used[label][b] not in (b, 0):
                    cell += f" ({nfe_used[label][b]})"
                if best[b][1] == label:
                    cell = f"**{cell}**"
                cells.append(cell)
            print(f"| {label} | " + " | ".join(cells) + " |")
        print("\nAdaptive (Dormand-Prince via torchdiffeq; mean NFE):\n")
        for label, vals in adaptive.items():
            sw = torch.tensor([v for v, _ in vals]).mean().item()
            nf = sum(n for _, n in vals) / len(vals)
            print(f"- {label}: sliced W2 {sw:.4f} at {nf:.0f} NFE")
        print(f"\n({time.time() - t_start:.0f} s; a number in brackets is the NFE actually spent when it differs from the budget)\n")


if __name__ == "__main__":
    main()
