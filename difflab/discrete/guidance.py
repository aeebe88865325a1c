r"""Classifier-free guidance of a categorical denoiser (Ho & Salimans 2022, in log-probabilities as
Nisonoff et al. 2024 and MDLM's conditional samplers do):

    log p_w(x0 | x_t, c) = (1 + w) log p(x0 | x_t, c) - w log p(x0 | x_t) + const,   normalised per position,

the x0-prediction of p(x0 | c)^(1 + w) / p(x0)^w, with w = 0 the conditional model. The unconditional
prediction is the network's with the null label -1 (trained with label dropout).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..denoisers import counted

__all__ = ["classifier_free"]


def classifier_free(denoiser, scale: float):
    """The guided categorical denoiser (module doc); `scale` is w >= 0."""
    if not scale >= 0:
        raise ValueError(f"the guidance scale must be >= 0, got {scale}")
    inner = counted(denoiser)

    def guided(x_t: Tensor, t, label=None, **cond) -> Tensor:
        if label is None:
            raise ValueError("classifier-free guidance needs a label to guide towards")
        cond_p = inner(x_t, t, label=label, **cond)
        if scale == 0:
            return cond_p
        null = torch.full_like(torch.as_tensor(label, device=x_t.device).long().reshape(-1).expand(x_t.shape[0]), -1)
        uncond_p = inner(x_t, t, label=null, **cond)
        tiny = torch.finfo(cond_p.dtype).tiny
        logits = (1 + scale) * cond_p.clamp_min(tiny).log() - scale * uncond_p.clamp_min(tiny).log()
        return torch.softmax(logits, dim=-1)
    return guided
