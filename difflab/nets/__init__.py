"""Networks: every denoising net is `net(x_t, t, label=None) -> tensor of x_t's shape` (conditioning as keywords
named like the batch fields: `label`, ...); no diffusion math inside."""

from .embeddings import ClassEmbedding, FourierEmbedding, SinusoidalEmbedding, time_embedding
from .classifier import SmallCNN
from .mlp import MLP
from .transformer import CategoricalUNet, TokenTransformer, TransformerBlock
from .unet import NoisyClassifier, UNet

__all__ = ["MLP", "UNet", "TokenTransformer", "TransformerBlock", "CategoricalUNet", "NoisyClassifier", "SmallCNN", "SinusoidalEmbedding", "FourierEmbedding", "ClassEmbedding", "time_embedding"]


def count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())
