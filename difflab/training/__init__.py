"""Training: the loop (`train`), EMA, checkpoints without pickle, torchrun multi-process support."""

from .checkpoint import latest_checkpoint, load_tensors, save_checkpoint
from .ema import EMA
from .loop import TrainingDiverged, TrainResult, lr_at, lr_decay_factor, train, train_step

__all__ = ["train", "train_step", "TrainResult", "TrainingDiverged", "EMA", "save_checkpoint", "latest_checkpoint",
           "load_tensors", "lr_at", "lr_decay_factor"]
