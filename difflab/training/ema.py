"""Exponential moving average of the weights (Polyak averaging), with a decay warm-up.

ema <- d ema + (1 - d) theta with d = min(decay, (1 + step) / (10 + step)) (the warm-up of
TensorFlow's ExponentialMovingAverage `num_updates`), so early averages are not dominated by the
random initialisation. Buffers are copied. Sampling uses the EMA weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True):
        return self.model.load_state_dict(state, strict=strict)
