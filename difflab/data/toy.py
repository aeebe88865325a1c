r"""Toy data sets in 1-D and 2-D, each with its exact density where one exists.

- `eight_gaussians`, `two_gaussians_1d` (the notes' 1-D example): Gaussian mixtures, density from
  `oracles.GaussianMixture`.
- `moons`, `circles`, `swiss_roll`: points spread along curves plus isotropic Gaussian noise. Their
  density is a convolution of the curve's measure with the noise,

      p(x) = sum_c w_c int N(x; gamma_c(u), s^2 I) du,   u uniform on the curve's parameter range,

  computed by `CurveDensity` with a fine midpoint rule in u (the integrand is smooth, so 4096 nodes
  per curve give the log-density to ~1e-6 for the default noise levels).
- `checkerboard`: uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2 (density 1/8 there, 0 elsewhere).
- `cfm_8gaussians`, `cfm_moons`: the two sets of torchcfm's 2-D examples, defined as torchcfm defines
  them, so flow-matching figures compare with its papers. Eight Gaussians of radius 5 whose
  covariance is sqrt(0.1) I (torchcfm passes `math.sqrt(var) * eye` as the covariance matrix): std
  0.1^(1/4) = 0.562. Moons: torchdyn's `generate_moons(n, noise=0.2)` times 3 minus 1, where the
  "noise" is ONE uniform number u ~ U[0, 0.2) added to both coordinates, i.e. a shift along (1, 1),
  and the angles are evenly spaced (linspace), not random. That set has no density in closed form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import choose
from .._random import rand, randn
from ..oracles import GaussianMixture, ring_mixture


class CurveDensity:
    """Exact (quadrature) density of points drawn uniformly in parameter along curves, plus N(0, noise^2 I)."""

    def __init__(self, curves, weights, noise: float, nodes: int = 4096):
        self.curves, self.noise = curves, float(noise)
        self.weights = torch.as_tensor(weights, dtype=torch.float64) / sum(weights)
        self.nodes = nodes

    def _points(self) -> tuple[Tensor, Tensor]:
        u = (torch.arange(self.nodes, dtype=torch.float64) + 0.5) / self.nodes  # midpoint rule on [0, 1]
        pts = torch.cat([c(u) for c in self.curves])
        logw = torch.cat([torch.full((self.nodes,), math.log(float(w) / self.nodes), dtype=torch.float64) for w in self.weights])
        return pts, logw

    def log_prob(self, x: Tensor) -> Tensor:
        pts, logw = self._points()
        x = x.to(torch.float64)
        d = x.shape[1]
        out = []
        for chunk in x.split(max(1, 2**21 // pts.shape[0])):  # bounded memory: ~16 MB per chunk
            d2 = torch.cdist(chunk, pts) ** 2
            log_n = -0.5 * d2 / self.noise**2 - 0.5 * d * math.log(2 * math.pi * self.noise**2)
            out.append(torch.logsumexp(log_n + logw[None], dim=1))
        return torch.cat(out) if out else x.new_zeros(0)

    def sample(self, n: int, generator=None) -> Tensor:
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        u = rand((n,), generator=generator, dtype=torch.float64)
        pts = torch.empty(n, 2, dtype=torch.float64)
        for c, curve in enumerate(self.curves):
            m = which == c
            pts[m] = curve(u[m])
        return pts + self.noise * randn((n, 2), generator=generator, dtype=torch.float64)


def _arc(cx, cy, r, a0, a1, sign=1.0):
    def curve(u):
        a = a0 + (a1 - a0) * u
        return torch.stack([cx + r * torch.cos(a), cy + sign * r * torch.sin(a)], 1)
    return curve


def moons_density(noise: float = 0.1) -> CurveDensity:
    """scikit-learn's two moons, centred and scaled by 2: arcs of radius 2 around (-1, -0.5) and (1, 0.5)."""
    upper = _arc(-1.0, -0.5, 2.0, 0.0, math.pi)
    lower = _arc(1.0, 0.5, 2.0, 0.0, math.pi, sign=-1.0)
    return CurveDensity([upper, lower], [0.5, 0.5], 2 * noise)


def circles_density(noise: float = 0.05, factor: float = 0.5, radius: float = 2.0) -> CurveDensity:
    return CurveDensity([_arc(0, 0, radius, 0, 2 * math.pi), _arc(0, 0, radius * factor, 0, 2 * math.pi)], [0.5, 0.5], noise)


def swiss_roll_density(noise: float = 0.05) -> CurveDensity:
    """The 2-D swiss roll (u cos u, u sin u) / 5 for u uniform in [1.5 pi, 4.5 pi]."""
    def curve(u):
        a = 1.5 * math.pi * (1 + 2 * u)
        return torch.stack([a * torch.cos(a), a * torch.sin(a)], 1) / 5
    return CurveDensity([curve], [1.0], noise)


class Checkerboard:
    """Uniform on the dark squares of a 4 x 4 board of unit squares covering [-2, 2]^2."""

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.to(torch.float64)
        inside = (x.abs() < 2).all(1)
        ij = torch.floor(x + 2).long()
        dark = (ij[:, 0] + ij[:, 1]) % 2 == 0
        return torch.where(inside & dark, torch.tensor(-math.log(8.0), dtype=torch.float64),
                           torch.tensor(-math.inf, dtype=torch.float64))

    def sample(self, n: int, generator=None) -> Tensor:
        sq = torch.randint(0, 8, (n,), generator=generator)
        row = sq // 2
        col = 2 * (sq % 2) + row % 2  # dark squares: (row + col) even
        u = rand((n, 2), generator=generator, dtype=torch.float64)
        return torch.stack([col + u[:, 0], row + u[:, 1]], 1) - 2


class ShiftedMoons:
    """torchcfm's moons (see the module doc): sample only; the points come out shuffled."""

    def sample(self, n: int, generator=None) -> Tensor:
        n_out = n // 2
        a_out = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
        a_in = torch.linspace(0, math.pi, n - n_out, dtype=torch.float64)
        x = torch.cat([torch.stack([torch.cos(a_out), torch.sin(a_out)], 1),
                       torch.stack([1 - torch.cos(a_in), 0.5 - torch.sin(a_in)], 1)])
        x = x + 0.2 * rand((n, 1), generator=generator, dtype=torch.float64)  # one shift for both coordinates
        return (x * 3 - 1)[torch.randperm(n, generator=generator)]


def toy_density(name: str, **kwargs):
    """The exact model of a toy set: an object with `sample(n, generator)` and, where the density is
    known in closed form (all but `cfm_moons`), `log_prob(x)`."""
    makers = {
        "eight_gaussians": lambda radius=2.0, std=0.2: ring_mixture(8, radius, std),
        "two_gaussians_1d": lambda: GaussianMixture([-2.0, 2.0], [0.5, 0.5], [0.3, 0.7]),
        "moons": moons_density,
        "circles": circles_density,
        "swiss_roll": swiss_roll_density,
        "checkerboard": Checkerboard,
        "cfm_8gaussians": lambda: ring_mixture(8, 5.0, 0.1 ** 0.25),
        "cfm_moons": ShiftedMoons,
    }
    return makers[choose(name, makers, "toy data set")](**kwargs)


TOY_SETS = ("eight_gaussians", "moons", "swiss_roll", "checkerboard", "circles", "two_gaussians_1d", "cfm_8gaussians",
            "cfm_moons")


def toy(name: str, n: int, generator: torch.Generator | None = None, **kwargs) -> Tensor:
    """n points of the toy set `name` (float32), drawn with `generator`."""
    return toy_density(name, **kwargs).sample(n, generator).float()
