"""Score matching, Langevin dynamics and why NCSN anneals: numbers and the notes' pictures.

    ./dev bench score_matching              # about 3 minutes on 2 cores; figures into benchmarks/figures/

1. The forward and reverse processes on the notes' 1-D two-Gaussian data (Figure 25.2): the exact
   density p_t(x) over time with reverse-process trajectories (ancestral `ddpm` and the probability
   flow `ode_heun`, both driven by the exact denoiser).
2. Explicit (Hyvarinen) score matching, exact trace, of a small MLP on Song & Ermon's 2-D mixture
   0.2 N((-5, -5), I) + 0.8 N((5, 5), I): the learned score is compared with the true one where the
   data live (density above 1% of its maximum) and far from them, as relative squared errors, and
   drawn as quiver plots.
3. Langevin dynamics from uniform starting points in [-8, 8]^2: with the true score, with the
   score-matching model, and annealed Langevin (Song & Ermon, Algorithm 1) with a noise-conditional
   network trained by denoising score matching on 10 noise levels (and with the exact noisy scores).
   The share of samples in the heavy mode (truth: 0.8) shows what annealing fixes; trajectories drawn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import difflab as dl
from difflab.losses import diffusion_loss, explicit_score_matching

D64 = torch.float64
FIG = Path(__file__).parent / "figures"


def one_d_figure(out: Path, seed: int) -> None:
    mix = dl.data.toy_density("two_gaussians_1d")
    path = dl.paths.VP()
    den = mix.denoiser(path)
    paths, times = {}, None
    for name in ("ddpm", "ode_heun"):
        frames = []
        x = dl.sample(den, path, (12, 1), sampler=name, steps=100, grid="uniform", dtype=D64,
                      generator=torch.Generator().manual_seed(seed), callback=lambda d: frames.append(d["x"][:, 0]))
        start = path.prior_sample((12, 1), torch.Generator().manual_seed(seed), dtype=D64)[:, 0]
        tr = torch.stack([start, *frames])
        times = torch.linspace(1, 0, tr.shape[0]).numpy()  # the uniform grid the samplers stepped on
        paths[f"reverse: {name}"] = tr
    dl.viz.density_over_time(lambda x, t: mix.log_prob(x, t, path), out, lim=4.5, paths=paths, times=times,
                             title="two Gaussians (0.3, 0.7) under VP: p_t(x) and reverse trajectories (exact denoiser)")


def song_ermon_mixture():
    return dl.oracles.GaussianMixture(torch.tensor([[-5.0, -5.0], [5.0, 5.0]], dtype=D64), torch.tensor([1.0, 1.0], dtype=D64),
                                      torch.tensor([0.2, 0.8], dtype=D64))


def score_net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 128), nn.Softplus(), nn.Linear(128, 128), nn.Softplus(), nn.Linear(128, 2))


def train_esm(mix, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = score_net().double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = explicit_score_matching(net, mix.sample(256, g).double()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.requires_grad_(False)


def train_ncsn(mix, path, steps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = dl.nets.MLP(2, 128, 3).double()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        loss = diffusion_loss(net, path, mix.sample(256, g).double(), prediction="score", weighting="sigma2", generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dl.as_denoiser(net.eval().requires_grad_(False), path, "score")


def relative_errors(mix, score, seed: int) -> tuple[float, float]:
    """Relative squared score error E||s - s*||^2 / E||s*||^2 where the data live and far from them."""
    u = torch.rand(200_000, 2, generator=torch.Generator().manual_seed(seed), dtype=D64) * 16 - 8
    logp = mix.log_prob(u)
    near = logp > logp.max() + torch.log(torch.tensor(0.01))
    err = (score(u) - mix.score(u)).pow(2).sum(1)
    ref = mix.score(u).pow(2).sum(1)
    return float(err[near].mean() / ref[near].mean()), float(err[~near].mean() / ref[~near].mean())


def heavy_share(x: torch.Tensor) -> float:
    return float((x.sum(1) > 0).double().mean())  # nearer (5, 5) than (-5, -5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="training steps of each network")
    ap.add_argument("--n", type=int, default=2000, help="Langevin particles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=FIG)
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    one_d_figure(a.out / "forward_reverse_1d.png", a.seed)

    mix = song_ermon_mixture()
    esm = train_esm(mix, a.steps, a.seed)
    near, far = relative_errors(mix, esm, a.seed + 1)
    print(f"explicit score matching ({a.steps} steps, exact trace): relative squared score error "
          f"{near:.4f} where the data live, {far:.3f} far from them")
    dl.viz.score_fields({"true score grad log p": mix.score, "explicit score matching s(x)": esm}, a.out / "score_fields.png",
                        lim=8, log_prob=mix.log_prob, title="Song & Ermon's mixture 0.2 N((-5,-5), I) + 0.8 N((5,5), I)")

    ncsn_path = dl.paths.DiscreteVE.geometric(10, 0.1, 20.0)
    ncsn = train_ncsn(mix, ncsn_path, a.steps, a.seed)
    g = lambda: torch.Generator().manual_seed(a.seed + 2)  # noqa: E731  the same starting points for every chain
    start = torch.rand(a.n, 2, generator=g(), dtype=D64) * 16 - 8
    rows, trails = [], {}
    for name, score in (("Langevin, true score", mix.score), ("Langevin, score matching", esm)):
        frames = [start[:40]]
        x = dl.samplers.langevin(score, start.clone(), step_size=0.05, n_steps=1000, generator=g(),
                                 callback=lambda d: frames.append(d["x"][:40]))
        rows.append((name, heavy_share(x), 1000))
        trails[name] = torch.stack(frames[::10])
    ts = dl.samplers.grids.make_grid("trailing", ncsn_path, 10)
    for name, den in (("annealed Langevin, NCSN (DSM)", ncsn), ("annealed Langevin, exact noisy scores", mix.denoiser(ncsn_path))):
        frames = [start[:40]]
        # start from the same uniform points: on VE x~ = x, so the chain begins at the largest level with them
        x = dl.samplers.annealed_langevin(den, ncsn_path, start.clone(), ts, steps_per_level=100, generator=g(),
                                          callback=lambda d: frames.append(d["x"][:40]))
        rows.append((name, heavy_share(x), 1001))
        trails[name] = torch.stack(frames)
    dl.viz.trajectories({k: v for k, v in trails.items() if "exact noisy" not in k}, a.out / "langevin_trajectories.png",
                        lim=8, log_prob=mix.log_prob, title="40 chains from uniform starts (grey) to their ends (black)")
    print("\n| chain (from uniform starts in [-8, 8]^2) | share in the heavy mode (truth 0.8) | NFE |")
    print("|---|---|---|")
    for name, share, nfe in rows:
        print(f"| {name} | {share:.3f} | {nfe} |")
    print(f"\nfigures: {a.out / 'forward_reverse_1d.png'}, {a.out / 'score_fields.png'}, "
          f"{a.out / 'langevin_trajectories.png'} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
