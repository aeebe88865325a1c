"""kind = "autoencoder": a KL-regularised autoencoder (`nets.VAE`, model.kind = "vae") trained against
`objectives.AutoencoderObjective`: the first stage of latent diffusion. A diffusion run names it in
requires.autoencoder and trains on its scaled latents (`app.latents`). Its section is [autoencoder].

`dl.load` gives (autoencoder, None, config); `difflab eval` measures its reconstructions: PSNR of the reconstructions
of held-out images, the Frechet distance and precision / recall of reconstructed training images against the same
reference as samples (the floor any latent model over it can reach, beside the floor of real images), and the
latents' per-channel mean and standard deviation with the scale a latent run would use.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..._checks import choose
from ..schema import within
from .base import Kind


@dataclass
class AutoencoderConfig:
    """The KL-regularised autoencoder of an `autoencoder` run (the first stage of latent diffusion; its network
    is [model] with model.kind = "vae": channels, channel_mult (one level per halving of the side), num_res_blocks)."""

    latent_channels: int = 4
    kl_weight: float = 1e-4  # the KL's weight against the summed reconstruction error (objectives.AutoencoderObjective)
    reconstruction: str = "l2"  # l2 | l1

    def __post_init__(self):
        from ...objectives import RECONSTRUCTION_LOSSES

        within(self, "latent_channels", 1, 1024)
        choose(self.reconstruction, RECONSTRUCTION_LOSSES, "autoencoder.reconstruction")
        if not 0 <= self.kl_weight < math.inf:
            raise ValueError(f"autoencoder.kl_weight must be >= 0 and finite, got {self.kl_weight}")


class Autoencoder(Kind):
    name = "autoencoder"
    about = "a KL-regularised autoencoder: the first stage of latent diffusion"
    sections = {"autoencoder": AutoencoderConfig}
    networks = ("vae",)
    eval_options = frozenset({"metrics", "split"})

    def check(self, cfg) -> None:
        if cfg.data.categorical or cfg.data.captions or cfg.data.name == "toy":
            raise ValueError("an autoencoder run encodes images: use data.name = digits, fashion_mnist or folder, "
                             "without data.levels or data.captions")

    def network(self, cfg, facts: dict):
        from ...nets import VAE

        m, shape = cfg.model, tuple(facts["shape"])
        if len(shape) != 3:
            raise ValueError(f"an autoencoder encodes images (C, H, W); these data have shape {shape}")
        net = VAE(shape[0], cfg.autoencoder.latent_channels, m.channels, m.channel_mult, m.num_res_blocks, m.patch_size)
        try:
            net.latent_shape(shape)
        except ValueError:
            raise ValueError(f"images of {shape[1]}x{shape[2]} need sides divisible by model.patch_size x 2^(levels - 1) = "
                             f"{net.factor} (model.channel_mult has {len(m.channel_mult)} levels); use fewer levels or a "
                             "smaller patch") from None
        return net

    def objective(self, cfg, data, requires=None):
        from ...objectives import AutoencoderObjective

        a = cfg.autoencoder
        return AutoencoderObjective(reconstruction=a.reconstruction, kl_weight=a.kl_weight)

    def no_samples(self, run) -> str:
        return (f"{run} is an autoencoder run, not a diffusion model: it has no samples (train a latent diffusion run on it "
                f"with requires.autoencoder = \"{run}\"; measure its reconstructions with difflab eval {run})")

    def describe(self, run) -> list[tuple[str, str]]:
        a = run.config.autoencoder
        return [("autoencoder", f"{a.latent_channels} latent channels, {a.reconstruction} reconstruction, KL weight {a.kl_weight:g}")]

    def check_eval(self, run, request) -> None:
        from ..evaluate import check_split

        if request.metrics and tuple(request.metrics) != ("reconstruction",):
            raise ValueError(f"{run} is an autoencoder run: `difflab eval {run}` measures its reconstructions (PSNR, Frechet "
                             "distance, latent statistics); sample metrics belong to the latent diffusion run built on it")
        check_split(run.config.data, request.split or "test")

    def evaluate(self, run, request) -> list:
        from ..evaluate import write_report

        res = self.reconstruction(run, split=request.split or "test", n=request.n or 1000, seed=request.seed,
                                  batch_size=request.batch, device=request.device)
        write_report(run, "reconstruction", res, request.command)
        return [run.folder / "eval.md"]

    @torch.no_grad()
    def reconstruction(self, run, *, split: str = "test", n: int | None = 1000, seed: int = 0, batch_size: int = 500,
                       device="cpu") -> dict:
        """The reconstruction figures (module doc)."""
        from ...latent import decode_images, encode_images, measure_scale
        from ..evaluate import FEATURE_SETS, held_out, mean_se, scorer

        started = time.perf_counter()
        ae, _, cfg = self.load(run, device=device)
        x, _, _ = held_out(run, split, n, seed)

        def reconstruct(images):
            z = encode_images(ae, images, batch_size=batch_size, device=device)
            return z, decode_images(ae.decode, z, batch_size=batch_size, device=device)

        z, x_hat = reconstruct(x)
        mse = ((x_hat.clamp(-1, 1) - x) / 2).square().flatten(1).mean(1)  # on the [0, 1] scale
        psnr, psnr_se = mean_se(-10 * torch.log10(mse.clamp_min(1e-12)))
        out = {"psnr": psnr, "psnr_se": psnr_se, "mse": float(mse.mean()), "n": len(x), "split": split,
               "latent_shape": list(z.shape[1:]), "latent_mean": [float(v) for v in z.double().mean((0, 2, 3))],
               "latent_std": [float(v) for v in z.double().std((0, 2, 3))], "scale": measure_scale(z)}
        if cfg.data.name in FEATURE_SETS:  # the reconstructions' distance, where a feature net is shipped
            score, floors = scorer(cfg.data, ("fid", "prdc"), len(x), seed)
            res = score(reconstruct(score.floor_images)[1].clamp(-1, 1), None)
            out.update({k: res[k] for k in ("fd", "precision", "recall")},
                       **{k: floors[k] for k in ("fd_floor", "precision_floor", "recall_floor")})
        out["seconds"] = round(time.perf_counter() - started, 1)
        return out


KIND = Autoencoder()
