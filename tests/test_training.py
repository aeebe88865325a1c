"""The training product: exact resume, atomic checkpoints under a kill, torchrun equivalence, no pickle,
strict configs, and a short run that must reach a measured quality."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import difflab as dl
from difflab.config import load_config
from difflab.training import checkpoint as ck

ROOT = Path(__file__).resolve().parents[1]

# A tiny U-Net on the 8x8 digits with dropout, so resume must restore the data order, the noise
# generator and torch's global RNG.
TINY = {
    "name": "tiny",
    "data": {"name": "digits"},
    "model": {"kind": "unet", "channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "dropout": 0.1},
    "diffusion": {"path": "ddpm_linear", "T": 100},
    "train": {"steps": 14, "batch_size": 100, "lr": 1e-3, "warmup": 3, "checkpoint_every": 4, "keep_last": 2,
              "log_every": 2, "device": "cpu"},
}


def _weights(run_dir):
    c = dl.training.latest_checkpoint(run_dir)
    return {name: ck.load_tensors(c / f"{name}.safetensors") for name in ("model", "ema", "optimizer", "rng")}


def _assert_identical(a, b):
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f"{name}:{k} differs"


@pytest.mark.parametrize("amp_cpu", [False, True], ids=["float32", "bf16"])
def test_resume_is_bit_identical(tmp_path, amp_cpu):
    cfg = load_config(TINY, [f"train.amp_cpu={str(amp_cpu).lower()}"])
    dl.training.train(cfg, tmp_path / "straight", progress=False)
    dl.training.train(cfg, tmp_path / "stopped", progress=False, stop_after=7)  # mid-epoch, between checkpoints
    assert dl.training.checkpoint.read_state(dl.training.latest_checkpoint(tmp_path / "stopped"))["step"] == 7
    dl.training.train(cfg, tmp_path / "stopped", progress=False)
    _assert_identical(_weights(tmp_path / "straight"), _weights(tmp_path / "stopped"))
    # only the last K checkpoints are kept
    assert len(list((tmp_path / "straight" / "checkpoints").glob("step-*"))) == 2


def test_amp_cpu_auto_is_bf16_exactly_where_the_cpu_has_it(tmp_path, monkeypatch):
    native = dl.training.loop.cpu_has_native_bf16
    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512bw avx512_bf16 amx_tile\n\nprocessor\t: 1\n"
    assert native(x86) and native(x86.replace("avx512_bf16", "amx_bf16"))
    assert not native(x86.replace(" avx512_bf16", "")) and not native("")
    assert native("Features\t: fp asimd bf16 i8mm\n") and not native("Features\t: fp asimd\n")  # Arm
    short = {**TINY, "train": {**TINY["train"], "steps": 4}}
    for has in (True, False):
        monkeypatch.setattr(dl.training.loop, "cpu_has_native_bf16", lambda has=has: has)
        dl.training.train(load_config(short, ['train.amp_cpu="auto"']), tmp_path / f"auto_{has}", progress=False)
        dl.training.train(load_config(short, [f"train.amp_cpu={str(has).lower()}"]), tmp_path / f"set_{has}", progress=False)
        # "auto" trains exactly as the explicit choice it stands for, and the checkpoint says which it was
        _assert_identical(_weights(tmp_path / f"auto_{has}"), _weights(tmp_path / f"set_{has}"))
        state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(tmp_path / f"auto_{has}"))
        assert state["bf16_autocast"] is has
    assert not torch.equal(_weights(tmp_path / "auto_True")["model"]["conv_in.weight"],
                           _weights(tmp_path / "auto_False")["model"]["conv_in.weight"])  # bf16 did change the arithmetic
    # decided once: a run started where bf16 is native and resumed where it is not goes on in bf16, exactly
    monkeypatch.setattr(dl.training.loop, "cpu_has_native_bf16", lambda: True)
    dl.training.train(load_config(short, ['train.amp_cpu="auto"', "train.steps=2"]), tmp_path / "moved", progress=False)
    monkeypatch.setattr(dl.training.loop, "cpu_has_native_bf16", lambda: False)
    dl.training.train(load_config(short, ['train.amp_cpu="auto"']), tmp_path / "moved", progress=False)
    _assert_identical(_weights(tmp_path / "moved"), _weights(tmp_path / "set_True"))
    assert dl.training.checkpoint.read_state(dl.training.latest_checkpoint(tmp_path / "moved"))["bf16_autocast"] is True
    with pytest.raises(ValueError, match='amp_cpu must be true, false or "auto"'):
        load_config(short, ["train.amp_cpu=yes"])


def test_a_wall_clock_budget_stops_with_a_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.training.loop, "time", _TickingClock())  # no test depends on the machine's speed
    cfg = load_config({**TINY, "train": {**TINY["train"], "steps": 10_000, "max_minutes": 0.02}})  # 1.2 s
    res = dl.training.train(cfg, tmp_path / "budget", progress=False)
    assert 0 < res.step < 10_000 and res.seconds >= 1.2  # stopped by the clock, not the step count
    assert dl.training.checkpoint.read_state(dl.training.latest_checkpoint(tmp_path / "budget"))["step"] == res.step
    # the budget is operational: resuming with a step count (and no limit) continues the same run exactly
    more = load_config({**TINY, "train": {**TINY["train"], "steps": res.step + 3}})
    dl.training.train(more, tmp_path / "budget", progress=False)
    dl.training.train(more, tmp_path / "straight", progress=False)
    _assert_identical(_weights(tmp_path / "budget"), _weights(tmp_path / "straight"))
    with pytest.raises(ValueError, match="max_minutes"):
        load_config({**TINY, "train": {**TINY["train"], "max_minutes": -1}})


def test_the_budget_counts_the_whole_run_across_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dl.training.loop, "time", _TickingClock())
    run = tmp_path / "budget"
    cfg = load_config({**TINY, "train": {**TINY["train"], "steps": 10_000, "max_minutes": 0.01}})  # 0.6 s
    first = dl.training.train(cfg, run, progress=False)
    state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(run))
    assert state["budget_seconds"] >= 0.6
    # resuming with the same budget trains no further, and says why
    assert dl.training.train(cfg, run, progress=False).step == first.step
    assert "already spent" in capsys.readouterr().err
    # a larger budget continues the run
    more = load_config({**TINY, "train": {**TINY["train"], "steps": 10_000, "max_minutes": 0.02}})
    assert dl.training.train(more, run, progress=False).step > first.step


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_lr_decay_closed_form(decay):
    d = {"cosine": lambda u: 0.5 * (1 + math.cos(math.pi * u)), "linear": lambda u: 1 - u}[decay]
    lr = lambda step, p, frm=0.0: dl.training.lr_at(step, 2.0, 10, progress=p, decay=decay, decay_from=frm)  # noqa: E731
    assert lr(4, 0.0) == pytest.approx(1.0)  # in the warm-up: 2 * 5/10
    assert lr(50, 0.0) == 2.0 and lr(50, 0.5, 0.8) == 2.0  # the decay has not started
    for p, frm in [(0.25, 0.0), (0.5, 0.0), (0.9, 0.8), (0.95, 0.5)]:
        assert lr(50, p, frm) == pytest.approx(2.0 * d((p - frm) / (1 - frm)))
    assert lr(50, 1.0) == pytest.approx(0.0, abs=1e-15) and lr(50, 1.5, 0.8) == pytest.approx(0.0, abs=1e-15)
    assert dl.training.lr_at(50, 2.0, 10, progress=0.9) == 2.0  # no decay: constant
    with pytest.raises(ValueError, match="lr_decay"):
        load_config({**TINY, "train": {**TINY["train"], "lr_decay": "step"}})
    with pytest.raises(ValueError, match="decay_from"):
        load_config({**TINY, "train": {**TINY["train"], "decay_from": 1.0}})


class _TickingClock:
    """A stand-in for the training loop's `time` module: every reading is 0.05 s after the last, so a
    wall-clock budget runs the same steps on an idle machine and on a loaded one."""

    def __init__(self):
        self.now = 1e9

    def time(self):
        self.now += 0.05
        return self.now


def test_a_decaying_run_logs_its_schedule_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = load_config({**TINY, "train": {**TINY["train"], "lr_decay": "cosine", "decay_from": 0.5, "log_every": 1}})
    dl.training.train(cfg, tmp_path / "straight", progress=False)
    dl.training.train(cfg, tmp_path / "stopped", progress=False, stop_after=9)
    dl.training.train(cfg, tmp_path / "stopped", progress=False)
    _assert_identical(_weights(tmp_path / "straight"), _weights(tmp_path / "stopped"))
    logged = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "straight" / "log.csv"))]
    tc = cfg.train  # 14 steps, warm-up 3, constant to step 7 (k / 14 <= 0.5), then a half cosine to 0 at step 14
    expected = [tc.lr * min(1, (k + 1) / 3) * (1 if k <= 7 else 0.5 * (1 + math.cos(math.pi * (k - 7) / 7))) for k in range(14)]
    assert tc.steps == 14 and tc.warmup == 3 and logged == pytest.approx(expected)
    # under a wall-clock budget the decay follows the clock: the last steps run at almost no learning rate
    monkeypatch.setattr(dl.training.loop, "time", _TickingClock())
    timed = load_config({**TINY, "train": {**TINY["train"], "steps": 10_000, "max_minutes": 0.05, "lr_decay": "linear",
                                           "log_every": 1}})
    dl.training.train(timed, tmp_path / "timed", progress=False)
    logged = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "timed" / "log.csv"))]
    assert len(logged) > 10 and logged[len(logged) // 4] > 0.5 * tc.lr and logged[-1] < 0.2 * tc.lr


def test_bf16_on_cpu_trains_and_an_old_run_without_newer_keys_resumes(tmp_path):
    cfg = load_config({**TINY, "train": {**TINY["train"], "amp_cpu": True, "steps": 8}})
    res = dl.training.train(cfg, tmp_path / "bf16", progress=False)
    w = _weights(tmp_path / "bf16")
    assert res.step == 8 and all(v.dtype == torch.float32 for v in w["model"].values())  # weights stay float32
    assert all(torch.isfinite(v).all() for v in w["model"].values())
    # a run saved before train.amp_cpu and train.max_minutes existed still resumes
    run = tmp_path / "old"
    dl.training.train(load_config({**TINY, "train": {**TINY["train"], "steps": 4}}), run, progress=False)
    ckpt = dl.training.latest_checkpoint(run)
    state = json.loads((ckpt / "state.json").read_text())
    for key in ("amp_cpu", "max_minutes"):
        del state["config"]["train"][key]
    for key in ("files", "sha256", "kind", "requires"):  # nor did it carry checksums, a kind or required runs
        state.pop(key, None)
        state["config"].pop(key, None)
    (ckpt / "state.json").write_text(json.dumps(state))
    assert dl.training.train(load_config({**TINY, "train": {**TINY["train"], "steps": 6}}), run, progress=False).step == 6


def test_sigkill_at_random_moments_and_during_checkpoint_writes_then_resume_is_exact(tmp_path):
    """`difflab train` killed with SIGKILL again and again, at random events: inside an optimiser step, half-way
    through writing each kind of checkpoint file, before the rename into place, before the `latest` pointer
    moves, before old checkpoints go (tests/killed_run.py). Each time the run resumes from a checkpoint that
    loads, and the finished run has the same weights, bit for bit, as one that was never interrupted."""
    import random

    cfg_dict, cfg_file = _tiny_file(tmp_path, steps=12, checkpoint_every=2, keep_last=2)
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # about 100 events in a whole run (12 steps, 6 checkpoints of 8 events); seeded so the test is the same every time
    hits, rng = [], random.Random(20261129)
    for kill_at in [rng.randint(1, 40) for _ in range(4)]:
        r = subprocess.run([sys.executable, str(ROOT / "tests" / "killed_run.py"), str(cfg_file), str(run), str(kill_at)],
                           capture_output=True, text=True, env=env, timeout=300)
        if r.returncode == 0:  # the run finished before its K-th event
            continue
        assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
        hits.append(r.stdout.strip())
        ckpt = dl.training.latest_valid_checkpoint(run)[0]
        if ckpt is not None:
            _weights_at(ckpt)  # the checkpoint a resume will use reads back completely
    assert any(h.startswith("writing") for h in hits), hits  # at least one kill landed inside a checkpoint write
    r = subprocess.run([sys.executable, "-m", "difflab", "train", str(cfg_file), "--out", str(run)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    torch.set_num_threads(1)
    try:
        dl.training.train(load_config(cfg_dict), tmp_path / "straight", progress=False)
    finally:
        torch.set_num_threads(2)
    _assert_identical(_weights(tmp_path / "straight"), _weights(run))


def _weights_at(ckpt):
    return {name: ck.load_tensors(ckpt / f"{name}.safetensors") for name in ("model", "ema", "optimizer", "rng")}


def _tiny_file(tmp_path, **train) -> tuple[dict, Path]:
    """TINY with some train keys changed, as a dict and as a TOML file for the command line."""
    cfg = json.loads(json.dumps(TINY))
    cfg["train"].update(train)
    path = tmp_path / "cfg.toml"
    path.write_text(_toml(cfg))
    return cfg, path


def _toml(d: dict, prefix: str = "") -> str:
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        out += f"\n[{prefix}{k}]\n" + _toml(v, f"{prefix}{k}.")
    return out


def _torchrun(*args: str) -> None:
    """Run a 2-process torchrun job on this machine (gloo on CPU) and check it succeeded."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]  # a free port
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_ranks_equal_one_rank_with_twice_the_batch(tmp_path):
    """torchrun, 2 processes x batch b (gloo) == 1 process x batch 2b, after one optimiser step."""
    out = tmp_path / "ddp.safetensors"
    _torchrun(str(ROOT / "tests" / "ddp_step.py"), str(out))
    sys.path.insert(0, str(ROOT / "tests"))
    from ddp_step import one_step

    single = one_step(rank=0, world=1)
    ddp = ck.load_tensors(out)
    for k, v in single.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)


