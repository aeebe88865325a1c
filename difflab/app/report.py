"""A run as one web page: `report.html` in the run folder, self-contained (pictures inline, no script, nothing fetched),
readable on a phone's width, written by `difflab report RUN`, at the end of `difflab train` and by the demo.

What it shows, each part only when the run has it: what the run is (the lines of `difflab info`), the runs it
requires (linked to their own reports: a cascade's stages, a latent run's autoencoder, a student's teacher), the
training curves (loss and learning rate from log.csv, as inline SVG), a grid of samples and the reverse process as an
animation (drawn now with the run's own sampler, or the pictures the run folder already holds), the tables that
`eval`, `bench` and the demo wrote (their markdown, with their pictures), checkpoints and timings, and the whole
configuration.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import time
from pathlib import Path

from .._checks import is_finite_number
from .folders import write_atomically

__all__ = ["write_report", "render"]

NAME = "report.html"
FRAMES = 24  # frames of the reverse-process animation

CSS = """
:root { color-scheme: light dark; --fg: #1d1f21; --bg: #fff; --muted: #666; --line: #ddd; --accent: #3465a4; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --bg: #16181a; --muted: #9a9a9a; --line: #333; --accent: #8ab4f8; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0.2rem 0 0.6rem; word-break: break-word; }
h2 { font-size: 1.15rem; margin: 1.8rem 0 0.6rem; padding-bottom: 0.2rem; border-bottom: 1px solid var(--line); }
a { color: var(--accent); }
code, pre { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
pre { overflow-x: auto; padding: 0.6rem; border: 1px solid var(--line); border-radius: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.4rem 0; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-word; }
img, svg { max-width: 100%; height: auto; }
.panels { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.panels svg { flex: 1 1 18rem; max-width: 28rem; }
img.pixels { image-rendering: pixelated; width: 100%; max-width: 36rem; }
figure { margin: 0.6rem 0; }
figcaption { color: var(--muted); font-size: 0.9em; }
.muted { color: var(--muted); }
@media (max-width: 30rem) { dl.facts { grid-template-columns: 1fr; } dl.facts dd { margin-bottom: 0.4rem; } }
"""


def write_report(run, *, samples: bool = True, n: int = 64, seed: int = 0, device: str = "cpu") -> Path:
    """Write `report.html` into the run's folder (atomically) and return its path; `samples=False` draws nothing new
    (the report then shows only the pictures the folder holds)."""
    from .requests import _seed

    _seed(seed)  # checked before anything is drawn: a bad seed is refused, not a report without samples
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
        raise ValueError(f"--n {n}: the report's grid holds 1 to 1024 samples")
    text = render(run, samples=samples, n=n, seed=seed, device=device)
    return write_atomically(run.folder / NAME, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def render(run, *, samples: bool = True, n: int = 64, seed: int = 0, device: str = "cpu") -> str:
    """The report of `run` (an `app.run.Run`) as one HTML document."""
    parts = [_facts(run), _stages(run), _training(run), _pictures(run, samples, n, seed, device), _tables(run),
             _checkpoints(run), _configuration(run)]
    title = html.escape(f"{run.folder.name}: {run.config.kind} run")
    made = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n"
            f"<p class=\"muted\">difflab report of <code>{html.escape(str(run.folder))}</code>, made {made}. "
            f"Rebuild it with <code>difflab report {html.escape(str(run.folder))}</code>.</p>\n"
            + "\n".join(p for p in parts if p) + "\n</main>\n</body>\n</html>\n")


# -- the parts -----------------------------------------------------------------------------------------------

def _section(title: str, body: str, anchor: str) -> str:
    return f"<section id=\"{anchor}\">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _facts(run) -> str:
    rows = []
    for line in run.describe():
        label, _, value = line.partition(" ")
        if line.startswith("report") and line.endswith("}"):
            continue  # the demo's report.json: shown below as its table
        rows.append(f"<dt>{html.escape(label)}</dt><dd>{html.escape(value.strip())}</dd>")
    return _section("What this run is", f"<dl class=\"facts\">{''.join(rows)}</dl>", "run")


def _stages(run) -> str:
    if not run.config.requires:
        return ""
    from .folders import find_run

    items = []
    for role, where in run.config.requires.items():
        other = find_run(where, run.folder)
        try:
            kind = f" ({run.open_other(other).config.kind} run)" if other is not None else " (not found now)"
        except (ValueError, OSError):
            kind = " (not readable now)"
        page = (other or Path(where)) / NAME
        link = (f"<a href=\"{html.escape(os.path.relpath(page, run.folder))}\">{html.escape(str(where))}</a>"
                if page.exists() else f"<code>{html.escape(str(where))}</code> <span class=\"muted\">(no report yet: "
                f"difflab report {html.escape(str(where))})</span>")
        items.append(f"<li>{html.escape(role)}: {link}{html.escape(kind)}</li>")
    return _section("Runs it requires", f"<ul>{''.join(items)}</ul>", "requires")


def _read_log(run) -> list[dict]:
    try:
        with open(run.folder / "log.csv", newline="") as f:
            return [r for r in csv.DictReader(f) if r.get("step")]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def _finite(row: dict, name: str):
    try:
        value = float(row[name])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _training(run) -> str:
    rows = [r for r in _read_log(run) if _finite(r, "step") is not None and _finite(r, "loss") is not None]
    if not rows:
        return ""
    if len(rows) > 2000:  # a long run's log: every k-th row (and the last) keeps the page small
        rows = rows[:: len(rows) // 1000] + rows[-1:]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def column(name):  # a log edited by hand (a word, 1e400) loses the column, not the report
        values = [_finite(r, name) for r in rows]
        return None if None in values else values

    steps, loss, lr = column("step"), column("loss"), column("lr")
    if steps is None or loss is None:
        return ""
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: it scales and can be searched
    plt.rcParams["svg.hashsalt"] = "difflab-report"  # element ids from a fixed salt: the same log, the same page
    svgs = []
    for name, values in [("loss", loss)] + ([("learning rate", lr)] if lr else []):
        fig, ax = plt.subplots(figsize=(4.2, 2.8))
        ax.plot(steps, values, lw=1.0)
        if name == "loss" and min(values) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step"), ax.set_title(name, fontsize=10), ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
        svgs.append(buf.getvalue()[buf.getvalue().index("<svg"):])
    state = run.state if run.kind.trains else {}
    speed = column("it_per_s")
    facts = [f"{int(steps[-1]):,} steps logged, last loss {loss[-1]:.4g}"]
    seconds = state.get("budget_seconds") if isinstance(state, dict) else None
    if is_finite_number(seconds) and seconds > 0:
        facts.append(f"{seconds / 60:.1f} minutes of training" if seconds >= 60 else f"{seconds:.1f} s of training")
    if speed:
        facts.append(f"{sum(speed) / len(speed):.2f} steps/s on average")
    return _section("Training", f"<figure><div class=\"panels\">{''.join(svgs)}</div><figcaption>{html.escape('; '.join(facts))}.</figcaption></figure>", "training")


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _pictures(run, draw: bool, n: int, seed: int, device: str) -> str:
    figures, notes = [], []
    existing = {name: run.folder / name for name in ("samples.png", "reverse.gif") if (run.folder / name).is_file()}
    if "samples.png" in existing:
        figures.append(_figure(existing["samples.png"].read_bytes(), "image/png", "samples (samples.png in the run folder)"))
    elif draw:
        try:
            figures.append(_draw_samples(run, n, seed, device))
        except ValueError as e:
            notes.append(f"No samples: {e}")
    if "reverse.gif" in existing:
        figures.append(_figure(existing["reverse.gif"].read_bytes(), "image/gif", "the reverse process, noise to data"))
    elif draw:
        try:
            gif = _reverse_process(run, min(n, 16), seed, device)
            if gif is not None:
                figures.append(gif)
        except ValueError as e:
            notes.append(f"No animation: {e}")
    body = "\n".join(figures) + "".join(f"<p class=\"muted\">{html.escape(note)}</p>" for note in notes)
    return _section("Samples", body, "samples") if body else ""


def _figure(data: bytes, mime: str, caption: str, pixels: bool = True) -> str:
    cls = " class=\"pixels\"" if pixels else ""
    return (f"<figure><img{cls} src=\"{_data_uri(data, mime)}\" alt=\"{html.escape(caption)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _draw_samples(run, n: int, seed: int, device: str) -> str:
    """A grid of the run's samples, drawn by its kind as `difflab sample RUN --n n --seed seed` would."""
    from .. import viz
    from .requests import SampleRequest

    request = SampleRequest(n=n, seed=seed, device=device, progress=False)
    form = run.kind.form(run)
    run.kind.check_sample(run, request)
    s = run.kind.sample(run, request)
    caption = f"{n} samples, seed {seed}" + (f": {s.summary}" if s.summary else "")
    if form == "images":
        shown = s.picture if s.picture is not None else s.shows
        return _figure(_png(viz.image_grid(shown.float().cpu(), s.nrow, scale=2)), "image/png", caption)
    if form == "points":
        return _figure(_scatter_png(s.shows), "image/png", caption, pixels=False)
    if form == "text":
        return f"<figure><pre>{html.escape(chr(10).join(s.shows[:16]))}</pre><figcaption>{html.escape(caption)}</figcaption></figure>"
    return f"<p class=\"muted\">{html.escape(caption)} (arrays of shape {tuple(s.shows.shape)}: nothing to draw)</p>"


def _scatter_png(points) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = points.float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(p[:, 0], p[:, 1], s=4, alpha=0.6)
    ax.set_aspect("equal"), ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _reverse_process(run, n: int, seed: int, device: str) -> str | None:
    """An animated GIF of `n` samples from noise to data with the run's own sampler (image runs holding a denoiser);
    None for runs it does not apply to."""
    import torch

    from .. import viz
    from ..sampling import sample
    from .requests import sampling_settings

    if not run.kind.diffusion_model or run.kind.form(run) != "images" or run.config.model.text_conditional:
        return None
    den, path, cfg = run.load(device=device)
    frames = []
    cond = {}
    if cfg.model.class_conditional:
        cond["label"] = torch.arange(n, device=device) % int(run.facts.get("num_classes") or 1)
    sample(den, path, (n, *run.facts["shape"]), generator=torch.Generator().manual_seed(seed), device=device,
           callback=lambda d: frames.append(d["x"].detach().float().cpu()), cond=cond or None, **sampling_settings(cfg, folder=run.folder))
    if not frames:
        return None
    keep = sorted({round(i * (len(frames) - 1) / (FRAMES - 1)) for i in range(FRAMES)}) if len(frames) > FRAMES else range(len(frames))
    frames = [frames[i] for i in keep]
    if hasattr(den, "decode"):  # latents: show what they decode to
        with torch.no_grad():
            frames = [den.decode(f.to(device)).float().cpu() for f in frames]
    nrow = 4 if n >= 16 else None
    images = [viz.image_grid(f.clamp(-1, 1), nrow, scale=3) for f in frames]
    images += [images[-1]] * 12  # hold the last frame
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=90, loop=0)
    return _figure(buf.getvalue(), "image/gif", f"the reverse process of {n} samples ({len(frames)} of its steps), noise to data")


def _tables(run) -> str:
    """The markdown reports `eval`, `bench` and the demo wrote into the folder, with the pictures beside them."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    blocks = []
    for page in sorted(run.folder.glob("*.md")):
        try:
            text = page.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        body = md.render(text).replace("<table>", "<div class=\"scroll\"><table>").replace("</table>", "</table></div>")
        picture = page.with_suffix(".png")
        if picture.is_file():
            body += _figure(picture.read_bytes(), "image/png", picture.name, pixels=False)
        blocks.append(f"<article><p class=\"muted\">{html.escape(page.name)}</p>{body}</article>")
    return _section("Evaluations", "\n".join(blocks), "evaluations") if blocks else ""


def _checkpoints(run) -> str:
    folder = run.folder / "checkpoints"
    if not folder.is_dir():
        return ""
    rows = []
    for ckpt in sorted(p for p in folder.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in ckpt.iterdir() if f.is_file())
        state = {}
        try:
            state = json.loads((ckpt / "state.json").read_text())
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            pass
        state = state if isinstance(state, dict) else {}
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(ckpt.stat().st_mtime))
        seconds = state.get("budget_seconds")
        minutes = f"{seconds / 60:.1f}" if is_finite_number(seconds) else ""
        cells = (ckpt.name, state.get("step", ""), minutes, f"{size / 1e6:.2f}", when)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "<tr><th>checkpoint</th><th>step</th><th>training minutes</th><th>MB</th><th>written</th></tr>"
    return _section("Checkpoints", f"<div class=\"scroll\"><table>{head}{''.join(rows)}</table></div>", "checkpoints")


def _configuration(run) -> str:
    try:
        text = json.dumps(json.loads((run.folder / "config.json").read_text()), indent=1)
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    return _section("Configuration", f"<details><summary>config.json</summary><pre>{html.escape(text)}</pre></details>",
                    "configuration")
