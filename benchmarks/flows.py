"""Flow matching side by side with torchcfm: I-CFM and OT-CFM on torchcfm's 2-D tasks, over seeds.

    ./dev bench flows                              # 3 tasks x 2 couplings x 2 libraries x 5 seeds
    ./dev bench flows --steps 1000 --seeds 1       # a quick look

torchcfm is installed beside POT without its dependencies (its package pulls torchdyn, torchvision
and Lightning, which would replace the pinned torch): `.venv/bin/pip install --no-deps torchcfm==1.0.7`
(`./dev bench flows` does it). Its data sets are reproduced in `difflab.data` (`cfm_8gaussians`,
`cfm_moons`), not imported from `torchcfm.utils` (which imports torchdyn).

For every task (N(0, I) -> eight Gaussians, N(0, I) -> moons, eight Gaussians -> moons), coupling
(independent = I-CFM, exact minibatch OT = OT-CFM) and seed, the same MLP (torchcfm's example
network: 3 hidden layers of 64 SELU units, time as an extra input) starts from the same weights and
sees the same stream of data and source batches (batch 256, Adam lr 1e-3, no EMA), once trained
with difflab (`losses.flow_matching_loss` on `paths.Linear`, `couplings`) and once with torchcfm's
`ConditionalFlowMatcher` / `ExactOptimalTransportConditionalFlowMatcher` (sigma = 0 on both sides).
Measured on 2,000 fresh source points against 2,000 held-out data points:

- exact W2 (POT) after 1, 10 and 100 Euler steps and with the adaptive solver (dopri5, rtol = atol
  = 1e-5: difflab's `ode_rk45`, torchdiffeq's `odeint` for torchcfm, the library torchdyn wraps);
- the normalised path energy |PE - W2^2(source, data)| / W2^2 (Tong et al. 2023), PE from the
  100-step Euler trajectories;
- training seconds (the OT coupling's cost shows here).

Prints a markdown table of mean +- std over seeds and writes results.json and a figure of the
learned trajectories (difflab, seed 0): curved for I-CFM, nearly straight for OT-CFM.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import difflab as dl
from difflab.losses import flow_matching_loss

TASKS = {"N->8gaussians": (None, "cfm_8gaussians"), "N->moons": (None, "cfm_moons"),
         "8gaussians->moons": ("cfm_8gaussians", "cfm_moons")}
COUPLINGS = {"I-CFM": "independent", "OT-CFM": "exact"}
HELD_OUT = 1_000_003  # seed offset of the evaluation draws (training streams use the run's seed)


class MLP(nn.Module):
    """torchcfm's example MLP (`torchcfm.models.MLP(dim, time_varying=True, w=64)`): [x, t] -> velocity."""

    def __init__(self, dim: int = 2, w: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, w), nn.SELU(), nn.Linear(w, w), nn.SELU(), nn.Linear(w, w), nn.SELU(),
                                 nn.Linear(w, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.reshape(-1, 1).expand(x.shape[0], 1).to(x.dtype)], 1))


