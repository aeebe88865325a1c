"""On a CUDA device, when one is present (skipped otherwise): samplers, a training step under bf16 and fp16 autocast,
sampling and restoring a run, and two-GPU training with NCCL. CI has no GPU; `scripts/gpu_check.sh` runs these
(`-m gpu`) on a machine that has one, with the speed benchmarks beside diffusers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import difflab as dl
from _cli import TINY as _TINY
from difflab.app.config import load_config
from difflab.app.trainer import train
from difflab.cli import app

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

ROOT = Path(__file__).resolve().parent.parent
TINY = [*_TINY, "train.steps=4"]
MIX = dl.oracles.GaussianMixture(means=[[-2.0, 0.0], [2.0, 1.0]], stds=[0.3, 0.5], weights=[0.3, 0.7])


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("gpu") / "digits"
    train(load_config("digits", [*TINY, 'train.device="cuda"']), run, progress=False)
    return run


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "ode_heun", "euler_maruyama"])
def test_a_sampler_on_cuda_draws_what_it_draws_on_the_cpu(sampler):
    """The noise comes from the same CPU generator on both devices, so a sample differs only by float rounding."""
    path = dl.paths.VP()
    out = {}
    for device in ("cpu", "cuda"):
        x = dl.sample(MIX.denoiser(path), path, (2000, 2), sampler=sampler, steps=20, grid="karras", device=device,
                      generator=torch.Generator().manual_seed(0))
        assert x.device.type == device
        out[device] = x.cpu()
    torch.testing.assert_close(out["cuda"], out["cpu"], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_a_training_step_under_autocast_on_cuda_lowers_the_loss(amp):
    net = dl.nets.UNet(1, 16, (1, 2), 1).cuda()
    path = dl.paths.DiscreteVP.linear(1000)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    x0 = dl.data.digits("train").images[:64].cuda()
    g = torch.Generator("cuda").manual_seed(0)
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=dtype):
            loss = dl.losses.diffusion_loss(net, path, x0, generator=g).mean()
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_a_run_trained_on_cuda_samples_and_restores_there_as_on_the_cpu(gpu_run, tmp_path):
    state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(gpu_run))
    assert state["step"] == 4
    for device in ("cuda", "cpu"):
        r = CliRunner().invoke(app, ["sample", str(gpu_run), "--n", "8", "--device", device, "--out", str(tmp_path / f"{device}.npz")])
        assert r.exit_code == 0, r.output
    a, b = np.load(tmp_path / "cuda.npz")["samples"], np.load(tmp_path / "cpu.npz")["samples"]
    np.testing.assert_allclose(a, b, atol=1e-3)
    r = CliRunner().invoke(app, ["restore", str(gpu_run), "--test-images", "2", "--n", "2", "--device", "cuda",
                                 "--out", str(tmp_path / "r.npz")])
    assert r.exit_code == 0 and np.isfinite(np.load(tmp_path / "r.npz")["restorations"]).all(), r.output
    r = CliRunner().invoke(app, ["train", "digits", "--device", "cuda", "--out", str(tmp_path / "amp"),
                                 *[a for o in [*TINY, "train.amp=true"] for a in ("--set", o)]])
    assert r.exit_code == 0 and json.loads((tmp_path / "amp" / "config.json").read_text())["train"]["amp"], r.output


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_with_nccl(tmp_path):
    sets = [a for o in TINY for a in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "difflab", "train",
           "digits", "--device", "cuda", "--out", str(tmp_path / "ddp"), *sets]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(tmp_path / "ddp"))
    assert state["world"] == 2 and state["step"] == 4
