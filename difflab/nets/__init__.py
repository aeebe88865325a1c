"""Networks: every denoising net is `net(x_t, t, label=None) -> tensor of x_t's shape` (conditioning as keywords
named like the batch fields: `label`; `context`, `context_mask` and `pooled` for networks built with a context
width or a pooled width); no diffusion math inside."""

from .embeddings import ClassEmbedding, FourierEmbedding, SinusoidalEmbedding, time_embedding
from .classifier import ResidualCNN, SmallCNN
from .mlp import MLP
from .attention import CrossAttention
from .categorical import CategoricalDiT, CategoricalUNet
from .dit import DiT
from .autoencoder import VAE, IdentityAutoencoder
from .transformer import TokenTransformer, TransformerBlock
from .unet import NoisyClassifier, UNet

__all__ = ["MLP", "UNet", "DiT", "VAE", "IdentityAutoencoder", "TokenTransformer", "TransformerBlock", "CrossAttention", "CategoricalUNet", "CategoricalDiT", "NoisyClassifier", "SmallCNN", "ResidualCNN", "SinusoidalEmbedding", "FourierEmbedding", "ClassEmbedding", "time_embedding"]


def count_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters())
