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
    for file in (PACKAGE / "app").glob("*.py"):
        if not file.stem.startswith("_"):
            assert f"`app.{file.stem}`" in doc, f"docs/ARCHITECTURE.md does not mention app.{file.stem}"
    for file in (PACKAGE / "app" / "kinds").glob("*.py"):
        if not file.stem.startswith("_"):
            assert f"`{file.stem}`" in doc, f"docs/ARCHITECTURE.md does not mention the kind module {file.stem}"


# -- the application's layout (docs/ARCHITECTURE.md, "The application") -----------------------------

def _module_name(file: Path) -> str:
    parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the difflab modules it imports anywhere in it (top level or inside functions)."""
    modules = {_module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph = {}
    for name, file in modules.items():
        package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(file.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name and t.startswith("difflab."):
                    deps.add(t)
        graph[name] = deps
    return graph


def test_no_module_imports_itself_back_through_others():
    graph = _import_graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_import_difflab_loads_the_mathematics_alone():
    import subprocess
    import sys

    code = ("import sys, difflab; print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "[['difflab', n] for n in ('app', 'training', 'runs', 'config', 'evaluate', 'bench', 'demo', 'cli')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
    assert callable(dl.load) and dl.training.fit and dl.runs.train  # and they are there when used


def test_no_code_outside_a_kind_compares_a_kind_name():
    """Outside app/kinds/, no `x == "cascade"`, `kind in ("discrete", ...)` and the like: a kind's behaviour is its
    module's."""
    from difflab.app.kinds import KINDS

    names = set(KINDS)
    for file in _modules(PACKAGE):
        if (PACKAGE / "app" / "kinds") in file.parents:
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] for c in ([c] if isinstance(c, ast.Constant) else
                                                                             getattr(c, "elts", []))]
                bad = [c.value for c in consts if isinstance(c, ast.Constant) and c.value in names]
                assert not bad, f"{file.relative_to(PACKAGE)}:{node.lineno} compares a kind's name: {ast.unparse(node)}"


def test_the_command_line_is_thin():
    tree = ast.parse((PACKAGE / "app" / "cli.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= 40, f"cli.{node.name} is {length} lines"


def test_a_new_kind_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """A kind defined outside difflab, added to the registry, trains, loads, samples and shows in `info` with no
    other change: config, Run, trainer and the command line know kinds only through the registry."""
    import numpy as np
    import torch
    from typer.testing import CliRunner

    from difflab.app.kinds import KINDS, Kind
    from difflab.app.outputs import Samples
    from difflab.cli import app

    class Mean(Kind):
        name, about, networks = "mean", "a network that learns the data's mean", ("mlp",)
        sample_options = frozenset()

        def network(self, cfg, facts):
            return torch.nn.Linear(1, facts["shape"][0])

        def objective(self, cfg, data, requires=None):
            return lambda model, batch, generator: (model(torch.ones(len(batch["x"]), 1)) - batch["x"]).square().mean(1)

        def form(self, run):
            return "points"

        def check_sample(self, run, request):
            pass

        def sample(self, run, request):
            x = run.network()(torch.ones(request.n, 1))
            return Samples("points", x, {"samples": x}, summary=f"{request.n} means")

        def describe(self, run):
            return [("mean", "learns the data's mean")]

    monkeypatch.setitem(KINDS, "mean", Mean())
    runner = CliRunner()
    r = runner.invoke(app, ["train", "toy2d", "--out", str(tmp_path / "m"), "--set", "kind=mean", "--set", "train.steps=40",
                            "--set", "train.lr=0.05", "--set", "train.warmup=1", "--set", "data.toy_size=500",
                            "--set", "train.checkpoint_every=40"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sample", str(tmp_path / "m"), "--n", "3", "--out", str(tmp_path / "m.npz")])
    assert r.exit_code == 0 and "3 means" in r.output, r.output
    assert np.abs(np.load(tmp_path / "m.npz")["samples"]).max() < 1.0  # eight Gaussians on a ring: mean near 0
    assert "learns the data's mean" in runner.invoke(app, ["info", str(tmp_path / "m")]).output
    r = runner.invoke(app, ["sample", str(tmp_path / "m"), "--steps", "3"])
    assert r.exit_code == 2 and "--steps: not available for a mean run" in r.output
