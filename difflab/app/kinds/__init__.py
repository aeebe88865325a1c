"""The registry of run kinds: one module per kind, one line here each (`KINDS`: name -> `base.Kind`).

| kind | module | holds |
|---|---|---|
| diffusion | `diffusion` | a denoiser on a Gaussian path (pixels or latents; class, text or low-resolution conditions) |
| classifier | `classifier` | a noise-conditional classifier that guides diffusion runs |
| autoencoder | `autoencoder` | the first stage of latent diffusion |
| cascade | `cascade` | a base and a super-resolution run sampled one after the other |
| discrete | `discrete` | categorical diffusion over symbols |
| autoregressive | `autoregressive` | the exact-likelihood reference over symbols |
| progressive | `progressive` | a student of a teacher: two of its DDIM steps in one (`Student`: what students share) |
| consistency | `consistency` | a consistency model, distilled from a teacher or trained from data |
| reflow | `reflow` | a rectified flow on a teacher's noise -> sample pairs |
"""

from __future__ import annotations

from importlib import import_module

from .base import Kind

KINDS: dict[str, Kind] = {}


def register(module: str) -> None:
    """Add the kind `module` (a module of this package) defines as `KIND`."""
    kind = import_module(f"{__name__}.{module}").KIND
    KINDS[kind.name] = kind


register("diffusion")
register("classifier")
register("autoencoder")
register("cascade")
register("discrete")
register("autoregressive")
register("progressive")
register("consistency")
register("reflow")


def sections() -> dict:
    """name -> dataclass of every configuration section a kind declares, in the order of the registry."""
    out = {}
    for kind in KINDS.values():
        for name, cls in kind.sections.items():
            if out.setdefault(name, cls) is not cls:
                raise RuntimeError(f"two kinds declare the configuration section [{name}]")
    return out


__all__ = ["KINDS", "Kind", "register", "sections"]
