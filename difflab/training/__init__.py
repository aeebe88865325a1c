"""Training: the loop (`fit`: a model, an objective, a data set), EMA, checkpoints without pickle, torchrun.

The loop knows nothing of configurations or run kinds: `difflab.app.trainer.train(cfg, run_dir)` (what
`difflab train` runs) builds the parts a configuration describes and calls `fit`. `training.train` is kept as a
name for it, resolved when first used (this package imports nothing of the application).
"""

from .checkpoint import CheckpointDamaged, latest_checkpoint, latest_valid_checkpoint, load_tensors, save_checkpoint, verify
from .ema import EMA
from .loop import TrainingDiverged, TrainResult, fit, lr_at, lr_decay_factor, train_step


def __getattr__(name: str):
    if name == "train":  # the application's `train`, under the name it always had here
        from importlib import import_module

        return import_module("difflab.app.trainer").train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["train", "fit", "train_step", "TrainResult", "TrainingDiverged", "EMA", "save_checkpoint", "latest_checkpoint",
           "latest_valid_checkpoint", "verify", "CheckpointDamaged", "load_tensors", "lr_at", "lr_decay_factor"]
