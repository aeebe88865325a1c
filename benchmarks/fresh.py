"""Timing in fresh processes: each measurement in its own interpreter, the sides alternated, medians kept.

A benchmark script calls `alternate(__file__, kinds, sys.argv[1:], rounds)` from its parent; each child runs
`script --child KIND ...` and prints one JSON object as its last line. Alternating the sides round by round
spreads the machine's drift (another tenant, clock) over all of them instead of one; a fresh process gives each
side its own peak memory and nothing warmed by the other.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys


def alternate(script: str, kinds, argv: list[str], rounds: int) -> dict[str, list[dict]]:
    """`rounds` rounds of one fresh `script --child KIND argv...` per kind, in order: kind -> its results."""
    runs = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, results in runs.items():
            r = subprocess.run([sys.executable, script, "--child", kind, *argv], capture_output=True, text=True, check=False)
            if r.returncode:
                sys.exit(f"{kind} failed:\n{r.stderr[-3000:]}")
            results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return runs


def medians(results: list[dict], keys) -> dict:
    """The first result with each of `keys` (that it has) replaced by its median over `results`."""
    row = dict(results[0])
    for key in keys:
        if key in row:
            row[key] = statistics.median(r[key] for r in results)
    return row
