"""difflab: the family of diffusion generative models from one small set of ideas.

Paths (`paths`) define the forward process, denoisers (`denoisers`) are what a network or an exact
oracle (`oracles`) gives back, samplers (`samplers`) turn a denoiser and a path into samples, and
`sample` puts them together; objectives (`objectives`) are what a model is trained to do, and the
training loop (`training.fit`) fits any of them. The application (`config`, `runs`, `evaluate`,
`bench`, `demo`, `cli`) builds these from configurations at one edge. docs/ARCHITECTURE.md is the map.
"""

from . import (cascade, couplings, data, denoisers, discrete, divergence, guidance, interop, latent, likelihood, losses, metrics, nets,
               objectives, oracles, paths,
               samplers, sampling, targets, training, viz)
from .denoisers import as_denoiser
from .likelihood import elbo, log_likelihood
from .runs import load
from .sampling import sample, steps_for_nfe

__version__ = "0.1.0"

__all__ = ["paths", "targets", "denoisers", "guidance", "losses", "objectives", "couplings", "samplers", "sampling", "oracles", "metrics",
           "sample", "steps_for_nfe", "as_denoiser", "load", "log_likelihood", "elbo"]
