"""Multi-process training with torchrun: process group set-up, rank/world, per-rank seeds.

Launched by `torchrun --nproc_per_node N -m difflab train CONFIG`, each process reads RANK,
WORLD_SIZE and LOCAL_RANK from the environment and joins a process group (gloo on CPU, NCCL on
CUDA). Without those variables, training runs in one process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; returns this process's rank info and device."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo(), resolve_device(device_name)
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name, info)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def finish() -> None:
    """After a run that ended normally on every rank, leave together: a rank destroying its group while
    another still talks to it (rank 0 writing the last checkpoint) can abort gloo's I/O thread
    ("terminate called without an active exception"). Not on errors, where a peer may never arrive."""
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """The torch.device a device name means: auto (CUDA when there is one), cpu, cuda, cuda:N, mps; a device
    this machine does not have is a clear error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(name)):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asks for CUDA but no CUDA device is available; use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if info is not None and info.world > 1 and device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} is not available on this machine; use cpu or auto")
    return device
