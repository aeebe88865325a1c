"""The API reference's pages, written from the package: one page per public module, grouped as docs/ARCHITECTURE.md
groups them. A module is public unless its name starts with "_"; the facades kept for old imports (`difflab.config`,
`runs`, ...) point to the module that holds their names instead of documenting them twice.

    python docs/api_pages.py     # what `./dev docs` does first (conf.py calls `write`)
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

PACKAGE = "difflab"
# Old import paths that re-export the application's modules (docs/ARCHITECTURE.md, "Facades").
FACADES = {"difflab.config": "difflab.app.config", "difflab.runs": "difflab.app.run", "difflab.evaluate": "difflab.app.evaluate",
           "difflab.bench": "difflab.app.bench", "difflab.cli": "difflab.app.cli", "difflab.demo": "difflab.app.demo"}
GROUPS = [
    ("The mathematics", ("paths", "targets", "denoisers", "guidance", "inverse", "losses", "objectives", "couplings",
                         "samplers", "sampling", "likelihood", "divergence", "oracles", "discrete", "distillation",
                         "cascade", "latent", "metrics")),
    ("Networks, data and training", ("nets", "data", "text_encoder", "features", "training", "interop", "viz", "weights")),
    ("The application", ("app",)),
]


def modules() -> list[str]:
    """Every public module of difflab, the package first, in import-path order."""
    pkg = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(pkg.__path__, PACKAGE + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name in FACADES:
            continue
        names.append(info.name)
    return sorted(names)


def group_of(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "The package"
    for title, tops in GROUPS:
        if parts[1] in tops:
            return title
    return "Other modules"


def page(name: str) -> str:
    module = importlib.import_module(name)
    if name == PACKAGE:
        # The package re-exports a few names; they are documented where they are defined.
        reexported = ", ".join(f"`{n}` ({getattr(module, n).__module__})" for n in module.__all__
                               if callable(getattr(module, n)) and getattr(module, n).__module__ != PACKAGE)
        body = (f"```{{eval-rst}}\n.. automodule:: {name}\n   :no-members:\n\n.. autofunction:: {name}.load\n```\n\n"
                f"Also at the top level: {reexported}.\n")
    else:
        body = f"```{{eval-rst}}\n.. automodule:: {name}\n   :members:\n   :undoc-members:\n   :ignore-module-all:\n```\n"
    return f"# {name}\n\n{body}"


def write(folder: Path) -> list[str]:
    """Write one page per module and the index into `folder` (only files whose text changed, so Sphinx rebuilds
    only what changed); returns the module names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = modules()
    pages = {f"{n}.md": page(n) for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(group_of(n), []).append(n)
    facades = "\n".join(f"- `{old}`: see [{new}]({new}.md)" for old, new in FACADES.items())
    index = ["# API reference", "",
             "One page per module, from its docstrings: the formula once, with shapes under Arguments and Returns.",
             "docs/ARCHITECTURE.md says what each module holds and what it must not.", ""]
    for title, members in groups.items():
        index += [f"## {title}", "", "```{toctree}", ":maxdepth: 1", "", *members, "```", ""]
    index += ["## Old import paths", "", "These modules re-export the application's names so that older code keeps working:", "",
              facades, ""]
    pages["index.md"] = "\n".join(index)
    for file in folder.glob("*.md"):
        if file.name not in pages:
            file.unlink()
    for file_name, text in pages.items():
        target = folder / file_name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return names


if __name__ == "__main__":
    print("\n".join(write(Path(__file__).resolve().parent / "api")))
