"""What the command-line tests share: a folder's content as digests, and "refused in one line, nothing written"."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from difflab.cli import app

runner = CliRunner()
# --set values of a digits run small enough to train in a second (2 steps, one checkpoint, 3 DDIM steps to sample)
TINY = ["model.channels=8", "model.channel_mult=[1]", "model.attention_levels=[]", "model.num_res_blocks=1", "train.steps=2",
        "train.batch_size=16", "train.checkpoint_every=2", "train.log_every=1", "sample.sampler=ddim", "sample.steps=3"]


def snapshot(*folders: Path) -> dict:
    """path -> SHA-256 of every file under `folders` (absent folders hold nothing)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(Path(f).rglob("*"))
            if p.is_file()}


def one_error_line(r) -> str:
    """A failed command printed one error line and no traceback; returns that line."""
    assert "Traceback" not in r.output and "unexpected" not in r.output, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.output
    return lines[0]


def refused(args, *fragments, folders=(), out: Path | None = None) -> str:
    """`difflab ARGS` ends in one error line holding every fragment, exit 2, nothing written in `folders` or at `out`."""
    before = snapshot(*folders)
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, (args, r.output)
    line = one_error_line(r)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert snapshot(*folders) == before, args
    assert out is None or not Path(out).exists()
    return line
