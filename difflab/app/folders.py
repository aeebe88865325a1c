"""Run folders on disk: the one atomic writer, reading a run's JSON files, finding the runs a run requires, and
checking a folder or an output path before anything is written.

A run folder holds config.json (the configuration, with its `kind` and the runs it `requires`), data.json (the
facts about its data: `build.data_record`), log.csv, reports (eval.json, ...) and checkpoints/
(`training.checkpoint`). Everything here says what was wrong and how to fix it in one line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_json", "read_json", "candidates", "find_run", "check_run_folder", "check_output", "say", "is_main_process"]


def say(message: str) -> None:
    """A note for the user, on stderr (stdout carries what a command produces)."""
    print(message, file=sys.stderr)


def is_main_process() -> bool:
    """False in the processes of a torchrun launch other than rank 0 (only rank 0 writes and speaks)."""
    return int(os.environ.get("RANK", "0")) == 0


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary neighbour of `path`, then rename it into place: a failure or a crash leaves what
    was there before (the rename is atomic on one file system). The temporary name keeps the suffix, so writers
    that choose a format by it (PIL, NumPy) still do."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, obj) -> Path:
    """A JSON file, written atomically."""
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1)))


def read_json(path: Path, what: str, fix: str) -> dict:
    """A run's JSON file as a dict, or one line naming the file, what is wrong with it and `fix`."""
    folder = path.parent
    if not folder.exists():
        raise FileNotFoundError(f"{folder} does not exist: it is not a difflab run folder (give the folder `difflab train` "
                                "wrote, e.g. runs/NAME)")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is a file, not a difflab run (a run is the folder `difflab train` wrote)")
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} is not a difflab run (no {path.name}); {fix}") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is damaged ({what} is not valid JSON: {str(e).splitlines()[0][:120]}); {fix}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged ({what} must be a JSON object); {fix}")
    return value


def candidates(where: str, dependent: Path) -> list[Path]:
    """Where a `requires` entry may point: an absolute folder, or a relative one from the current directory, then
    beside the dependent run, then inside it."""
    p = Path(where)
    return [p] if p.is_absolute() else [Path.cwd() / p, dependent.parent / p, dependent / p]


def find_run(where: str, dependent: Path) -> Path | None:
    """The first of the `candidates` of a `requires` entry that holds a run, or None."""
    return next((c for c in candidates(where, dependent) if (c / "config.json").is_file()), None)


def _first_file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` (itself excluded) if it is a file, else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_run_folder(folder: Path) -> None:
    """A folder a run can be written into: not a file, and not below one."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; a run folder is a directory")
    blocker = _first_file_above(folder)
    if blocker is not None:
        raise ValueError(f"--out {folder}: {blocker} is a file, not a folder; choose a run folder elsewhere")


def is_folder(out: Path) -> bool:
    """Whether an output path asks for a folder (of PNGs): no suffix, or a folder that is there."""
    return out.suffix == "" or out.is_dir()


def check_output(out: Path, allowed: tuple[str, ...], what: str) -> None:
    """An output path a command can write: one of the `allowed` forms ('.png', '.npz', '.txt', or '/' for a folder
    of PNGs), not below a file. `what` says what the samples are, for the message."""
    folder = is_folder(out)
    if folder and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; a folder of PNGs needs a folder (or write FILE.png, FILE.npz)")
    if folder and "/" not in allowed:
        files = " or ".join(f"FILE{s}" for s in allowed)
        raise ValueError(f"a folder of PNGs holds images; {what}: use --out {files}")
    if not folder and out.suffix.lower() not in allowed:
        forms = [f"FILE{s}" for s in allowed if s != "/"] + (["a folder DIR/"] if "/" in allowed else [])
        raise ValueError(f"--out {out}: {what}; write them to {' or '.join(forms)}")
    blocker = _first_file_above(out)
    if blocker is not None:
        raise ValueError(f"--out {out}: {blocker} is a file, not a folder; choose another --out")
