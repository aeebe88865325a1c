"""The training loop: a model, an objective, a data set. AdamW with warm-up and clipping, EMA,
checkpoints and exact resume, DDP, wall-clock budgets, logs and a progress bar.

    batch = data.batch(indices)                    a mapping: "x" and whatever conditioning the data carry
    loss  = objective(model, batch, generator)     per example (`difflab.objectives`), averaged here
    loss.backward(); clip; optimizer.step(); ema.update(model)

The loop knows nothing of paths, couplings, predictions or weightings, nor of configurations, kinds or what a
run folder holds besides its checkpoints and log: the application (`difflab.app.trainer`) builds the model, the
objective and the data and hands them over, with a callback for what it writes when a run starts.

Exactness on resume: the data order of epoch e is DistributedSampler's permutation seeded with
(seed, e) (set_epoch), the position inside the epoch is saved, and the generator that the objective
draws from, plus torch's global RNG (dropout), are saved and restored. On CPU a run killed at step k
and resumed ends with the same weights, bit for bit, as one that never stopped.

A wall-clock budget (train.max_minutes) counts the whole run, across resumes (the time spent is
saved in the checkpoint). A learning-rate decay measured against that budget depends on the clock:
such a run is not reproducible bit for bit, one measured against train.steps is.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler

from .._checks import is_finite_number
from .._random import derive_seed
from . import distributed
from .checkpoint import latest_checkpoint, load_tensors, load_weights, optimizer_from_files, read_state, save_checkpoint
from .ema import EMA


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    seconds: float


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16), read from Linux's
    /proc/cpuinfo (or the text `cpuinfo`): where bf16 autocast pays (train.amp_cpu = "auto"). Elsewhere (no
    such flag, or no /proc/cpuinfo) False: bf16 would be emulated, slower than float32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def _budget_used(used: float, since: float, budget: float, world: int, device) -> float:
    """The fraction of the wall-clock budget spent (the largest over processes, so all agree on the
    learning rate and on the step where they stop)."""
    frac = torch.tensor([(used + time.time() - since) / budget], device=device, dtype=torch.float64)
    if world > 1:
        torch.distributed.all_reduce(frac, op=torch.distributed.ReduceOp.MAX)
    return float(frac.item())


def lr_decay_factor(progress: float, decay: str = "none", decay_from: float = 0.0) -> float:
    """d(u) with u = (progress - decay_from) / (1 - decay_from) clipped to [0, 1]:
    (1 + cos(pi u)) / 2 for cosine, 1 - u for linear, and 1 before the decay starts or with none."""
    if decay == "none" or progress <= decay_from:
        return 1.0
    u = min(1.0, (progress - decay_from) / (1.0 - decay_from))
    return 0.5 * (1.0 + math.cos(math.pi * u)) if decay == "cosine" else 1.0 - u


def lr_at(step: int, base: float, warmup: int, *, progress: float = 0.0, decay: str = "none", decay_from: float = 0.0) -> float:
    """Linear warm-up to `base` over `warmup` steps, then constant until the fraction `decay_from` of
    the run, then (`decay` = cosine or linear) down to 0 at its end:
    lr = base min(1, (step + 1) / warmup) lr_decay_factor(progress).

    `progress` is the fraction of the run done: step / train.steps, or the fraction of
    train.max_minutes spent if that is larger."""
    return (base * min(1.0, (step + 1) / warmup) if warmup > 0 else base) * lr_decay_factor(progress, decay, decay_from)


def train_step(model, objective, batch, generator, *, optimizer, lr: float, grad_clip: float, autocast=None) -> tuple[float, float]:
    """One optimiser step of `objective` on a batch; returns (mean loss, gradient norm). No step is taken
    on a non-finite loss or gradient."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast() if autocast is not None else contextlib.nullcontext():
        loss = objective(model, batch, generator).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf))
    loss_value = loss.detach().item()
    if math.isfinite(loss_value) and math.isfinite(grad_norm):
        optimizer.step()
    return loss_value, grad_norm


