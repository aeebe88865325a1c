"""`Run`: a trained run folder, opened once. What `dl.load`, `difflab sample`, `eval`, `info`, `bench` and the demo
use.

`Run.open(folder)` reads config.json (checked as any configuration is) and data.json once; the rest is read when
first asked for and kept: the newest checkpoint that loads (`checkpoint`), its state, the network's weights
(`network`), and the runs this one requires (`requires`: role -> `Run`, each checked to be of the kind the role
needs, with a checkpoint that loads, and no run requiring itself through others). Every verb checks a request
whole (the request's own values, what the run's kind accepts, the output) before any work, then hands it to the
run's kind (`kinds.base.Kind`), which knows what to do with a run of its kind.

    Run.open("runs/fashion_mnist").sample(SampleRequest(n=64, steps=20, out=Path("s.png")))
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from .config import load_config
from .folders import candidates, find_run, read_json, say
from .kinds import KINDS
from .kinds.base import a

__all__ = ["Run", "open_requires", "read_config", "read_facts"]

_CONFIG_FIX = ("train one with `difflab train CONFIG`, or restore config.json (every checkpoint's state.json holds a copy "
               "under \"config\")")
_DATA_FIX = "it is written when training starts: train the run again with --fresh"


class Run:
    """A run folder, its configuration and data facts read once (module doc)."""

    def __init__(self, folder: Path, config, facts: dict, chain: tuple = ()):
        self.folder, self.config, self.facts = Path(folder), config, facts
        self.kind = KINDS[config.kind]
        self._chain = chain  # the runs (resolved folders) that led here through `requires`, for loops
        self._networks: dict = {}
        self._others: dict = {}
        self._verified: dict = {}

    @classmethod
    def open(cls, folder, *, chain: tuple = ()) -> "Run":
        """Read a run folder's config.json and data.json (one clear line if either is missing or damaged)."""
        folder = Path(folder)
        return cls(folder, read_config(folder), read_facts(folder), chain)

    @classmethod
    def of(cls, run) -> "Run":
        """`run` itself if it is a Run, else the run folder it names, opened."""
        return run if isinstance(run, Run) else cls.open(run)

    def __str__(self) -> str:
        return str(self.folder)

    def __repr__(self) -> str:
        return f"Run({str(self.folder)!r}, kind={self.config.kind!r})"

    # -- what it holds ---------------------------------------------------------------------------

    @cached_property
    def requires(self) -> dict:
        """role -> `Run` of every run this one names in `requires` (`open_requires`)."""
        return open_requires(self.config, self.folder, self._chain)

    @cached_property
    def checkpoint(self):
        """(the newest checkpoint that loads or None, [(damaged checkpoint, why)] passed over)."""
        from ..training.checkpoint import latest_valid_checkpoint

        return latest_valid_checkpoint(self.folder)

    @cached_property
    def state(self) -> dict:
        """state.json of the newest checkpoint that loads ({} before the first one)."""
        from ..training.checkpoint import read_state

        ckpt = self.checkpoint[0]
        return read_state(ckpt) if ckpt is not None else {}

    def checkpoint_at(self, step: int, why: str = "it was asked for", fix: str = "use another step") -> Path:
        """The checkpoint of `step`, verified (once); `why` it is needed and how to `fix` it go into the message when
        it does not load."""
        from ..training.checkpoint import CheckpointDamaged, verify

        if step not in self._verified:
            ckpt = self.folder / "checkpoints" / f"step-{step:08d}"
            try:
                verify(ckpt)
            except (CheckpointDamaged, FileNotFoundError, OSError) as e:
                raise ValueError(f"the checkpoint of step {step} of {self.folder} is needed ({why}) and does not load "
                                 f"({str(e).splitlines()[0][:160]}); {fix}") from None
            self._verified[step] = ckpt
        return self._verified[step]

    def weights_digest(self, ckpt: Path) -> str:
        """The SHA-256 of a checkpoint's EMA weights (recorded in its state.json, or computed for old ones)."""
        import hashlib

        from ..training.checkpoint import read_state

        recorded = (read_state(ckpt).get("files") or {}).get("ema.safetensors")
        return recorded or hashlib.sha256((ckpt / "ema.safetensors").read_bytes()).hexdigest()

    def _newest_checkpoint(self) -> Path:
        ckpt, damaged = self.checkpoint
        if ckpt is None:
            if damaged:
                raise ValueError(f"no checkpoint of {self.folder} loads (the newest: {damaged[0][1]}); train it again with --fresh")
            raise FileNotFoundError(f"{self.folder} has no complete checkpoint yet; train it (difflab train) until it writes one")
        if damaged:
            say(f"note: the newest checkpoint of {self.folder} is damaged ({damaged[0][1]}); using {ckpt.name}")
        return ckpt

    def network(self, *, ema: bool = True, device="cpu", step: int | None = None):
        """The run's network with its EMA (or raw) weights from the newest checkpoint that loads, or from the
        checkpoint of `step`, in eval mode (kept: asked again, it is not read again)."""
        from ..training.checkpoint import load_tensors, load_weights

        key = (ema, str(device), step)
        if key not in self._networks:
            self.requires  # the runs it depends on are there (a latent run's network needs its autoencoder)
            ckpt = self._newest_checkpoint() if step is None else self.checkpoint_at(step)
            try:
                net = self.kind.network(self.config, self.facts)
            except ValueError as e:
                raise ValueError(f"{self.folder}: its config.json and data.json do not make a model ({e})") from None
            file = ckpt / ("ema.safetensors" if ema else "model.safetensors")
            load_weights(net, load_tensors(file), str(file))
            self._networks[key] = net.to(device).eval().requires_grad_(False)
        return self._networks[key]

    def load(self, *, ema: bool = True, device="cpu", clip: bool = True):
        """What the run holds, by its kind (`dl.load`)."""
        return self.kind.load(self, ema=ema, device=device, clip=clip)

    def open_other(self, folder) -> "Run":
        """Another run a request names (e.g. --classifier), opened once; a folder that is this run itself is refused."""
        key = Path(folder).resolve()
        if key == self.folder.resolve():
            raise ValueError(f"{folder} is the run itself ({self.folder}); name another run")
        if key not in self._others:
            self._others[key] = Run.open(folder)
        return self._others[key]

    # -- verbs -----------------------------------------------------------------------------------

    def sample(self, request) -> tuple:
        """Draw and write samples as `request` (a `requests.SampleRequest`) asks: (`outputs.Samples`, the path written)."""
        return self._draw(request, "sample", {**request.OPTIONS, **request.guidance.OPTIONS}, self.kind.form(self))

    def restore(self, request) -> tuple:
        """Restore observations as `request` (a `requests.RestoreRequest`) asks and write the picture or arrays:
        (`outputs.Samples`, the path written)."""
        return self._draw(request, "restore", request.OPTIONS, "images")

    def edit(self, request) -> tuple:
        """Edit images (SDEdit) as `request` (a `requests.EditRequest`) asks: (`outputs.Samples`, the path written)."""
        return self._draw(request, "edit", request.OPTIONS, "images")

    def _draw(self, request, verb: str, options: dict, form: str) -> tuple:
        """A verb that draws and writes: the request checked whole (its values, the options the kind takes, the
        output, the kind's own checks), then the kind's `verb`, then the output written."""
        from . import outputs

        request.check()
        self._refuse(request.given(), f"{verb}_options", options)
        out = request.out if request.out is not None else outputs.default_out(form)
        outputs.check(out, form, self.facts["shape"])
        getattr(self.kind, f"check_{verb}")(self, request)
        samples = getattr(self.kind, verb)(self, request)
        return samples, outputs.write(samples, out)

    def evaluate(self, request) -> list[Path]:
        """Measure the run as `request` (an `EvalRequest`) asks; the reports written (the first is to be shown)."""
        request.check()
        self._refuse(request.given(), "eval_options", {**request.OPTIONS, **request.guidance.OPTIONS})
        self.kind.check_eval(self, request)
        return self.kind.evaluate(self, request)

    def _refuse(self, given: list[tuple[str, str]], accepted: str, options: dict) -> None:
        """Refuse the options a request set that this run's kind does not take (its `accepted` declaration), saying
        what it takes and which kinds take the others."""
        takes = getattr(self.kind, accepted)
        extra = [(field, option) for field, option in given if field not in takes]
        if not extra:
            return
        shown = ", ".join(o for f, o in options.items() if f in takes) or "no options"
        owners: dict = {}
        for field, option in extra:
            takers = [k for k in KINDS.values() if field in getattr(k, accepted)]
            # a kind built on another (a distilled student on diffusion) goes under the other's name
            whose = tuple(k.name for k in takers if not any(o is not k and isinstance(k, type(o)) for o in takers))
            owners.setdefault(whose, []).append(option)
        where = "; ".join(f"{' and '.join(opts)} {'is' if len(opts) == 1 else 'are'} for {' and '.join(whose)} runs only"
                          for whose, opts in owners.items() if whose)
        raise ValueError(f"{', '.join(o for _, o in extra)}: not available for {a(self.config.kind)} run {self.folder} (it "
                         f"takes {shown})" + (f"; {where}" if where else ""))

    def bench(self, request) -> dict:
        """Quality and time of samplers against NFE (`difflab bench samplers`), as `request` (a `BenchRequest`) asks."""
        request.check()
        self.kind.check_bench(self, request)
        return self.kind.bench(self, request)

    def describe(self) -> list[str]:
        """What `difflab info` shows: what the run is, its data, model, the kind's own lines, progress, reports."""
        import json

        cfg, facts = self.config, self.facts
        lines = [("run", str(self.folder)),
                 ("kind", cfg.kind + "".join(f", requires {role} = {where}" for role, where in cfg.requires.items())),
                 ("data", f"{facts.get('name')}: {facts.get('size')} examples of shape {tuple(facts['shape'])}"
                  + (f", {facts['num_classes']} classes" if facts.get("num_classes") else ""))]
        conditioning = [w for w, on in (("class-conditional", cfg.model.class_conditional),
                                        ("text-conditional", cfg.model.text_conditional)) if on]
        lines.append(("model", f"{cfg.model.kind} ({', '.join(conditioning) or 'unconditional'})"))
        lines += self.kind.describe(self)
        if self.kind.trains:
            state = self.state
            lines.append(("progress", f"{state.get('step', 0)} / {cfg.train.steps} steps"
                          + (f", last loss {state['last_loss']:.4f}" if state else "")))
            lines += [("damaged", f"{bad.name}: {why}") for bad, why in self.checkpoint[1]]
        text = [f"{label:9s} {value}" for label, value in lines]
        for report in sorted(self.folder.glob("report*.json")):
            try:
                text.append(f"{report.name}: {json.dumps(json.loads(report.read_text()))}")
            except (ValueError, UnicodeDecodeError):
                text.append(f"{report.name}: (damaged, not JSON)")
        return text