class TorchcfmTime(nn.Module):
    """difflab's velocity from a network that sees torchcfm's time s = 1 - t and predicts torchcfm's
    velocity (`--net-time torchcfm`): the same initial weights then give the same initial function."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return -self.net(x, 1 - t)


def draw(name, n, g):
    return torch.randn(n, 2, generator=g) if name is None else dl.data.toy_density(name).sample(n, g).float()


def train(lib, task, coupling, seed, steps, batch, lr, net_time="difflab"):
    source, target = TASKS[task]
    torch.manual_seed(seed)  # the same initial weights for both libraries
    np.random.seed(seed)
    net = MLP()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    if lib == "difflab" and net_time == "torchcfm":
        net = TorchcfmTime(net)
    g = torch.Generator().manual_seed(seed)
    path = dl.paths.Linear()
    if lib == "torchcfm":
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher

        fm = (ExactOptimalTransportConditionalFlowMatcher if coupling == "exact" else ConditionalFlowMatcher)(sigma=0.0)
    t0 = time.time()
    for _ in range(steps):
        x_data, x_source = draw(target, batch, g), draw(source, batch, g)
        if lib == "difflab":  # difflab's time: data at t = 0, source at t = 1
            loss = flow_matching_loss(net, path, x_data, x_source, coupling=coupling, generator=g).mean()
        else:  # torchcfm's: source x0 at t = 0, data x1 at t = 1
            t, xt, ut = fm.sample_location_and_conditional_flow(x_source, x_data)
            loss = ((net(xt, t) - ut) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False), time.time() - t0


@torch.no_grad()
def generate(lib, net, z, how):
    """Samples from source points z: `how` = number of Euler steps, or 'adaptive'; (x, nfe, Euler states or None)."""
    if lib == "difflab":
        path = dl.paths.Linear()
        den = dl.as_denoiser(net, path, "velocity")
        if how == "adaptive":
            x, info = dl.sample(den, path, x=z, sampler="ode_rk45", rtol=1e-5, atol=1e-5, return_info=True)
            return x, info.nfe, None
        states = [z]
        x, info = dl.sample(den, path, x=z, sampler="ode_euler", steps=how, return_info=True,
                            callback=lambda d: states.append(d["x"]))
        return x, info.nfe, states
    if how == "adaptive":
        from torchdiffeq import odeint

        nfe = [0]

        def f(s, x):
            nfe[0] += 1
            return net(x, s.reshape(1))

        x = odeint(f, z, torch.tensor([0.0, 1.0]), method="dopri5", rtol=1e-5, atol=1e-5)[-1]
        return x, nfe[0], None
    x, states = z, [z]
    for i in range(how):  # Euler in torchcfm's time, s = i / how
        x = x + net(x, torch.tensor([i / how])) / how
        states.append(x)
    return x, how, states


def evaluate(lib, net, task, seed, n):
    source, target = TASKS[task]
    g = torch.Generator().manual_seed(HELD_OUT + seed)
    z, ref = draw(source, n, g), draw(target, n, g)
    w2_source = dl.metrics.wasserstein2(z, ref)
    out = {}
    for how in (1, 10, 100, "adaptive"):
        x, nfe, states = generate(lib, net, z, how)
        out[f"w2_{how}"] = dl.metrics.wasserstein2(x, ref)
        if how == "adaptive":
            out["nfe_adaptive"] = nfe
        if how == 100:
            energy = dl.metrics.path_energy(states, torch.linspace(0, 1, 101))
            out["npe"] = dl.metrics.normalized_path_energy(energy, w2_source)
            out["trajectory"] = torch.stack(states[::5])[:, :150]
    return out


def fmt(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--methods", default=",".join(COUPLINGS), help="I-CFM, OT-CFM")
    ap.add_argument("--also", type=Path, default=None, help="a results.json of an earlier run (other seeds) to pool into the table")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n", type=int, default=2000, help="evaluation points per side (exact W2 is O(n^3))")
    ap.add_argument("--libs", default="difflab,torchcfm")
    ap.add_argument("--net-time", choices=("difflab", "torchcfm"), default="difflab",
                    help="the time difflab's network sees: its own t, or torchcfm's 1 - t")
    ap.add_argument("--out", type=Path, default=Path("runs/flows"))
    ap.add_argument("--figure", type=Path, default=Path("benchmarks/figures/flow_trajectories.png"))
    a = ap.parse_args()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest and keeps the two libraries' timings comparable
    a.out.mkdir(parents=True, exist_ok=True)
    rows, trajectories = [], {}
    methods = a.methods.split(",")
    for task in a.tasks.split(","):
        for name in methods:
            coupling = COUPLINGS[name]
            for lib in a.libs.split(","):
                for seed in range(a.seed_start, a.seed_start + a.seeds):
                    net, train_s = train(lib, task, coupling, seed, a.steps, a.batch, a.lr, a.net_time)
                    r = evaluate(lib, net, task, seed, a.n)
                    traj = r.pop("trajectory")
                    if lib == "difflab" and seed == a.seed_start:
                        trajectories[(name, task)] = traj
                    rows.append({"task": task, "method": name, "lib": lib, "seed": seed, "train_s": round(train_s, 1), **r})
                    print(json.dumps(rows[-1]), flush=True)
    (a.out / "results.json").write_text(json.dumps(rows, indent=1))
    if a.also is not None:
        seen = {(r["task"], r["method"], r["lib"], r["seed"]) for r in rows}
        rows += [r for r in json.loads(a.also.read_text()) if (r["task"], r["method"], r["lib"], r["seed"]) not in seen
                 and r["method"] in methods]
    n_seeds = len({r["seed"] for r in rows})

    print(f"\n### W2 to held-out data and normalised path energy: {a.steps} steps, batch {a.batch}, "
          f"mean ± std over {n_seeds} seeds, {a.n} points\n")
    print("| task | method | library | W2, 1 Euler step | W2, 10 steps | W2, 100 steps | W2, adaptive (NFE) "
          "| normalised path energy | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for task in a.tasks.split(","):
        for name in methods:
            for lib in a.libs.split(","):
                rs = [r for r in rows if (r["task"], r["method"], r["lib"]) == (task, name, lib)]
                col = lambda k: [r[k] for r in rs]  # noqa: E731
                print(f"| {task} | {name} | {lib} | {fmt(col('w2_1'))} | {fmt(col('w2_10'))} | {fmt(col('w2_100'))} | "
                      f"{fmt(col('w2_adaptive'))} ({statistics.mean(col('nfe_adaptive')):.0f}) | {fmt(col('npe'))} | "
                      f"{statistics.mean(col('train_s')):.0f} |")
    if trajectories:
        lim = 1.15 * max(float(t.abs().max()) for t in trajectories.values())
        panels = {f"{task}, {name}": trajectories[(name, task)] for name in methods for task in a.tasks.split(",")
                  if (name, task) in trajectories}
        dl.viz.trajectories(panels, a.figure, lim=math.ceil(lim), ncols=len(a.tasks.split(",")),
                            title="learned flows (difflab, seed 0): source grey, samples black")
        print(f"\nwrote {a.figure}")


if __name__ == "__main__":
    main()
