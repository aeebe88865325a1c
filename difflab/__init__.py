"""difflab: the family of diffusion generative models from one small set of ideas.

Paths (`paths`) define the forward process, denoisers (`denoisers`) are what a network or an exact
oracle (`oracles`) gives back, samplers (`samplers`) turn a denoiser and a path into samples, and
`sample` puts them together; objectives (`objectives`) are what a model is trained to do, and the
training loop (`training.fit`) fits any of them. The application (`app`: configurations, run folders,
one module per kind of run, the command line) builds these from configurations at one edge; it is
imported only when used (`dl.load`, `dl.runs`, `dl.config`, ...). docs/ARCHITECTURE.md is the map.
"""

from importlib import import_module

from . import (cascade, couplings, data, denoisers, discrete, divergence, guidance, interop, inverse, latent, likelihood, losses,
               metrics, nets,
               objectives, oracles, paths, samplers, sampling, targets, viz)
from .denoisers import as_denoiser
from .likelihood import elbo, log_likelihood
from .sampling import sample, steps_for_nfe

__version__ = "0.1.0"

# The application and the training loop: imported when first used, so `import difflab` loads the mathematics alone.
_LAZY = ("app", "training", "runs", "config", "evaluate", "bench", "demo", "cli")


def __getattr__(name: str):
    if name in _LAZY:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(run_dir, *, ema: bool = True, device="cpu", clip: bool = True):
    """What a trained run holds, by its kind (`difflab.app.Run.load`): `(denoiser, path, config)` for a diffusion run
    (EMA weights; clipped to the data's range for images unless `clip=False`; a latent run's denoiser can `decode`),
    `(classifier, path, config)`, `(autoencoder, None, config)`, `(cascade.Cascade, None, config)`, ..."""
    return import_module(f"{__name__}.app.run").Run.open(run_dir).load(ema=ema, device=device, clip=clip)


__all__ = ["paths", "targets", "denoisers", "guidance", "losses", "objectives", "couplings", "samplers", "sampling", "oracles", "metrics",
           "sample", "steps_for_nfe", "as_denoiser", "load", "log_likelihood", "elbo"]
