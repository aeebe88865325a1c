"""The `difflab` command, under the name earlier versions gave it: `difflab.app.cli`."""

from .app.cli import app, bench_app, main

__all__ = ["app", "bench_app", "main"]
