"""A small CNN classifier for images (used to judge generated samples; later, guidance and features)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """conv(32) - conv(32) - pool - conv(64) - conv(64) - pool - global average - linear; GroupNorm + SiLU."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()

        def block(ci, co):
            return nn.Sequential(nn.Conv2d(ci, co, 3, padding=1), nn.GroupNorm(8, co), nn.SiLU())

        w = width
        self.features = nn.Sequential(block(in_channels, w), block(w, w), nn.MaxPool2d(2), block(w, 2 * w), block(2 * w, 2 * w),
                                      nn.MaxPool2d(2))
        self.head = nn.Linear(2 * w, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """The penultimate features (global-average-pooled), e.g. for Frechet distances."""
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))
