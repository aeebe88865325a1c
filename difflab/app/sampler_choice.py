"""Which sampler a run uses when the user names none: the best one measured at the budget asked for.

A budget is a number of network evaluations per sample (NFE): `--nfe N`, or `--steps N` when no `--sampler`
is named (for every sampler that spends one evaluation per step the two are the same), or else the
configuration's `sample.steps`. The table of choices, budget -> sampler spec (`name[@grid][:key=value...]`),
is the first of:

1. the run's own measurement, `sampler_choice.json` in its folder, written by
   `difflab bench samplers RUN --record`: at each budget, the difflab sampler with the lowest quality figure
   (FD for images, W2 for toy sets) on that run;
2. the configuration's `[sample.by_nfe]` table (the presets': measured on the preset's recipe, see
   benchmarks/README.md);
3. none: the configuration's `[sample]` sampler, grid and options, as before.

Between measured budgets the choice of the largest measured budget below the one asked for applies (below all
of them, the smallest's): a sampler's rank changes slowly with NFE. The budget itself is never exceeded: the
steps are the most the chosen sampler can take within it (`sampling.steps_for_nfe`). A choice from a table is
run as it was measured: the configuration's own grid and sampler options do not apply to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .._checks import choose, is_finite_number

__all__ = ["FILE", "Settings", "settle", "sampling_settings", "record", "measured", "table", "check_table", "describe"]

FILE = "sampler_choice.json"


@dataclass(frozen=True)
class Settings:
    """How a run will be sampled: `kwargs` for `dl.sample` / `sample_batched`, the sampler spec's `label`,
    the NFE `budget` it was chosen for (None when a sampler was named by steps, or is adaptive) and the
    `reason` it was chosen (one line, for `difflab sample` and `info`)."""

    kwargs: dict
    label: str
    reason: str
    budget: int | None = None
    source: str = "config"  # named | measured | preset | config


def check_table(by_nfe: dict, where: str) -> dict[int, str]:
    """A budget -> spec table with integer budgets (TOML and JSON keys are strings) and every spec parsed."""
    from ..sampling import parse_sampler_spec

    out = {}
    for key, spec in by_nfe.items():
        try:
            budget = int(key)
        except (TypeError, ValueError):
            budget = 0
        if str(key).strip() != str(budget) or budget < 1:
            raise ValueError(f"{where}: the key {key!r} is not a number of network evaluations (a whole number >= 1, "
                             "e.g. 10 = \"dpmpp_2m_sde@karras\")")
        if not isinstance(spec, str):
            raise ValueError(f"{where}.{key} must be a sampler spec such as \"dpmpp_2m_sde@karras\", got {spec!r}")
        try:
            parse_sampler_spec(spec)
        except ValueError as e:
            raise ValueError(f"{where}.{key}: {e}") from None
        out[budget] = spec
    return dict(sorted(out.items()))


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def measured(folder: Path | None) -> dict:
    """The run's recorded measurement (`record`), {} when it has none. A damaged file is refused with the fix."""
    file = Path(folder) / FILE if folder is not None else None
    if file is None or not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
        check_table({k: v["spec"] for k, v in data["budgets"].items()}, FILE)
        if not (isinstance(data["quality"], str) and data["quality"].strip() and _count(data["n"]) and data["budgets"]
                and all(is_finite_number(v["value"]) and _count(v.get("candidates", 1)) and (v.get("nfe") is None or _count(v["nfe"]))
                        for v in data["budgets"].values())
                and isinstance(data.get("floor"), (int, float, type(None)))):
            raise ValueError
        return data
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{file} is damaged (not the JSON `difflab bench samplers --record` writes): delete it, or "
                         "measure again with `difflab bench samplers RUN --record`") from None


def table(cfg, folder: Path | None = None) -> tuple[dict[int, str], str, dict]:
    """(budget -> spec, where it comes from: "measured" | "preset" | "", the run's measurement or {})."""
    data = measured(folder)
    if data:
        return check_table({k: v["spec"] for k, v in data["budgets"].items()}, FILE), "measured", data
    by_nfe = getattr(cfg.sample, "by_nfe", None) or {}
    return (check_table(by_nfe, "sample.by_nfe"), "preset", {}) if by_nfe else ({}, "", {})


def _at(budgets, budget: int) -> int:
    below = [b for b in budgets if b <= budget]
    return max(below) if below else min(budgets)


def _budget_reason(source: str, data: dict, at: int, budget: int) -> str:
    where = "" if at == budget else f" (the nearest measured budget {'below' if at < budget else 'above'} {budget})"
    if source == "measured":
        row = data["budgets"][str(at)]
        return (f"the best of {row.get('candidates', '?')} samplers measured on this run at {at} NFE{where}: {data['quality']} "
                f"{row['value']:.4g} on {data['n']:,} samples (difflab bench samplers --record)")
    return f"the configuration's measured choice for {at} NFE{where} ([sample.by_nfe])"


