"""`difflab.sample`: one call from a denoiser and a path to samples, with any sampler and grid.

Also: what a named sampler costs and takes (`steps_for_nfe`, `sampler_options`, read from each
sampler's `about`), sampler specs as the command line and the benchmarks write them
(`name[@grid][:key=value...]`, `SamplerSpec`), and `sample_batched`, the one way to draw many
reproducible samples in batches: example i's starting noise and its noise along the way come from
its own generator, so the same seed gives the same samples whatever the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._checks import check_finite, choose
from ._random import example_generators, randn, split_generators
from .samplers import SAMPLERS, check_grid
from .samplers.grids import GRIDS, grid_options, make_grid

__all__ = ["sample", "sample_batched", "prior_noise", "default_grid", "steps_for_nfe", "sampler_options", "about", "SamplerSpec",
           "parse_sampler_spec"]


def about(sampler: str):
    """What the named sampler is (`samplers._common.About`): its NFE per grid, noise, options."""
    return SAMPLERS[choose(sampler, SAMPLERS, "sampler")].about


def sampler_options(sampler: str) -> list[str]:
    """The keywords a sampler takes beyond the common ones (`eta`, `variance`, `steps_per_level`, ...)."""
    return list(about(sampler).options)


def default_grid(path) -> str:
    """'trailing' on a discrete-time path (its own timesteps, starting at the last), 'uniform' otherwise."""
    return "trailing" if path.discrete else "uniform"


def steps_for_nfe(sampler: str, nfe: int, **options) -> dict:
    """Grid steps (and options) with which `sampler`, run with `options`, spends at most `nfe` network
    evaluations (the most steps that fit). A budget below one step's cost, or an adaptive sampler (whose cost is
    not known beforehand), is refused: the budget is never exceeded."""
    info = about(sampler)
    if isinstance(nfe, bool) or not isinstance(nfe, (int, float)) or int(nfe) != nfe or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    nfe = int(nfe)
    if info.adaptive:
        raise ValueError(f"{sampler} is adaptive: set its tolerances (rtol, atol) instead of an NFE budget")
    if info.budget is not None:
        chosen = info.budget(nfe, options)
    else:
        steps = 1
        while info.nfe(steps + 1, options) <= nfe:
            steps += 1
        chosen = {"steps": steps}
    cost = info.nfe(chosen["steps"], {**options, **{k: v for k, v in chosen.items() if k != "steps"}})
    if cost > nfe:  # even the fewest steps cost more
        raise ValueError(f"--nfe {nfe}: {sampler}'s fewest steps cost {cost} network evaluations; give --nfe {cost} or "
                         "more, or a sampler that spends one per step (ddim, dpmpp_2m)")
    return chosen


def _check_options(sampler: str, options: dict) -> None:
    about(sampler).check(sampler, options)


def sample(denoiser, path, shape=None, *, sampler: str = "ddim", steps: int | None = None, timesteps=None,
           grid: str | None = None, grid_options: dict | None = None, x: Tensor | None = None,
           x_start: Tensor | None = None, t_start: float | None = None,
           generator: torch.Generator | list | None = None, device=None, dtype=None, cond: dict | None = None, callback=None,
           return_info: bool = False, **options):
    """Draw samples: start from the prior (or from `x`) at the grid's first time and run `sampler` over it.

    The first time is t = 1, except on the karras and log_snr grids of a VP-type schedule that goes
    below log-SNR -2 ln 80 (cosine; linear betas by a little), which start where the prior already
    holds (`samplers.grids.noise_end`).

    `sampler` is a name (`samplers.SAMPLERS`) or a function of the samplers' form. Give either `steps` (a grid
    named `grid` with its `grid_options`, e.g. {"rho": 5} for karras:
    see `samplers.grids.GRIDS`) or `timesteps` (an explicit decreasing grid of times in [0, 1]).
    `ode_rk45` is adaptive and needs neither. `options` are the sampler's own keywords (`eta`,
    `variance`, `snr`, `rtol`, ...), checked by name; `cond` holds conditioning passed on to the
    denoiser. `generator` is one torch.Generator or a list of them, one per example. Returns the
    samples, and a `SampleInfo` (NFE, grid) with `return_info=True`.

    SDEdit (Meng et al. 2022, editing): `x_start` (examples to edit) is noised on the path to `t_start`,
    x = alpha(t_start) x_start + sigma(t_start) z, and the sampler runs from there over the part of the grid
    below t_start (so about steps x t_start steps; a discrete-time path's t_start is its nearest step i / T).
    t_start = 1 draws from the prior's side, small t_start keeps the example nearly as it is.
    """
    if callable(sampler):  # a sampler function of one's own (e.g. inverse.repaint with its mask bound)
        fn, sampler = sampler, getattr(sampler, "__name__", "a sampler function")
    else:
        fn = SAMPLERS[choose(sampler, SAMPLERS, "sampler")]
        _check_options(sampler, options)

    if timesteps is not None and steps is not None:
        raise ValueError("give either steps= or timesteps=, not both")
    if timesteps is not None:
        if grid is not None or grid_options:
            raise ValueError("grid= and grid_options= build a grid from steps=; they cannot be combined with explicit timesteps=")
        ts = check_grid(timesteps)
    elif steps is None and sampler == "ode_rk45":
        if grid_options:
            raise ValueError("ode_rk45 without steps= runs on no grid: grid_options= do not apply")
        ts = torch.tensor([1.0, path.t_min, 0.0], dtype=torch.float64)  # adaptive: start, stop, denoise
    elif steps is None:
        raise ValueError(f"sampler {sampler!r} needs steps= (number of steps) or timesteps= (an explicit grid)")
    else:
        ts = make_grid(grid or default_grid(path), path, steps, **(grid_options or {}))

    if x_start is not None:
        if x is not None:
            raise ValueError("give x= (a starting point at the grid's first time) or x_start= (examples to edit), not both")
        ts = _edit_grid(ts, path, t_start)
        check_finite(x_start, "x_start (the examples to edit)")
        if shape is not None and tuple(shape) != tuple(x_start.shape):
            raise ValueError(f"shape={tuple(shape)} does not match x_start's shape {tuple(x_start.shape)}")
        x_start = x_start.to(device=device or x_start.device, dtype=dtype or x_start.dtype)
        noise = randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
        x = path.perturb(x_start, float(ts[0]), noise)
    elif t_start is not None:
        raise ValueError("t_start= says where an edit starts: give the examples to edit as x_start=")
    elif x is None:
        if shape is None:
            raise ValueError("give shape= (for example (n, 2)) or a starting sample x=")
        x = path.prior_sample(shape, generator, device=device, dtype=dtype)
    else:
        check_finite(x, "x (the starting sample)")
        if shape is not None and tuple(shape) != tuple(x.shape):
            raise ValueError(f"shape={tuple(shape)} does not match the starting sample's shape {tuple(x.shape)}")
        x = x.to(device=device or x.device, dtype=dtype or x.dtype)
    return fn(denoiser, path, x, ts, generator=generator, callback=callback, return_info=return_info,
              **options, **(cond or {}))


def _edit_grid(ts: Tensor, path, t_start) -> Tensor:
    """The part of the grid `ts` below t_start, starting at t_start (SDEdit; `sample`'s doc)."""
    if t_start is None:
        raise ValueError("an edit (x_start=) needs t_start=, the time it starts from in (0, 1] (0.5 is usual)")
    t0 = float(t_start)
    if not 0 < t0 <= 1:
        raise ValueError(f"t_start must lie in (0, 1] (0: no edit, 1: the prior), got {t_start}")
    if path.discrete:  # on the path's own grid i / T
        t0 = max(round(t0 * path.T), 1) / path.T
    below = ts[ts < t0 - 1e-12]
    if below.numel() == 0 or float(below[-1]) != 0.0:
        below = torch.cat([below, torch.zeros(1, dtype=ts.dtype)])
    return torch.cat([torch.tensor([t0], dtype=ts.dtype), below])


def prior_noise(path, n: int, shape, seed: int | list = 0, dtype=None) -> Tensor:
    """n draws of the prior N(0, sigma(1)^2 I) of per-example `shape`, example i from its own generator
    (`seed`, or the list of n generators itself)."""
    gens = seed if isinstance(seed, (list, tuple)) else example_generators(seed, n)
    sigma1 = float(path.sigma(torch.tensor(1.0, dtype=torch.float64)))
    return sigma1 * randn((n, *shape), generator=gens, dtype=dtype)


def sample_batched(denoiser, path, n: int, shape, *, seed: int = 0, batch_size: int = 500, x: Tensor | None = None,
                   cond: dict | None = None, device=None, dtype=None, progress: bool = False, return_info: bool = False,
                   **kwargs):
    """n samples of per-example `shape`, drawn in batches of `batch_size`, the same for any batch size
    (except with a sampler whose `about.batch_invariant` is False: `pc`'s step size is a batch statistic,
    `ode_rk45` chooses its steps for the whole batch).

    Example i draws its starting noise (unless `x` gives all n starting points, or `x_start` all n examples
    to edit) and every later noise from its own generator (`_random.example_generators(seed, n)`), and
    `cond` holds one row per example; `kwargs` go to `sample` (sampler, steps, grid, options, t_start...). Returns the samples on the
    CPU (and the `SampleInfo` of the last batch: the NFE per sample).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    gens = example_generators(seed, int(n))
    x_start = kwargs.pop("x_start", None)
    if x_start is not None:
        if x_start.shape[0] != n:
            raise ValueError(f"x_start holds {x_start.shape[0]} examples to edit for n={n} samples")
    elif x is None:
        x = prior_noise(path, int(n), shape, gens, dtype=dtype)
    elif x.shape[0] != n:
        raise ValueError(f"x holds {x.shape[0]} starting points for n={n} samples")
    for key, value in (cond or {}).items():
        if torch.is_tensor(value) and value.ndim > 0 and value.shape[0] != n:
            raise ValueError(f"cond[{key!r}] has {value.shape[0]} rows for n={n} samples (one per example)")
    starts = range(0, int(n), int(batch_size))
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"sampling {n}", unit="batch")
    outs, info = [], None
    for i in starts:
        j = min(i + int(batch_size), int(n))
        cb = {k: (v[i:j].to(device) if torch.is_tensor(v) and v.ndim > 0 else v) for k, v in (cond or {}).items()}
        start = {"x_start": x_start[i:j]} if x_start is not None else {"x": x[i:j]}
        xb, info = sample(denoiser, path, **start, generator=split_generators(gens, i, j), device=device, dtype=dtype,
                          cond=cb or None, return_info=True, **kwargs)
        outs.append(xb.cpu())
    out = torch.cat(outs)
    return (out, info) if return_info else out


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler with its grid and options, as written `name[@grid][:key=value...]` (`parse_sampler_spec`):
    `dpmpp_2m@karras:rho=4`, `unipc:variant=bh1:order=3`. A key the grid takes (rho, t_max, ...) is a grid
    option, any other must be one of the sampler's."""

    sampler: str
    grid: str | None = None
    options: dict = field(default_factory=dict)
    grid_options: dict = field(default_factory=dict)
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or self.sampler

    @property
    def stochastic(self) -> bool:
        return about(self.sampler).draws_noise(self.options)

    def steps_for_nfe(self, nfe: int) -> dict:
        return steps_for_nfe(self.sampler, nfe, **self.options)

    def kwargs(self, nfe: int | None = None) -> dict:
        """Keywords for `sample` (and `sample_batched`): sampler, grid, options and, for a budget, steps."""
        kw = {"sampler": self.sampler, "grid": self.grid, "grid_options": dict(self.grid_options), **self.options}
        return {**kw, **self.steps_for_nfe(nfe)} if nfe is not None else kw


def _number(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_sampler_spec(spec: str) -> SamplerSpec:
    """'name[@grid][:key=value...]' -> SamplerSpec, every name checked (numbers become int or float)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a sampler spec is name[@grid][:key=value...], e.g. dpmpp_2m@karras:rho=4; got {spec!r}")
    head, *pairs = spec.strip().split(":")
    sampler, at, grid = head.partition("@")
    choose(sampler, SAMPLERS, "sampler")
    if at:
        choose(grid, GRIDS, "grid")
    own, grid_own = sampler_options(sampler), grid_options(grid) if grid else {}
    options, gopts = {}, {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"sampler option {pair!r} in {spec!r} is not key=value (e.g. unipc:variant=bh1:order=3)")
        if key in grid_own:
            gopts[key] = _number(value)
        elif key in own:
            options[key] = _number(value)
        else:
            raise ValueError(f"{spec!r}: {key!r} is neither an option of {sampler} ({', '.join(own) or 'none'}) nor of "
                             + (f"the {grid} grid ({', '.join(grid_own) or 'none'})" if grid else "a grid (name one: @karras)"))
    return SamplerSpec(sampler, grid or None, options, gopts, spec.strip())
