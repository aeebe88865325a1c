"""Few-step students against their teacher: progressive distillation, consistency distillation, reflow (and
consistency training from data), each at 1, 2 and 4 steps, beside the teacher's best sampler at 1-20 NFE.

    .venv/bin/python benchmarks/distill.py --preset toy2d --out runs/distill_toy --n 5000          # ~10 min
    .venv/bin/python benchmarks/distill.py --teacher runs/fm20 --out runs/distill_fm --n 5000       # ~2 h

- The teacher: a trained run (`--teacher`), or one trained here from a preset (`--preset`, its own recipe).
- The students, by `difflab distill TEACHER --method M --steps 1` with its defaults (each trained for the teacher's
  budget: its train.steps, or train.max_minutes; progressive: that budget split over its rounds, 8 -> 4 -> 2 -> 1
  steps from a 20-step teacher; reflow: the rectified flow, then its one-step distillation, each for the budget;
  `--set` overrides for all): progressive rounds are sampled at their own steps (4, 2, 1), the consistency model and
  the rectified flow at 1, 2 and 4 steps, the one-step reflow at 1. Toy sets add consistency training from data
  (`--ct-preset`, kind = "consistency" without a teacher).
- Quality: the Frechet distance in the shipped feature network for images (`--n` samples against `--n` test images),
  sliced W2 for toy sets (against `--n` fresh points), each beside its floor; the teacher at 1, 2, 4, 10 and 20 NFE
  with each of `--teacher-samplers` (the best per budget reported). Minutes: each distillation's training time
  (the checkpoints' budget_seconds, across resumes), and the reflow pairs' time.
- Writes distill.json, distill.md and distill.png (a row per method and steps, the teacher's best at 20 NFE first).
Run it alone: the training budgets are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import difflab as dl
from difflab.app.run import Run
from difflab.app.trainer import distill, train

TEACHER_SAMPLERS = "ddim,dpmpp_2m,unipc@karras,dpmpp_2m_sde@karras,ode_heun"


def trained_minutes(folder: Path) -> float:
    run = Run.open(folder)
    return round(run.state.get("budget_seconds", 0.0) / 60, 2) if run.kind.trains else 0.0


def measure(folder: Path, metric: str, n: int, **how) -> dict:
    run = Run.open(folder)
    res = run.kind.sample_metrics(run, (metric,), n=n, seed=0, **how)
    key = "fd" if metric == "fid" else metric
    return {"value": res[key], "floor": res[f"{key}_floor"], "nfe": res["nfe"], "sampler": res["sampler"], "steps": res["steps"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path)
    p.add_argument("--preset")
    p.add_argument("--ct-preset", default="", help="a consistency-training preset trained beside (toy sets: toy2d_consistency)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--methods", default="progressive,consistency,reflow")
    p.add_argument("--teacher-samplers", default=TEACHER_SAMPLERS)
    p.add_argument("--set", action="append", default=[], dest="overrides")
    a = p.parse_args()
    torch.set_num_threads(2)
    a.out.mkdir(parents=True, exist_ok=True)
    record_file = a.out / "minutes.json"
    minutes = json.loads(record_file.read_text()) if record_file.exists() else {}
    teacher = a.teacher
    if teacher is None:
        teacher = a.out / "teacher"
        train(dl.config.load_config(a.preset), teacher)
    metric = "fid" if Run.open(teacher).config.data.name != "toy" else "sw"
    students = {}
    for method in a.methods.split(","):
        out = a.out / method
        t0 = time.time()
        distill(teacher, method, 1, out, overrides=a.overrides)
        minutes.setdefault(method + "_wall", round((time.time() - t0) / 60, 2))
        record_file.write_text(json.dumps(minutes, indent=1))
        students[method] = out
    if a.ct_preset:
        t0 = time.time()
        train(dl.config.load_config(a.ct_preset, a.overrides), a.out / "consistency_training")
        minutes.setdefault("consistency_training_wall", round((time.time() - t0) / 60, 2))
        record_file.write_text(json.dumps(minutes, indent=1))
    rows = []
    for nfe in (1, 2, 4, 10, 20):
        best = None
        for spec in a.teacher_samplers.split(","):
            how = dl.steps_for_nfe(dl.sampling.parse_sampler_spec(spec).sampler, nfe, **dl.sampling.parse_sampler_spec(spec).options)
            res = measure(teacher, metric, a.n, sampler=spec, **how)
            if best is None or res["value"] < best["value"]:
                best = res
        rows.append({"model": "teacher (best sampler)", "budget": nfe, **best, "minutes": trained_minutes(teacher)})
        print(json.dumps(rows[-1]), flush=True)
    plan = []
    if "progressive" in students:
        plan += [("progressive", students["progressive"].with_name(f"progressive-steps{k}") if k > 1 else students["progressive"], k)
                 for k in (4, 2, 1)]
    if "consistency" in students:
        plan += [("consistency distillation", students["consistency"], k) for k in (1, 2, 4)]
    if "reflow" in students:
        plan += [("2-rectified flow (Euler)", students["reflow"].with_name("reflow-rectified"), k) for k in (1, 2, 4)]
        plan += [("reflow, one-step distillation", students["reflow"], 1)]
    if a.ct_preset:
        plan += [("consistency training (no teacher)", a.out / "consistency_training", k) for k in (1, 2, 4)]
    pictures = {}
    for name, folder, steps in plan:
        res = measure(folder, metric, a.n, steps=steps)
        rows.append({"model": name, "budget": steps, **res, "folder": str(folder), "minutes": _minutes(name, folder, students)})
        print(json.dumps(rows[-1]), flush=True)
        pictures[f"{name}, {steps} step{'s' if steps > 1 else ''}"] = (folder, steps)
    result = {"teacher": str(teacher), "metric": metric, "n": a.n, "rows": rows, "minutes": minutes}
    (a.out / "distill.json").write_text(json.dumps(result, indent=1))
    _markdown(result, a.out / "distill.md")
    _picture(teacher, pictures, a.out / "distill.png")
    print((a.out / "distill.md").read_text())


def _minutes(name: str, folder: Path, students: dict) -> float:
    """Training minutes of a student: the rounds up to it (progressive), both stages (one-step reflow)."""
    if name == "progressive":
        rounds = sorted(folder.parent.glob("progressive-steps*"), key=lambda f: -int(f.name.split("steps")[1]))
        chain = [f for f in rounds if int(f.name.split("steps")[1]) >= _steps_of(folder)] + ([folder] if folder == students["progressive"]
                                                                                              else [])
        return round(sum(trained_minutes(f) for f in set(chain)), 2)
    if name.startswith("reflow"):
        return round(trained_minutes(folder) + trained_minutes(folder.with_name("reflow-rectified")), 2)
    return trained_minutes(folder)


def _steps_of(folder: Path) -> int:
    return Run.open(folder).config.progressive.steps


def _markdown(result: dict, out: Path) -> None:
    q = "FD" if result["metric"] == "fid" else "sliced W2"
    lines = [f"# Few-step students of `{result['teacher']}` ({q} of {result['n']} samples; floor {result['rows'][0]['floor']:.4f})", "",
             f"| model | NFE budget | NFE | {q} | sampler | training minutes |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['budget']} | {r['nfe']} | {r['value']:.4f} | {r['sampler']} | {r['minutes']} |")
    lines += ["", "Wall-clock minutes of each `difflab distill` (pairs included): "
              + ", ".join(f"{k} {v}" for k, v in result["minutes"].items())]
    out.write_text("\n".join(lines) + "\n")


def _picture(teacher: Path, pictures: dict, out: Path, k: int = 10) -> None:
    run = Run.open(teacher)
    shape = run.kind.image_shape(run)
    rows = {}
    for label, (folder, steps) in {"teacher, 20 NFE": (teacher, 20), **pictures}.items():
        student = Run.open(folder)
        den, path, cfg = student.load()
        how = dl.app.requests.sampling_settings(cfg, None, steps)
        rows[label] = dl.sampling.sample_batched(den, path, k, tuple(student.facts["shape"]), seed=1, **how)
    if len(shape) == 3:
        dl.viz.save_image_grid(torch.cat(list(rows.values())).clamp(-1, 1), out, nrow=k, scale=3)
        return
    panels: dict = {}  # a row per model, a column per number of steps
    for label, (folder, steps) in {"teacher, 20 NFE": (teacher, 20), **pictures}.items():
        model, _, count = label.rpartition(", ")
        student = Run.open(folder)
        den, path, cfg = student.load()
        panels.setdefault(model, {})[count] = dl.sampling.sample_batched(
            den, path, 2000, (2,), seed=1, **dl.app.requests.sampling_settings(cfg, None, steps))
    dl.viz.scatter_grid(panels, out, lim=4.0)


if __name__ == "__main__":
    main()