class _Log:
    """CSV always; TensorBoard when it is installed."""

    FIELDS = ["step", "loss", "lr", "grad_norm", "it_per_s"]

    def __init__(self, run_dir: Path, resume_step: int):
        self.path = run_dir / "log.csv"
        rows = []
        if resume_step and self.path.exists():  # drop rows past the checkpoint we resume from
            try:
                with open(self.path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
            except (OSError, UnicodeDecodeError, csv.Error):  # a damaged log: the new one starts here
                rows = []
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow(row)
        if self.tb is not None:
            for k in ("loss", "lr", "grad_norm", "it_per_s"):
                self.tb.add_scalar(k, row[k], row["step"])


def fit(model: torch.nn.Module, objective, data, run_dir: str | Path, settings, *, resume_from: Path | None = None,
        start_over: bool = False, state: dict | None = None, on_start: Callable[[], None] | None = None, name: str = "run",
        progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train `model` against `objective` on `data` into `run_dir` (module doc).

    `settings` is the train section of a configuration (steps, batch_size, lr, ... : `config.TrainConfig`);
    `resume_from` a checkpoint to continue from (verified by the caller), or with `start_over` the run
    folder's old checkpoints are deleted (once the loop's own checks have passed); `state` is stored in every
    checkpoint's state.json (the configuration, so a resume can be checked); `on_start()` is called by the main
    process when a fresh run starts, once the loop's own checks have passed (the application writes what the run
    is there: config.json, data.json). `stop_after` ends the run
    early after that many total steps (as a crash would, but cleanly), and `train.max_minutes` after
    that much wall-clock time (both checkpoint where they stop). `data` has `len()`, `batch(indices)`
    and a `name`.
    """
    run_dir = Path(run_dir)
    info, device = distributed.setup(settings.device)
    try:
        result = _fit(model, objective, data, run_dir, settings, info, device, resume_from, start_over, state or {},
                      on_start, name, progress, stop_after)
        distributed.finish()
        return result
    finally:
        distributed.teardown()


def _fit(model, objective, data, run_dir, tc, info, device, resume_from, start_over, extra_state, on_start, name, progress,
         stop_after):
    torch.manual_seed(derive_seed(tc.seed, "torch", info.rank))
    if len(data) < tc.batch_size * info.world:
        raise ValueError(f"the data set has {len(data)} examples, fewer than one batch ({tc.batch_size} x {info.world} processes)")
    model = model.to(device)
    ema = EMA(model, tc.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    generator = torch.Generator().manual_seed(derive_seed(tc.seed, "noise", info.rank))
    sampler = DistributedSampler(data, num_replicas=info.world, rank=info.rank, shuffle=True, seed=tc.seed, drop_last=True)

    step, epoch, pos, budget_used = 0, 0, 0, 0.0
    if resume_from is not None:
        state = read_state(resume_from)
        load_weights(model, load_tensors(resume_from / "model.safetensors", device), f"{resume_from}/model.safetensors")
        load_weights(ema, load_tensors(resume_from / "ema.safetensors", device), f"{resume_from}/ema.safetensors")
        optimizer_from_files(optimizer, load_tensors(resume_from / "optimizer.safetensors", device),
                             json.loads((resume_from / "optimizer.json").read_text()))
        rng = load_tensors(resume_from / "rng.safetensors")
        if f"noise.{info.rank}" not in rng:
            raise ValueError(f"{resume_from} was written by {state.get('world', 1)} process(es); resume it with as many "
                             f"(this is process {info.rank} of {info.world})")
        generator.set_state(rng[f"noise.{info.rank}"])
        torch.set_rng_state(rng[f"torch.{info.rank}"])
        step, epoch, pos = state["step"], state["epoch"], state["position"]
        budget_used = state.get("budget_seconds", 0.0)  # train.max_minutes counts the whole run, across resumes
    elif info.is_main:
        if start_over:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if on_start is not None:
            on_start()

    net = model
    if info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = None
    amp_cpu = tc.amp_cpu
    if amp_cpu == "auto":  # decided when the run starts and kept: resumed on another CPU, the run computes as it did
        recorded = state.get("bf16_autocast") if resume_from is not None else None
        amp_cpu = recorded if isinstance(recorded, bool) else cpu_has_native_bf16()
    if (device.type == "cuda" and tc.amp) or (device.type == "cpu" and amp_cpu):
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731 - no loss scaling needed
    log = _Log(run_dir, step) if info.is_main else None
    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        # into a log file (not a terminal) a refresh every 30 s, not thousands of carriage-return lines
        # under a wall-clock budget the step count is only a cap: no misleading ETA from it
        budget = f" for {tc.max_minutes:g} min" if tc.max_minutes > 0 else ""
        bar = tqdm(total=None if budget else tc.steps, initial=step, desc=f"training {name}{budget}", unit="step", dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
    end = tc.steps if stop_after is None else min(tc.steps, stop_after)
    budget = 60 * tc.max_minutes if tc.max_minutes > 0 else None
    t_start, t_log, s_log, loss_acc, n_acc, last_loss = time.time(), time.time(), step, 0.0, 0, float("nan")
    if resume_from is not None and is_finite_number(state.get("last_loss")):
        last_loss = float(state["last_loss"])  # a resumed run with nothing left to train still knows its last loss
    spent = budget_used / budget if budget else 0.0  # fraction of the budget used, agreed by all processes
    if spent >= 1:
        end = step
        if info.is_main:
            print(f"{run_dir}: train.max_minutes = {tc.max_minutes:g} is already spent by this run "
                  f"({budget_used / 60:.1f} min); raise it to train longer", file=sys.stderr)

    def diverged(what: str):
        last = latest_checkpoint(run_dir)
        raise TrainingDiverged(
            f"{what}; stopped. The last good checkpoint is {last if last else '(none yet)'}. "
            "Lower train.lr, set train.grad_clip, or check the data for NaNs."
        )

    def checkpoint():
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            diverged(f"the weights became non-finite by step {step}")  # never overwrite good checkpoints with them
        rng = {f"noise.{info.rank}": generator.get_state(), f"torch.{info.rank}": torch.get_rng_state()}
        if info.world > 1:  # rank 0 writes everyone's generator states
            gathered = [None] * info.world
            torch.distributed.all_gather_object(gathered, {k: v.tolist() for k, v in rng.items()})
            rng = {k: torch.tensor(v, dtype=torch.uint8) for g in gathered for k, v in g.items()}
        if info.is_main:
            save_checkpoint(run_dir, step, model=model, ema=ema, optimizer=optimizer, rng=rng, keep_last=tc.keep_last,
                            state={**extra_state, "epoch": epoch, "position": pos, "world": info.world, "data": data.name,
                                   "last_loss": last_loss, "budget_seconds": budget_used + time.time() - t_start,
                                   "bf16_autocast": autocast is not None})

    model.train()
    while step < end:
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        n_batches = len(order) // tc.batch_size
        while pos < n_batches and step < end:
            batch = {k: v.to(device) for k, v in data.batch(order[pos * tc.batch_size:(pos + 1) * tc.batch_size]).items()}
            lr = lr_at(step, tc.lr, tc.warmup, progress=max(step / tc.steps, spent), decay=tc.lr_decay, decay_from=tc.decay_from)
            loss, gnorm = train_step(net, objective, batch, generator, optimizer=optimizer, lr=lr, grad_clip=tc.grad_clip,
                                     autocast=autocast)
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                diverged(f"the loss became {loss} (gradient norm {gnorm}) at step {step + 1}")
            ema.update(model, step)
            step, pos, last_loss = step + 1, pos + 1, loss
            loss_acc, n_acc = loss_acc + loss, n_acc + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if log is not None and (step % tc.log_every == 0 or step == end):
                now = time.time()
                log.write({"step": step, "loss": loss_acc / n_acc, "lr": lr, "grad_norm": gnorm,
                           "it_per_s": (step - s_log) / max(now - t_log, 1e-9)})
                t_log, s_log, loss_acc, n_acc = now, step, 0.0, 0
            if budget is not None:
                spent = _budget_used(budget_used, t_start, budget, info.world, device)
                if spent >= 1:
                    end = step  # every process stops at the same step
            if step % tc.checkpoint_every == 0 or step == tc.steps:
                checkpoint()
        if pos >= n_batches:
            epoch, pos = epoch + 1, 0
    if step < tc.steps and step % tc.checkpoint_every:
        checkpoint()  # a clean early stop (stop_after, max_minutes) keeps its progress
    if bar is not None:
        bar.close()
    return TrainResult(run_dir, step, last_loss, time.time() - t_start)
