"""Is `difflab sample RUN --nfe N` (no sampler named) as good as the best sampler difflab has at N?

For each NFE budget, the run's default (what `difflab sample` picks: `app.sampler_choice`) and every candidate
sampler spec draw `--n` samples from the same starting noise, for `--seeds` seeds of the noise; each FD is
reported as the mean and standard deviation over the seeds, in the shipped feature network and in the second,
independently trained one (`difflab.features.SECOND_NETS`), each beside its floor (`--n` training images).
The verdict: the default's mean FD over the best measured (itself included), in both nets (issue 39's goal:
within 10%).

    .venv/bin/python benchmarks/default_sampler.py runs/fm20 --nfe 10,20 --n 5000 --seeds 3 \\
        --samplers dpmpp_2m,dpmpp_2m@karras,dpmpp_2m_sde@karras,unipc@karras

Run it alone (it times nothing, but it is long: samplers x budgets x seeds x n samples).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import difflab as dl
from difflab.app.bench import default_job, difflab_job, over_seeds, sweep
from difflab.app.build import build_data
from difflab.app.run import Run
from difflab.app.sampler_choice import settle
from difflab.features import features, load_feature_net, second_feature_net


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--nfe", default="10,20")
    ap.add_argument("--samplers", default="dpmpp_2m,dpmpp_2m@karras,dpmpp_2m_sde@karras,unipc@karras")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="JSON of the rows [default: RUN/default_sampler.json]")
    a = ap.parse_args()
    run = Run.open(a.run)
    cfg = run.config
    if cfg.data.name not in ("fashion_mnist", "digits") or cfg.model.class_conditional or cfg.model.text_conditional:
        ap.error("an unconditional run on a built-in image set (digits, fashion_mnist) is needed")
    den, path, _ = run.load()
    shape = tuple(run.facts["shape"])
    nfes = [int(v) for v in a.nfe.split(",")]
    jobs = [default_job(cfg, den, path, run.folder)] + [difflab_job(den, path, s) for s in a.samplers.split(",") if s]

    test = build_data(cfg.data, "test").images
    train = build_data(cfg.data, "train").images
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:a.n]]
    judges = {"fd": cfg.data.name, "fd_b": second_feature_net(cfg.data.name)}
    judges = {k: load_feature_net(v)[0] for k, v in judges.items() if v}
    stats = {k: dl.metrics.gaussian_stats(features(net, test)[0]) for k, net in judges.items()}

    def score(x):
        return {k: dl.metrics.frechet_distance(stats[k], features(net, x.clamp(-1, 1))[0]) for k, net in judges.items()}

    floor = score(pick)
    per_seed = []
    for seed in range(a.seeds):
        x_T = dl.sampling.prior_noise(path, a.n, shape, seed)
        per_seed.append(sweep(jobs, x_T, nfes, score, seed=seed, batch_size=500, log=lambda line: print(f"seed {seed}: {line}", flush=True)))
    rows = over_seeds(per_seed, spread=tuple(judges), mean=tuple(judges))
    chosen = {b: settle(cfg, nfe=b, folder=run.folder) for b in nfes}
    print(f"\n# `difflab sample {a.run} --nfe N` against every candidate: FD of {a.n:,} samples, mean ± std over {a.seeds} "
          f"seeds\n\nfloor (real training images): " + ", ".join(f"{k} {v:.4f}" for k, v in floor.items()) + "\n")
    names = {"fd": "FD", "fd_b": "FD, second net"}
    print("| NFE | sampler | " + " | ".join(names[k] for k in judges) + " |\n|---|---|" + "---|" * len(judges))
    verdicts = []
    for b in nfes:
        at = [r for r in rows if r["nfe_budget"] == b]
        for r in at:
            label = f"default: {chosen[b].label}" if r["sampler"] == "default" else r["sampler"]
            print(f"| {b} | {label} | " + " | ".join(f"{r[k]:.4f} ± {r[k + '_std']:.4f}" for k in judges) + " |")
        d = next(r for r in at if r["sampler"] == "default")
        for k in judges:
            best = min(at, key=lambda r: r[k])  # the default itself may be the best
            verdicts.append(f"- {b} NFE, {names[k]}: the default ({chosen[b].label}) {d[k]:.4f}, the best measured "
                            f"({'the default' if best is d else best['sampler']}) {best[k]:.4f}: ratio {d[k] / best[k]:.3f} "
                            f"(goal <= 1.10: {'met' if d[k] <= 1.10 * best[k] else 'not met'})")
    print("\n" + "\n".join(verdicts))
    out = a.out or run.folder / "default_sampler.json"
    out.write_text(json.dumps({"run": str(a.run), "n": a.n, "seeds": a.seeds, "floor": floor, "rows": rows,
                               "defaults": {str(b): chosen[b].label for b in nfes}}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
