"""`train(cfg, run_dir)`: a configuration becomes a run folder. The kind builds the parts, the loop fits them.

Everything is built and checked before anything in the run folder changes: the folder itself, the runs it requires
(`run.open_requires`), the data, the facts the network is built from (`Kind.plan`), the network and its objective,
the checkpoint to resume (the same configuration, but for the keys that do not change what is computed). Then the
kind's heavy preparation (`Kind.training_data`: latents are encoded here) and `training.fit`, which writes
config.json and data.json when it starts a fresh run (its `on_start`) and knows nothing of either. A run of a kind
that trains nothing (a cascade) gets its config.json and data.json and no checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .._random import derive_seed
from .build import build_data, data_record
from .config import load_config
from .folders import check_run_folder, is_main_process, say, write_json
from .kinds import KINDS
from .kinds.base import a
from .run import open_requires

__all__ = ["train", "distill"]

# Keys that may change when a run is resumed: they do not change what is computed.
OPERATIONAL = ("steps", "device", "checkpoint_every", "keep_last", "log_every", "max_minutes")


def identity(cfg: dict) -> dict:
    """What must match to resume a run: everything but the operational train keys, the name and [sample]."""
    kept = {k: v for k, v in cfg.items() if k not in ("sample", "name")}
    return {**kept, "train": {k: v for k, v in cfg.get("train", {}).items() if k not in OPERATIONAL}}


def _filled(saved: dict) -> dict:
    """A saved configuration read back through load_config, so keys added to difflab since (with their
    defaults) do not make an old run look different."""
    try:
        return json.loads(json.dumps(load_config(saved).to_dict()))
    except (ValueError, TypeError):  # a config this version cannot read: compare it as it is
        return saved


def _same(saved: dict, cfg) -> bool:
    return identity(_filled(saved)) == identity(json.loads(json.dumps(cfg.to_dict())))


def _resume_point(run_dir: Path, cfg) -> Path | None:
    """The newest checkpoint of `run_dir` that loads (saying which damaged ones it passed over), checked
    to belong to the same configuration; None for a run that has not checkpointed yet."""
    from ..training.checkpoint import latest_valid_checkpoint, read_state

    ckpt, damaged = latest_valid_checkpoint(run_dir)
    for bad, why in damaged:
        if is_main_process():
            say(f"note: skipping the damaged checkpoint {bad.name} ({why})")
    if ckpt is None and damaged:
        raise ValueError(f"no checkpoint of {run_dir} loads (the newest: {damaged[0][1]}); start over with --fresh "
                         "(resume=False), which deletes them")
    if ckpt is None:
        return None
    if damaged and is_main_process():
        say(f"note: resuming {run_dir} from {ckpt.name}, the newest checkpoint that loads")
    if not _same(read_state(ckpt).get("config", {}), cfg):
        raise ValueError(f"{run_dir} holds a run with a different configuration; use a new run folder or --fresh "
                         "(only name, [sample] and train.steps, device, checkpoint_every, keep_last, log_every, "
                         "max_minutes may change)")
    return ckpt


def check_sampling(cfg, fix: str = "set sample.steps or sample.grid") -> None:
    """A run that will hold a diffusion model can be sampled with its own [sample] settings: checked before it
    trains (a grid its path cannot take, such as more steps than a discrete path's T, would fail only afterwards)."""
    from ..samplers.grids import make_grid
    from ..sampling import default_grid
    from .build import build_path
    from .sampler_choice import settle

    how = settle(cfg).kwargs
    if how["steps"] is None:  # adaptive
        return
    path = build_path(cfg.diffusion)
    try:
        make_grid(how["grid"] or default_grid(path), path, how["steps"], **(how["grid_options"] or {}))
    except ValueError as e:
        raise ValueError(f"[sample] of {cfg.name}: {e}; the run could not be sampled as configured ({fix})") from None


def used_folders(requires: dict) -> list[Path]:
    """The folder of every run that the runs `requires` (role -> `Run`) name, at any depth, resolved."""
    seen, stack = [], list(requires.values())
    while stack:
        run = stack.pop()
        folder = run.folder.resolve()
        if folder not in seen:
            seen.append(folder)
            stack.extend(run.requires.values())
    return seen


def check_apart(folder: Path, used) -> None:
    """A run folder neither inside nor holding a folder of a run it uses (`used`: resolved folders): training writes
    config.json, data.json and checkpoints/ and --fresh deletes checkpoints/, so nesting would change that run."""
    here = Path(folder).resolve()
    for other in used:
        if here == other or other in here.parents:
            raise ValueError(f"--out {folder} is {'the run' if here == other else 'inside the run'} {other}, which this run "
                             "uses: a run never writes into a run it uses; choose a folder outside it")
        if here in other.parents:
            raise ValueError(f"--out {folder} holds the run {other}, which this run uses: a run never writes around a run it "
                             "uses; choose a folder outside it")


def _changes(old, new, prefix: str = "") -> list[str]:
    """`key: old -> new` for every value that differs between two configuration dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new), key=str)
                for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: {json.dumps(old)} -> {json.dumps(new)}"]


def _note_changes(run_dir: Path, cfg) -> None:
    """A resumed run whose configuration changed where that is allowed (its name, [sample], the operational train
    keys) gets the new config.json, and says what changed: what the run is sampled with follows what was asked."""
    try:
        saved = _filled(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, UnicodeDecodeError):
        saved = None
    now = json.loads(json.dumps(cfg.to_dict()))
    if saved == now:
        return
    if is_main_process():
        write_json(run_dir / "config.json", cfg.to_dict())
        changed = _changes(saved, now) if saved is not None else ["config.json (it was missing or unreadable)"]
        say(f"note: resuming {run_dir} with {', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''} (config.json "
            "updated)")


def _write_record(cfg, run_dir: Path, kind, requires: dict, resume: bool):
    """A run that trains nothing: its folder holds config.json and data.json."""
    from ..training import TrainResult

    record = kind.record(cfg, requires, run_dir)
    if resume and (run_dir / "config.json").is_file():
        try:
            saved = json.loads((run_dir / "config.json").read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            saved = None
        if saved is not None and not _same(saved, cfg):
            raise ValueError(f"{run_dir} holds a different {cfg.kind}; use a new run folder or --fresh")
    write_json(run_dir / "config.json", cfg.to_dict())
    write_json(run_dir / "data.json", record)
    if is_main_process():
        say(f"{run_dir}: {a(cfg.kind)} of {' and '.join(cfg.requires.values())} (it trains nothing; sample it with difflab "
            "sample)")
    return TrainResult(run_dir, 0, float("nan"), 0.0)


def train(cfg, run_dir: str | Path, *, resume: bool = True, progress: bool = True, stop_after: int | None = None, data=None):
    """Train the run `cfg` describes into `run_dir` (module doc), continuing from its newest checkpoint that loads
    when `resume` (else starting over: its checkpoints are deleted, once everything else checked out). `data`
    replaces the configured set (for tests); `stop_after` ends the run after that many total steps, as a crash
    would but cleanly."""
    from ..training import fit

    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    kind = KINDS[cfg.kind]
    requires = open_requires(cfg, run_dir)
    check_apart(run_dir, used_folders(requires))
    if kind.trains and kind.diffusion_model:
        check_sampling(cfg)
    if not kind.trains:
        return _write_record(cfg, run_dir, kind, requires, resume)
    data = data if data is not None else build_data(cfg.data)
    facts = kind.plan(cfg, data, requires, run_dir if resume else None)
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on the run's seed alone
        torch.manual_seed(derive_seed(cfg.train.seed, "init"))
        model = kind.network(cfg, facts)
        objective = kind.objective(cfg, data, requires)
    ckpt = _resume_point(run_dir, cfg) if resume else None
    if ckpt is None:  # a fresh run: a student starts from its teacher's weights
        kind.initialize(model, cfg, requires)
    data = kind.training_data(cfg, data, requires)
    record = data_record(data)
    if ckpt is not None:
        _note_changes(run_dir, cfg)

    def on_start():  # a fresh run folder: what it is, before its first checkpoint
        write_json(run_dir / "config.json", cfg.to_dict())
        write_json(run_dir / "data.json", record)

    return fit(model, objective, data, run_dir, cfg.train, resume_from=ckpt, start_over=not resume, state={"config": cfg.to_dict()},
               on_start=on_start, name=cfg.name, progress=progress, stop_after=stop_after)


def distill(teacher, method: str, steps: int, out: str | Path, *, overrides=(), resume: bool = True, progress: bool = True) -> list:
    """`difflab distill`: the student runs a way to distil (`method`, a kind that distils: progressive, consistency,
    reflow) makes of the run `teacher` for `steps` sampling steps, trained in turn into `out` (and the folders beside
    it its plan names: a progressive student's earlier rounds), each resuming like `train`. Every configuration (with
    `overrides`) is checked before the first is trained. Returns each training's result."""
    from .._checks import choose
    from .run import Run

    ways = [k.name for k in KINDS.values() if getattr(k, "distils", False)]
    choose(method, ways, "--method")
    if isinstance(steps, bool) or int(steps) != steps or not 1 <= steps <= 4096:
        raise ValueError(f"--steps {steps}: a student's sampling steps, from 1 to 4096 (1, 2 or 4 is usual)")
    run = Run.of(teacher)
    if not run.kind.diffusion_model:
        raise ValueError(f"{run} is {a(run.config.kind)} run: a teacher holds a diffusion model")
    plan = KINDS[method].distillation(run, int(steps), Path(out))
    used = [run.folder.resolve(), *used_folders(run.requires)]
    configs = []
    for values, folder in plan:  # every round checked before the first trains
        check_run_folder(folder)
        check_apart(folder, used)
        cfg = load_config(values, list(overrides))
        check_sampling(cfg, f"give distill --steps that the teacher's path takes, not {steps}")
        if resume:
            _resume_point(folder, cfg)  # an existing run of another configuration is refused now, not after earlier rounds
        configs.append((cfg, folder))
        used.append(folder.resolve())  # the next round's teacher
    return [train(cfg, folder, resume=resume, progress=progress) for cfg, folder in configs]
