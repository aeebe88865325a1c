"""Discrete (categorical) diffusion: paths over K symbols with closed forms, their losses, samplers and
exact oracles (see each module's doc). Time runs in [0, 1] as in the continuous part; a denoiser is any
callable `(x_t, t, **cond) -> p(x0 | x_t)` of shape (*x_t.shape, K)."""

from . import autoregressive
from .denoisers import as_denoiser
from .guidance import classifier_free
from .losses import bits_per_symbol, d3pm_loss, kl_categorical, masked_loss, prior_term, vb_loss
from .oracles import Factorised, Joint
from .paths import (GAUSSIAN_SCHEDULES, SCHEDULES, Absorbing, CategoricalPath, DiscretizedGaussian, Masked, Multinomial,
                    Uniform, categorical, mutual_information)
from .samplers import SAMPLERS, ancestral, in_batches, masked, sample, sample_batched

__all__ = ["CategoricalPath", "Uniform", "Absorbing", "Masked", "Multinomial", "DiscretizedGaussian", "SCHEDULES",
           "GAUSSIAN_SCHEDULES", "mutual_information", "categorical", "vb_loss", "d3pm_loss", "masked_loss", "prior_term", "bits_per_symbol", "kl_categorical",
           "Factorised", "Joint", "ancestral", "masked", "sample", "sample_batched", "in_batches", "SAMPLERS", "classifier_free", "as_denoiser",
           "autoregressive"]