def settle(cfg, sampler: str | None = None, steps: int | None = None, grid: str | None = None, *, nfe: int | None = None,
           folder: Path | None = None) -> Settings:
    """The sampling settings of a run (module doc): its configuration `cfg`, its `folder` (for a recorded
    measurement; None: the configuration alone) and what the user named: `sampler` (a name or spec),
    `steps`, `grid`, `nfe` (a budget; not with `steps`)."""
    from ..samplers.grids import GRIDS
    from ..sampling import about, parse_sampler_spec, steps_for_nfe

    if steps is not None and nfe is not None:
        raise ValueError("--steps and --nfe both given: give --nfe N for a budget of N network evaluations (the sampler "
                         "takes the most steps that fit), or --steps N for N steps")
    if grid is not None:
        choose(grid, GRIDS, "grid")
    s = cfg.sample
    from_table, source, reason = False, "named" if sampler else "config", "named by --sampler" if sampler else ""
    if sampler is None:
        budget = nfe or steps or s.steps
        choices, where, data = table(cfg, folder)
        if choices:
            at = _at(choices, budget)
            sampler, nfe, steps, from_table, source = choices[at], budget, None, True, where
            reason = _budget_reason(where, data, at, budget)
        else:
            reason = "the configuration's [sample] sampler (no measured choice: difflab bench samplers RUN --record makes one)"
    spec = parse_sampler_spec(sampler or s.sampler)
    own = not from_table and spec.sampler == s.sampler and not spec.options
    label = spec.label
    if from_table and grid is not None and grid != spec.grid:  # the user's grid replaces the measured one
        label = f"{spec.sampler}@{grid}" + "".join(f":{k}={v}" for k, v in spec.options.items())
    grid = grid or spec.grid or (None if from_table else s.grid or None)
    options = {**(s.options if own else {}), **spec.options}
    adaptive = about(spec.sampler).adaptive
    extra = {}
    if nfe is not None:  # an adaptive sampler, or one whose single step costs more, is refused there
        extra = steps_for_nfe(spec.sampler, nfe, **options)
        steps = extra.pop("steps")
    else:
        steps = None if adaptive and steps is None else steps or s.steps
    grid_options = spec.grid_options or (s.grid_options if own and grid == (s.grid or None) and steps else {})
    kwargs = {"sampler": spec.sampler, "steps": steps, "grid": grid, "grid_options": grid_options, **options, **extra}
    return Settings(kwargs, label, reason, nfe if not adaptive else None, source)


def sampling_settings(cfg, sampler: str | None = None, steps: int | None = None, grid: str | None = None, *,
                      nfe: int | None = None, folder: Path | None = None) -> dict:
    """Keywords for `dl.sample` / `sample_batched` (`settle(...).kwargs`)."""
    return settle(cfg, sampler, steps, grid, nfe=nfe, folder=folder).kwargs


def record(folder: Path, result: dict) -> dict:
    """Write the run's choice from a sampler bench (`bench.measure_samplers`' result): at each budget the difflab
    sampler with the lowest quality figure. Returns what was written ({} when no difflab sampler was measured)."""
    best: dict[int, dict] = {}
    counts: dict[int, int] = {}
    for r in result["rows"]:
        if r.get("library") != "difflab" or "error" in r:
            continue
        b = int(r["nfe_budget"])
        counts[b] = counts.get(b, 0) + 1
        value = float(r[result["quality"]])
        if not math.isfinite(value):  # a sampler that diverged is no choice
            continue
        if b not in best or value < best[b]["value"]:
            best[b] = {"spec": r["sampler"], "value": value, "nfe": r.get("nfe")}
    if not best:
        return {}
    for b, row in best.items():
        row["candidates"] = counts[b]
    from .folders import write_json

    out = {"quality": result["quality"], "n": result["n"], "seed": result.get("seed", 0), "floor": result.get("floor"),
           "budgets": {str(b): best[b] for b in sorted(best)}}
    write_json(Path(folder) / FILE, out)
    return out


def describe(cfg, folder: Path | None = None) -> list[tuple[str, str]]:
    """`difflab info`'s lines on how the run is sampled when no sampler is named."""
    choices, where, data = table(cfg, folder)
    if not choices:
        s = cfg.sample
        return [("sampler", f"{s.sampler}{'@' + s.grid if s.grid else ''}, {s.steps} steps (the configuration's [sample]; "
                            "no measured choice: difflab bench samplers RUN --record makes one)")]
    if where == "measured":
        rows = ", ".join(f"{b} NFE: {v['spec']} ({data['quality']} {v['value']:.4g})" for b, v in
                         sorted(((int(k), v) for k, v in data["budgets"].items())))
        return [("sampler", f"measured on this run ({data['n']:,} samples): {rows}; default budget {cfg.sample.steps} NFE")]
    rows = ", ".join(f"{b} NFE: {spec}" for b, spec in choices.items())
    return [("sampler", f"the configuration's measured choices [sample.by_nfe]: {rows}; default budget {cfg.sample.steps} NFE")]
