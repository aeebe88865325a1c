"""Text to image on Fashion-MNIST, offline: a text-conditional model trained on captions made from each image's
class, shade and size, prompted in the wording it was trained on and in held-out paraphrases.

    .venv/bin/python benchmarks/text2image.py --out runs/text2image               # 20 min of training, ~10 min of sampling
    .venv/bin/python benchmarks/text2image.py --out runs/text2image --skip-train  # measure the run already there

- Model: the `fashion_mnist` preset's network (`--model unet`, the patch-2 U-Net; or `dit`, with --width, --depth,
  --heads, --patch) with `model.text_conditional = true` (cross-attention to the caption's token states at the
  attention levels, the pooled sentence embedding added to the time embedding), `data.captions = "seen"`, read by
  `--encoder` (mpnet, the preset's, or minilm), caption dropout 0.1 to the empty caption; trained `--minutes` with
  the fixed-time recipe (lr 2e-3 cosine, bf16).
  `--pooled-only` (`model.text_tokens = false`): no cross-attention, the sentence embedding alone.
  `--captions augmented`: the seen wording widened by WordNet's names and more templates (`difflab.data.thesaurus`),
  still without a word of the held-out or user prompts.
  `--class-conditional`: the ceiling — the same network, recipe and budget given the class label itself
  (`model.class_conditional = true`, label dropout 0.1), measured on the same prompts by the class each asks for.
- Prompts (`difflab.evaluate.prompt_set`): one per (class, shade, size), 90 in the training vocabulary ("seen") and
  90 in words and templates never trained on ("held_out", e.g. "footwear for jogging, deep-coloured"), and 100
  written as a user would ("user", `data.user_prompts`, e.g. "a cosy wool pullover"; shade and size where stated);
  `--per-prompt` samples each with `--sampler` at 20 steps, at each classifier-free scale in `--scales`.
- Figures (`difflab.evaluate.run_text_metrics`): the shipped judge's class accuracy, the accuracy of shade and size
  measured from the samples' pixels against the training cut points (chance 1/3), FD / precision / recall against
  1,000 test images.
- Picture: figures/text2image.png (text2image_pooled.png with --pooled-only, _minilm with --encoder minilm, ...), rows of prompts (seen and held out) by samples, at `--picture-scale`.
- What the frozen encoder itself tells apart (the yardstick for a model that reads it): benchmarks/text_encoders.py.
Writes text2image_benchmark.json / .md into the run's folder in --out. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import difflab as dl
from difflab.evaluate import prompt_set, run_text_metrics

FIGURES = Path(__file__).parent / "figures"
RECIPE = ["train.steps=1000000", "train.lr_decay=cosine", "train.checkpoint_every=500", "train.device=cpu", "train.amp_cpu=true",
          "diffusion.p_uncond=0.1"]
TEXT = ["model.text_conditional=true"]
CLASS = ["model.class_conditional=true"]
PICTURE = ["a dark ankle boot", "footwear for jogging, deep-coloured", "a photo of a wide white handbag", "tote in a broad cut, pale",
           "a slim grey dress", "sundress that is charcoal", "a large light coat", "parka, bright"]


def fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/text2image"))
    ap.add_argument("--model", choices=("unet", "dit"), default="unet")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of --minutes (to compare runs "
                                                         "across machines at equal steps)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--scales", default="0,1,3")
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--sampler", default="dpmpp_2m_sde@karras")
    ap.add_argument("--picture-scale", type=float, default=3.0)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--pooled-only", action="store_true", help="model.text_tokens = false (module doc)")
    ap.add_argument("--captions", choices=("seen", "augmented"), default="seen", help="the training wording (module doc)")
    ap.add_argument("--class-conditional", action="store_true", help="the ceiling: given the class, not words (module doc)")
    ap.add_argument("--encoder", default="mpnet", help="data.text_encoder: the sentence encoder the model reads (the "
                                                       "fashion_mnist_text preset's; benchmarks/text_encoders.py compares them)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(exist_ok=True)
    if a.class_conditional and (a.pooled_only or a.captions != "seen" or a.encoder != "mpnet"):
        ap.error("--pooled-only, --captions and --encoder say how a text model reads its prompt; --class-conditional reads none")
    tag = "_class" if a.class_conditional else "".join(
        ("_pooled" if a.pooled_only else "", "_augmented" if a.captions == "augmented" else "", "" if a.encoder == "mpnet" else f"_{a.encoder}"))
    run = a.out / (a.model + tag)
    budget = [f"train.steps={a.steps}", "train.max_minutes=0"] if a.steps else [f"train.max_minutes={a.minutes}"]
    over = [*RECIPE, *budget, f"train.lr={a.lr}"]
    over += CLASS if a.class_conditional else [*TEXT, f"data.captions={a.captions}", f"data.text_encoder={a.encoder}"] + (["model.text_tokens=false"] if a.pooled_only else [])
    if a.model == "dit":
        over += ["model.kind=dit", f"model.patch_size={a.patch}", f"model.width={a.width}", f"model.depth={a.depth}", f"model.heads={a.heads}"]
    if not a.skip_train:
        dl.runs.train(dl.config.load_config("fashion_mnist", over), run, resume=False)
    net, _, state = dl.runs.load_network(run)
    res = {"model": a.model, "overrides": over, "steps": state["step"], "parameters": dl.nets.count_parameters(net), "rows": {}}
    scales = [float(w) for w in a.scales.split(",")]
    for split in ("seen", "held_out", "user"):
        rows = run_text_metrics(run, prompt_set(split), scales, per_prompt=a.per_prompt, sampler=a.sampler, steps=20)
        res["rows"][split] = rows
        for r in rows:
            print(split, {k: r[k] for k in ("scale", "class_accuracy", "shade_accuracy", "size_accuracy", "fd")}, flush=True)
    if not a.class_conditional:
        den, path, _ = dl.runs.load_guided(run, scale=a.picture_scale)
        cond = {k: v.repeat_interleave(8, 0) for k, v in dl.runs.prompt_condition(run, PICTURE).items()}
        spec = dl.sampling.parse_sampler_spec(a.sampler)
        x = dl.sampling.sample_batched(den, path, 8 * len(PICTURE), (1, 28, 28), seed=0, cond=cond, steps=20, **spec.kwargs())
        dl.viz.save_image_grid(x.clamp(-1, 1), FIGURES / f"text2image{tag}.png", nrow=8, scale=3)
        res["picture_prompts"] = PICTURE
    (run / "text2image_benchmark.json").write_text(json.dumps(res, indent=1))
    lines = [f"{a.model}: {res['parameters']:,} parameters, {res['steps']:,} training steps", "",
             "| wording | w | class accuracy | shade accuracy | size accuracy | FD | precision | recall |", "|---|---|---|---|---|---|---|---|"]
    for split, rows in res["rows"].items():
        for r in rows:
            lines.append(f"| {split} | {r['scale']:g} | {r['class_accuracy']:.3f} | {fmt(r['shade_accuracy'])} | {fmt(r['size_accuracy'])} | "
                         f"{r['fd']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    (run / "text2image_benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
