"""kind = "autoregressive": a causal transformer over the same categorical data as a discrete run, trained against
`objectives.AutoregressiveObjective`: the exact-likelihood reference for bits per symbol (one network call per
position to sample). It reads discrete.p_uncond for label dropout.

`dl.load` gives (causal network, None, config).
"""

from __future__ import annotations

import math

import torch

from ..build import build_token_network
from .discrete import Tokens, symbols


class Autoregressive(Tokens):
    name = "autoregressive"
    about = "a causal transformer over symbols: the exact-likelihood reference"
    networks = ("transformer",)
    sample_options = frozenset({"label"})
    eval_options = frozenset({"nll", "split"})
    exact_likelihood = True

    def network(self, cfg, facts: dict):
        K = symbols(facts)  # and a beginning-of-sequence token K
        return build_token_network(cfg.model, tuple(facts["shape"]), K + 1, K, facts.get("num_classes"), causal=True)

    def objective(self, cfg, data, requires=None):
        from ...objectives import AutoregressiveObjective

        return AutoregressiveObjective(bos=data.num_symbols, conditions=("label",) if cfg.model.class_conditional else (),
                                       p_uncond=cfg.discrete.p_uncond)

    def tokens(self, run, n: int, *, sampler=None, steps=None, labels=None, guidance=None, seed: int = 0,
               batch_size: int = 500, device="cpu", progress: bool = False):
        """n samples, one position at a time, example i from its own generator: (tokens, {"nfe", "sampler", "steps"})."""
        from ... import discrete

        if sampler is not None or steps is not None or guidance is not None:
            raise ValueError("an autoregressive run samples one position at a time: --sampler, --steps and --guidance do "
                             "not apply")
        model, _, _ = self.load(run, device=device)
        shape, bos = tuple(run.facts["shape"]), symbols(run.facts)

        def draw(m, gens, **cb):
            return discrete.autoregressive.sample(model, (m, *shape), bos=bos, generator=gens, device=device, **cb), {}

        tokens, _ = discrete.in_batches(draw, n, seed=seed, batch_size=batch_size,
                                        cond={"label": labels} if labels is not None else None, device=device,
                                        progress=progress)
        positions = math.prod(shape)  # one network call per position
        return tokens, {"nfe": positions, "sampler": "autoregressive", "steps": positions}

    def nats(self, run, model, path, x, generator, repeats, **cond) -> torch.Tensor:
        from ... import discrete

        return discrete.autoregressive.nll(model, x, bos=symbols(run.facts), **cond)

    def describe(self, run) -> list[tuple[str, str]]:
        return [("model", "autoregressive: exact likelihood, one network call per position")]


KIND = Autoregressive()