def read_config(folder: Path):
    """A run folder's configuration (config.json), checked as any configuration is."""
    values = read_json(Path(folder) / "config.json", "the configuration", _CONFIG_FIX)
    try:
        return load_config(values)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{Path(folder) / 'config.json'} does not hold a valid configuration: {e}") from None


def read_facts(folder: Path) -> dict:
    """What a run was trained on (data.json): {'name', 'shape', 'num_classes', 'class_names', 'size', 'range', ...}."""
    facts = read_json(Path(folder) / "data.json", "the data record", _DATA_FIX)
    shape = facts.get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValueError(f"{Path(folder) / 'data.json'} is damaged (no valid 'shape'); train the run again with --fresh")
    return facts


def _fills(kind, need: str) -> bool:
    """Whether a run of `kind` can fill a role that needs `need`: a kind's name, or a capability of kinds
    (`Kind.diffusion_model`)."""
    return bool(getattr(kind, need)) if isinstance(getattr(kind, need, None), bool) else kind.name == need


def open_requires(cfg, folder: Path, chain: tuple = ()) -> dict:
    """role -> `Run` of each run `cfg.requires` names for the run in `folder` (which need not exist yet), each
    checked: there (a relative folder is looked up from the current directory, then beside `folder`), of the kind
    its role needs, with a checkpoint that loads if it trains, and not a loop (a run requiring itself, directly or
    through others)."""
    folder = Path(folder)
    kind = KINDS[cfg.kind]
    need = kind.requires
    if need and not set(need) <= set(cfg.requires):
        raise ValueError(f"a {cfg.kind} run requires {', '.join(f'requires.{r}' for r in need)} (the run folders of its "
                         f"{', '.join(need.values())}); it names {', '.join(cfg.requires) or 'none'}")
    roles = {**need, **kind.optional}  # a role of its kind must be a run of the kind it names; other roles any run
    here = (*chain, folder.resolve())
    found = {}
    for role, where in cfg.requires.items():
        path = find_run(where, folder)
        if path is None and any(c.resolve() == folder.resolve() for c in candidates(where, folder)):
            path = folder  # the run names itself: a loop even before it exists
        if path is None:
            raise FileNotFoundError(f"{folder} requires the run {where!r} as its {role}, and it is not there (looked in "
                                    f"{Path.cwd()} and {folder.parent}); train it first or fix requires.{role}")
        if path.resolve() in here:
            loop = " -> ".join(str(p) for p in (*here[here.index(path.resolve()):], path.resolve()))
            itself = "the run itself" if path.resolve() == folder.resolve() else "a run that requires it"
            raise ValueError(f"requires.{role} = {where!r} of {folder} is {itself} (a loop: {loop}); name another run "
                             "in its config.json")
        run = Run.open(path, chain=here)
        if role in roles and not _fills(run.kind, roles[role]):
            need = roles[role]
            if hasattr(run.kind, need):  # a capability: the kinds that have it
                need = " or ".join(k.name for k in KINDS.values() if getattr(k, need))
            raise ValueError(f"requires.{role} = {where!r} is {a(run.config.kind)} run; {a(need)} run is needed")
        if run.kind.trains and run.checkpoint[0] is None:
            raise FileNotFoundError(f"the run {where!r} (requires.{role}) has no checkpoint that loads yet; train it first")
        found[role] = run
    return found
