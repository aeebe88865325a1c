"""Tutorial: inpainting a 2-D Gaussian mixture, with the exact posterior beside every method.

    .venv/bin/python docs/tutorials/inverse_problems.py      # writes docs/tutorials/inverse_problems.png (seconds)

The prior is a mixture of three Gaussians in the plane. We observe only the first coordinate, y = x0[0] + n with
n ~ N(0, 0.1^2) (an "inpainting" of one of two pixels). The posterior p(x0 | y) is again a Gaussian mixture
(`GaussianMixture.posterior`), so every method can be compared with exact posterior samples:

- the exact conditional denoiser E[x0 | x_t, y] (the posterior's own denoiser) under any sampler: the floor;
- pgdm (pseudo-inverse guidance) and dps (diffusion posterior sampling) on the exact *prior* denoiser: what a
  trained unconditional model would do, without its training error;
- RePaint (replacement with resampling) for the noiseless observation.
"""

from pathlib import Path

import torch

import difflab as dl
from difflab.metrics import sliced_wasserstein


def main(out=Path(__file__).with_suffix(".png"), n=3000):
    g = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    prior = dl.oracles.GaussianMixture(means=[[-2.0, -1.0], [2.0, 1.0], [0.0, 2.5]], stds=[0.4, 0.6, 0.3],
                                       weights=[0.3, 0.5, 0.2])
    path = dl.paths.VP()
    A, y, s = dl.inverse.Mask(torch.tensor([True, False])), torch.tensor([[0.3]]), 0.1
    posterior = prior.posterior(A, y[0], s)  # exact: a mixture again
    exact = posterior.sample(n, g(1))
    methods = {
        "exact E[x0 | x_t, y]": posterior.denoiser(path),
        "pgdm": dl.inverse.pgdm(prior.denoiser(path), path, A, y, s),
        "dps": dl.inverse.dps(prior.denoiser(path), path, A, y, s),
    }
    panels, notes = {}, {}
    for name, den in methods.items():
        x = dl.sample(den, path, (n, 2), sampler="euler_maruyama", steps=200, generator=g(2))
        panels[name] = x
        notes[name] = f"SW2 to the posterior {sliced_wasserstein(x, exact, generator=g(0)):.3f}"
    ts = dl.samplers.grids.make_grid("uniform", path, 100)
    x = dl.inverse.repaint(prior.denoiser(path), path, path.prior_sample((n, 2), g(3)), ts, mask=A, y=torch.zeros(n, 1) + 0.3,
                           jump=10, resamples=10, generator=g(4))
    panels["RePaint (noiseless y)"] = x
    noiseless = prior.posterior(A, y[0], 0.0).sample(n, g(5))
    notes["RePaint (noiseless y)"] = f"SW2 to the posterior {sliced_wasserstein(x, noiseless, generator=g(0)):.3f}"
    notes["exact posterior"] = f"floor {sliced_wasserstein(posterior.sample(n, g(6)), exact, generator=g(0)):.3f}"
    panels = {"exact posterior": exact, **panels}
    dl.viz.scatter_grid({"": panels}, out, reference=prior.sample(n, g(7)), subtitles={"": notes}, lim=5.0,
                        title="inpainting x[1] given y = x[0] + N(0, 0.1^2) = 0.3; the prior in grey")
    for name, note in notes.items():
        print(f"{name:24s} {note}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
