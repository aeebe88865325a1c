"""Training: the loop (`fit`: a model, an objective, a data set), EMA, checkpoints without pickle, torchrun.

`train(cfg, run_dir)` is the command line's `difflab train`: it builds the parts a configuration
describes (`difflab.runs.train`, the application's edge) and fits them.
"""

from .checkpoint import CheckpointDamaged, latest_checkpoint, latest_valid_checkpoint, load_tensors, save_checkpoint, verify
from .ema import EMA
from .loop import TrainingDiverged, TrainResult, fit, lr_at, lr_decay_factor, train_step


def train(cfg, run_dir, **kwargs) -> TrainResult:
    """Train the run `cfg` describes into `run_dir` (see `difflab.runs.train`, where its parts are built)."""
    from ..runs import train as train_run

    return train_run(cfg, run_dir, **kwargs)


__all__ = ["train", "fit", "train_step", "TrainResult", "TrainingDiverged", "EMA", "save_checkpoint", "latest_checkpoint",
           "latest_valid_checkpoint", "verify", "CheckpointDamaged", "load_tensors", "lr_at", "lr_decay_factor"]