def test_torchrun_training_writes_from_rank_zero_only(tmp_path):
    _, cfg_file = _tiny_file(tmp_path, steps=4, checkpoint_every=2, batch_size=50)
    run = tmp_path / "ddp-run"
    _torchrun("-m", "difflab", "train", str(cfg_file), "--out", str(run))
    state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(run))
    assert state["step"] == 4 and state["world"] == 2
    rng = ck.load_tensors(dl.training.latest_checkpoint(run) / "rng.safetensors")
    assert {"noise.0", "noise.1", "torch.0", "torch.1"} <= rng.keys()
    assert not torch.equal(rng["noise.0"], rng["noise.1"]), "each rank draws its own noise"
    den, path, _ = dl.load(run)
    assert isinstance(den, dl.denoisers.ClippedDenoiser)  # image data: E[x0 | x_t] stays in [-1, 1]
    x = dl.sample(den, path, (2, 1, 8, 8), sampler="ddim", steps=3)
    assert x.shape == (2, 1, 8, 8) and float(x.abs().max()) <= 1.0


def test_pickle_files_are_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="pickle"):
        ck.load_tensors(tmp_path / "weights.pt")
    for legacy in (False, True):  # torch.save's zip of pickles, and its legacy bare pickle (protocol 2)
        file = tmp_path / f"disguised{legacy}.safetensors"
        torch.save({"w": torch.zeros(2)}, file, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(ValueError, match="pickle"):
            ck.load_tensors(file)


def _with_header_length(n: int) -> bytes:
    """safetensors bytes whose JSON header is exactly `n` bytes long (a tensor name padded to fit)."""
    from safetensors.torch import save

    for pad in range(n):
        data = save({"w" + "x" * pad: torch.arange(3.0)})
        if int.from_bytes(data[:8], "little") == n:
            return data
    raise AssertionError(n)


@pytest.mark.parametrize("n", [128, 384, 640, 1408, 0x0480])
def test_a_safetensors_file_loads_whatever_its_header_length(tmp_path, n):
    """Its first byte is the header length mod 256: 0x80 (and 0x80 then 2..5, a pickle's PROTO opcode) too."""
    data = _with_header_length(n)
    assert data[0] == 0x80 or n == 384
    (tmp_path / "m.safetensors").write_bytes(data)
    (name, w), = ck.load_tensors(tmp_path / "m.safetensors").items()
    assert torch.equal(w, torch.arange(3.0))
    (tmp_path / "cut.safetensors").write_bytes(data[: n // 2])  # truncated inside its header: damaged, not pickle
    with pytest.raises(ck.CheckpointDamaged, match="not a readable safetensors"):
        ck.load_tensors(tmp_path / "cut.safetensors")


def test_a_network_whose_checkpoint_starts_with_0x80_trains_samples_and_resumes(tmp_path):
    """toy2d with depth 2 and width 16: model.safetensors' header is 128 mod 256 bytes long."""
    from typer.testing import CliRunner

    from difflab.cli import app

    run = tmp_path / "r"
    over = ["model.depth=2", "model.width=16", "train.steps=2", "train.checkpoint_every=2"]
    r = CliRunner().invoke(app, ["train", "toy2d", "--out", str(run), *[a for o in over for a in ("--set", o)]])
    assert r.exit_code == 0, r.output
    assert (dl.training.latest_checkpoint(run) / "model.safetensors").read_bytes()[0] == 0x80
    r = CliRunner().invoke(app, ["sample", str(run), "--n", "4", "--steps", "2", "--out", str(tmp_path / "s.npz")])
    assert r.exit_code == 0, r.output
    over[2] = "train.steps=4"
    r = CliRunner().invoke(app, ["train", "toy2d", "--out", str(run), *[a for o in over for a in ("--set", o)]])
    assert r.exit_code == 0 and dl.training.checkpoint.read_state(dl.training.latest_checkpoint(run))["step"] == 4, r.output


def test_loss_going_nan_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    cfg = load_config(TINY, ["train.steps=40", "train.checkpoint_every=2", "train.lr=1e12", "train.grad_clip=0.0",
                             "train.warmup=0"])
    with pytest.raises(dl.training.TrainingDiverged, match="the loss became .* last good checkpoint"):
        dl.training.train(cfg, tmp_path / "nan", progress=False)
    last = dl.training.latest_checkpoint(tmp_path / "nan")
    if last is not None:  # whatever was saved before is complete and finite
        for v in ck.load_tensors(last / "model.safetensors").values():
            assert torch.isfinite(v).all()


def test_resume_refuses_a_different_configuration(tmp_path):
    dl.training.train(load_config(TINY, ["train.steps=2"]), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        dl.training.train(load_config(TINY, ["train.steps=2", "train.lr=0.1"]), tmp_path / "r", progress=False)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.stepz=3"], "unknown configuration key 'train.stepz'; valid keys: train.steps"),
        (["train.steps=2.5"], "train.steps must be an integer"),
        (["model.kind=cnn"], "unknown model.kind 'cnn'; valid choices: unet, dit, mlp"),
        (["diffusion.prediction=noise"], "valid choices: eps, x0, v, score, velocity"),
        (["data.name=mnist"], "unknown data.name"),
        (["train.batch_size=0"], "train.batch_size must be >= 1"),
        (["model.patch_size=0"], "model.patch_size must be >= 1"),
        (["sample.sampler=euler"], "unknown sample.sampler"),
        (["bogus.key=1"], "unknown configuration key 'bogus'"),
        (["train.steps"], "--set expects key=value"),
    ],
)
def test_configs_reject_bad_keys_and_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_shipped_presets_load():
    names = dl.config.preset_names()
    assert {"toy2d", "digits", "fashion_mnist"} <= set(names)
    for name in names:
        load_config(name)
    assert (ROOT / "configs" / "digits.toml").is_file()


@pytest.mark.slow  # a training run of ~10 s
def test_short_toy_run_reaches_measured_quality(tmp_path):
    """An MLP trained for 1,500 steps on eight Gaussians samples within a measured sliced-W2 of held-out data."""
    cfg = load_config("toy2d", ["train.steps=1500", "train.checkpoint_every=1500"])
    dl.training.train(cfg, tmp_path / "toy", progress=False)
    den, path, cfg = dl.load(tmp_path / "toy")
    x = dl.sample(den, path, (4000, 2), sampler="dpmpp_2m", steps=25, grid="log_snr", generator=torch.Generator().manual_seed(0))
    held_out = dl.data.toy("eight_gaussians", 4000, torch.Generator().manual_seed(99))
    sw = dl.metrics.sliced_wasserstein(x, held_out, generator=torch.Generator().manual_seed(1))
    floor = dl.metrics.sliced_wasserstein(dl.data.toy("eight_gaussians", 4000, torch.Generator().manual_seed(7)), held_out,
                                          generator=torch.Generator().manual_seed(1))
    assert sw < 0.16, f"sliced W2 {sw:.3f} (noise floor {floor:.3f}); measured 0.12 when written"
