"""`difflab train CONFIG --out RUN`, killed with SIGKILL at its K-th event (tests/test_robustness.py).

Events are the moments a crash hurts most: inside an optimiser step (after the backward pass, before
the update), in the middle of writing each checkpoint file (half of its bytes written), just before
the checkpoint folder is renamed into place, before the `latest` pointer is replaced, and before old
checkpoints are deleted. Before dying the process prints the event's name, so the test knows what
it hit. Usage: python killed_run.py CONFIG RUN K
"""

import os
import signal
import sys

import difflab.training.checkpoint as ck
import difflab.training.loop as loop

config, run, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = 0


def event(name: str) -> None:
    global count
    count += 1
    if count == kill_at:
        print(name, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


_write, _step, _rename, _replace, _rmtree = ck._write_bytes, loop.train_step, ck.os.rename, ck.os.replace, ck.shutil.rmtree


def write(path, data):
    if count + 1 == kill_at:  # die with half of the file on disk
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
    event(f"writing {path.name}")
    return _write(path, data)


def step(model, objective, batch, generator, *, optimizer, **kw):
    orig = optimizer.step

    def stepping(*a, **k):
        event("inside an optimiser step")
        return orig(*a, **k)

    optimizer.step = stepping
    try:
        return _step(model, objective, batch, generator, optimizer=optimizer, **kw)
    finally:
        del optimizer.step


class _Os:
    """The checkpoint module's `os`, with its renames as events."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def rename(a, b):
        event("renaming the checkpoint into place")
        return _rename(a, b)

    @staticmethod
    def replace(a, b):
        event("replacing the latest pointer")
        return _replace(a, b)


class _Shutil:
    def __getattr__(self, name):
        import shutil

        return getattr(shutil, name)

    @staticmethod
    def rmtree(path, ignore_errors=False):
        if "step-" in str(path) and ".tmp" not in str(path):
            event("deleting an old checkpoint")
        return _rmtree(path, ignore_errors=ignore_errors)


ck._write_bytes, loop.train_step, ck.os, ck.shutil = write, step, _Os(), _Shutil()
sys.argv = ["difflab", "train", config, "--out", run]
from difflab.cli import main  # noqa: E402

main()
