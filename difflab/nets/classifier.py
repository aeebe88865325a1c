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


class ResidualCNN(nn.Module):
    """A second, unrelated judge (for figures that must hold in two embeddings): a 5x5 stem, then per stage a
    pre-activation residual block (GroupNorm, GELU, two 3x3 convs) and 2x2 average pooling, widths 16-32-64 over
    three resolutions, global average pooling to 64 features, a linear head. Shares no layer shape, activation or
    pooling with `SmallCNN`."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(16, 32, 64)):
        super().__init__()

        class Residual(nn.Module):
            def __init__(self, c):
                super().__init__()
                self.body = nn.Sequential(nn.GroupNorm(4, c), nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(4, c),
                                          nn.GELU(), nn.Conv2d(c, c, 3, padding=1))

            def forward(self, x):
                return x + self.body(x)

        layers, c = [nn.Conv2d(in_channels, widths[0], 5, padding=2)], widths[0]
        for i, w in enumerate(widths):
            if w != c:
                layers.append(nn.Conv2d(c, w, 1))
            layers += [Residual(w)] + ([nn.AvgPool2d(2)] if i < len(widths) - 1 else [])
            c = w
        self.features = nn.Sequential(*layers, nn.GroupNorm(4, c), nn.GELU())
        self.head = nn.Linear(c, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """The penultimate features (global-average-pooled), e.g. for Frechet distances."""
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))
