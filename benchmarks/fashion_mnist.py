"""Fashion-MNIST: how good is a run of `configs/fashion_mnist.toml`? Samples judged by a small CNN.

    ./dev difflab train configs/fashion_mnist.toml          # 3,000 steps: about 15 minutes on 2 CPU cores
    ./dev bench fashion_mnist --run runs/fashion_mnist        # judge it (about 3 minutes)

A SmallCNN classifier is trained on the Fashion-MNIST training split (fixed seed, 2 epochs) and its
test accuracy printed. It labels `--n` samples of the run: the mean top-class probability (how
recognisable the garments are; real test images give the reference value) and the share of each
class (how diverse). Writes fashion_samples.png and report_fashion.json into the run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import difflab as dl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/fashion_mnist"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    den, path, cfg = dl.load(a.run)
    state = dl.training.checkpoint.read_state(dl.training.latest_checkpoint(a.run))
    t0 = time.time()
    clf, acc = dl.metrics.fit_cnn_classifier(dl.data.fashion_mnist("train"), dl.data.fashion_mnist("test"), progress=True)
    print(f"classifier: test accuracy {100 * acc:.2f}% ({time.time() - t0:.0f} s)")

    def probs(x):
        with torch.no_grad():
            return torch.cat([torch.softmax(clf(b), 1) for b in x.split(500)])

    sampler, steps = a.sampler or cfg.sample.sampler, a.steps or cfg.sample.steps
    t1 = time.time()
    x, info = dl.sampling.sample_batched(den, path, a.n, (1, 28, 28), seed=a.seed, sampler=sampler, steps=steps,
                                         grid=cfg.sample.grid or None, return_info=True)
    secs = time.time() - t1
    rep = dl.metrics.class_report(probs(x))
    real = dl.metrics.class_report(probs(dl.data.fashion_mnist("test").images))
    dl.viz.save_image_grid(x[:100], a.run / "fashion_samples.png", nrow=10, scale=3)
    names = dl.data.images.FASHION_MNIST_CLASSES
    out = {"run": str(a.run), "train_steps": state["step"], "sampler": sampler, "steps": steps, "nfe": info.nfe,
           "sample_seconds": round(secs, 1), "classifier_test_accuracy": acc, "mean_top_prob": rep["mean_top_prob"],
           "real_test_mean_top_prob": real["mean_top_prob"],
           "class_fractions": dict(zip(names, rep["class_fractions"]))}
    (a.run / "report_fashion.json").write_text(json.dumps(out, indent=1))
    print(f"\n{a.n} samples of {a.run} ({state['step']} training steps) with {sampler}, {info.nfe} NFE, {secs:.0f} s")
    print(f"mean top-class probability {rep['mean_top_prob']:.3f} (real test images: {real['mean_top_prob']:.3f})")
    print("class shares: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in out["class_fractions"].items()))
    print(f"wrote {a.run / 'fashion_samples.png'} and {a.run / 'report_fashion.json'}")


if __name__ == "__main__":
    main()
