"""The house says what it is (docs/ARCHITECTURE.md): the mathematics never reads a configuration or a run
folder, the training loop knows nothing of paths, losses or couplings, and discreteness is one property."""

import ast
from pathlib import Path

import difflab as dl

PACKAGE = Path(dl.__file__).parent
APPLICATION = {"app", "config", "runs", "training", "evaluate", "bench", "demo", "cli", "__main__"}


def _imports(file: Path) -> set[str]:
    """The difflab modules a file imports (first component below difflab), relative or absolute, anywhere in it."""
    tree = ast.parse(file.read_text())
    parts = file.relative_to(PACKAGE).with_suffix("").parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(parts[:-1])[: len(parts) - node.level] if node.level > 1 else list(parts[:-1])
                target = base + (node.module.split(".") if node.module else [])
                names = [target + [a.name] for a in node.names] if not node.module else [target]
                for t in names:
                    if t:
                        found.add(t[0])
            elif node.module and node.module.startswith("difflab"):
                rest = node.module.split(".")[1:]
                found.update([rest[0]] if rest else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("difflab."):
                    found.add(a.name.split(".")[1])
    return found


def _modules(where: Path):
    return [p for p in where.rglob("*.py")]


def test_the_mathematics_never_imports_the_application():
    for file in _modules(PACKAGE):
        top = file.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top in APPLICATION or top == "__init__":
            continue
        bad = _imports(file) & APPLICATION
        assert not bad, f"{file.relative_to(PACKAGE)} (mathematics) imports the application: {bad}"


def test_the_training_loop_knows_nothing_of_paths_losses_or_couplings():
    """training/ imports none of them, directly; `training.train(cfg)` reaches them only through runs.train (the
    edge), imported lazily inside that one function."""
    for file in _modules(PACKAGE / "training"):
        tree = ast.parse(file.read_text())
        top_level = {n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in top_level:
            names = {getattr(node, "module", None) or ""} | {a.name for a in node.names}
            assert not any(m in str(names) for m in ("paths", "losses", "couplings", "objectives", "config", "targets")), \
                f"{file.name}: {ast.unparse(node)}"
        text = file.read_text()
        for word in ("diffusion_loss", "couple(", "prediction=", "weighting="):
            assert word not in text, f"{file.name} mentions {word}"


def test_discreteness_is_one_property_of_the_path():
    for file in _modules(PACKAGE):
        text = file.read_text()
        assert 'getattr(path, "T"' not in text and "path.T is None" not in text and "path.T is not None" not in text, file.name
    assert dl.paths.DiscreteVP.linear(10).discrete and dl.paths.DiscreteVE.geometric(3).discrete
    assert not any(p.discrete for p in (dl.paths.VP(), dl.paths.VE(), dl.paths.Cosine(), dl.paths.Linear(), dl.paths.SubVP()))


def test_architecture_document_names_every_module():
    doc = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    for file in PACKAGE.glob("*.py"):
        if file.stem.startswith("_"):
            continue
        assert f"`{file.stem}`" in doc, f"docs/ARCHITECTURE.md does not mention {file.stem}"
    for sub in ("samplers", "nets", "data", "training", "discrete"):
        assert f"`{sub}/`" in doc or f"`{sub}`" in doc, sub
