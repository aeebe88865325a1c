r"""Exact models: Gaussian mixtures and Gaussians under any affine path.

If x0 ~ sum_k pi_k N(mu_k, C_k) and x_t = alpha x0 + sigma z, then everything is closed form
(e.g. Karras et al. 2022, appendix B.3, for the isotropic case):

    p_t(x)          = sum_k pi_k N(x; alpha mu_k, S_k),          S_k = alpha^2 C_k + sigma^2 I,
    w_k(x)          = pi_k N(x; alpha mu_k, S_k) / p_t(x)        (posterior component weights),
    E[x0 | x_t = x] = sum_k w_k(x) (mu_k + alpha C_k S_k^{-1} (x - alpha mu_k)),
    grad log p_t(x) = -sum_k w_k(x) S_k^{-1} (x - alpha mu_k).

Each C_k is stored by its eigen-decomposition U_k diag(lambda_k) U_k^T, so S_k = U_k diag(alpha^2
lambda_k + sigma^2) U_k^T and nothing is inverted at sampling time (isotropic and diagonal
components skip U_k altogether). For a single Gaussian the probability-flow ODE is linear in each
eigen-direction, and its flow map from time t to s is exact:

    x_s = alpha_s mu + U diag(sqrt((alpha_s^2 lambda + sigma_s^2) / (alpha_t^2 lambda + sigma_t^2))) U^T (x_t - alpha_t mu).

These are the library's teaching models and the test oracle for every sampler.

A *labelled* mixture (`labels=`: the class of each component) is also the exact answer for
conditioning: the data of class c are the mixture of c's components, so with k ranging over them

    E[x0 | x_t, c]   = sum_{k in c} w_k(x) m_k(x) / sum_{k in c} w_k(x)     (m_k: component k's posterior mean),
    log p_t(c | x_t) = log sum_{k in c} w_k(x),

and `denoiser(path)` takes `label=` (one class per example; -1 for none, the unconditional mixture),
`classifier(path)` is the exact noise-conditional classifier (differentiable in x), and
`class_mixture(c)` the data of one class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import append_dims, batch_times, check_finite, check_times
from ._random import randn

__all__ = ["GaussianMixture", "Gaussian", "GaussianSuperResolution", "ring_mixture", "labelled_ring"]


class GaussianMixture:
    """sum_k weights_k N(means_k, C_k): give `stds` (scalar, per component, or per component and
    dimension) for diagonal components or `covariances` (K, d, d) for full ones; `labels` (K,) gives
    each component's class (see the module doc)."""

    def __init__(self, means, stds=None, weights=None, *, covariances=None, labels=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim == 1:
            means = means[:, None]  # K one-dimensional components
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d); got {tuple(means.shape)}")
        check_finite(means, "means")
        K, d = means.shape
        if (stds is None) == (covariances is None):
            raise ValueError("give exactly one of stds= (diagonal components) or covariances= (full components)")
        self.rotations = None
        if stds is not None:
            stds = torch.as_tensor(stds, dtype=torch.float64)
            try:
                stds = torch.broadcast_to(stds if stds.ndim != 1 else stds[:, None], (K, d)).clone()
            except RuntimeError:
                raise ValueError(
                    f"stds must be a scalar, a (K,) vector or a (K, d) array for K={K}, d={d}; got {tuple(stds.shape)}"
                ) from None
            if bool((stds < 0).any()):
                raise ValueError("stds must be >= 0")
            self.variances = stds**2
        else:
            cov = torch.as_tensor(covariances, dtype=torch.float64)
            if cov.shape != (K, d, d):
                raise ValueError(f"covariances must have shape (K, d, d) = ({K}, {d}, {d}); got {tuple(cov.shape)}")
            if not torch.allclose(cov, cov.transpose(1, 2)):
                raise ValueError("covariances must be symmetric")
            lam, U = torch.linalg.eigh(cov)
            if bool((lam < -1e-10 * lam.abs().max()).any()):
                raise ValueError("covariances must be positive semi-definite")
            self.variances, self.rotations = lam.clamp_min(0), U
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if weights.shape != (K,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum")
        self.means = means
        self.weights = weights / weights.sum()
        self.labels = None
        if labels is not None:
            labels = torch.as_tensor(labels).long().flatten()
            if labels.shape != (K,) or bool((labels < 0).any()):
                raise ValueError(f"labels must give each of the {K} components a class >= 0")
            self.labels = labels
        # Isotropic components (C_k = c_k^2 I) take a fast path: distances by matrix products, no (B, K, d) tensors.
        iso = self.rotations is None and bool((self.variances == self.variances[:, :1]).all())
        self._iso_var = self.variances[:, 0].clone() if iso else None

    @classmethod
    def from_classes(cls, x: Tensor, labels: Tensor, ridge: float = 0.01) -> "GaussianMixture":
        """One full-covariance Gaussian per class fitted to examples `x` (N, ...) with `labels` (N,): the class's
        mean and covariance (+ `ridge` I, so that it is positive definite), weighted by the class's share and
        labelled by it. An exact model with the data's first two moments per class (the 8x8 digits: an image
        prior whose posteriors are known in closed form)."""
        x = torch.as_tensor(x, dtype=torch.float64).flatten(1)
        labels = torch.as_tensor(labels).long()
        if labels.shape != (x.shape[0],):
            raise ValueError(f"one label per example: {x.shape[0]} examples, labels of shape {tuple(labels.shape)}")
        if not (math.isfinite(ridge) and ridge > 0):
            raise ValueError(f"ridge must be > 0 and finite, got {ridge}")
        classes = sorted(int(c) for c in labels.unique())
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        parts = [x[labels == c] for c in classes]
        if min(len(p) for p in parts) < 2:
            raise ValueError("every class needs at least two examples for a covariance")
        covariances = torch.stack([torch.atleast_2d(torch.cov(p.T)) + ridge * eye for p in parts])
        return cls(torch.stack([p.mean(0) for p in parts]), covariances=covariances, weights=[len(p) for p in parts],
                   labels=classes)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise ValueError("this mixture has no class labels (give labels= per component)")
        return int(self.labels.max()) + 1

    def class_weights(self) -> Tensor:
        """p(c): the weight of each class."""
        return torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, self.labels, self.weights)

    def class_mixture(self, c: int) -> "GaussianMixture":
        """The data of class c: the mixture of its components, reweighted."""
        keep = (self.labels == int(c)).nonzero().squeeze(1) if self.labels is not None else None
        if keep is None or keep.numel() == 0:
            raise ValueError(f"no component has class {c}")
        if self.rotations is None:
            return GaussianMixture(self.means[keep], self.variances[keep].sqrt(), self.weights[keep])
        return GaussianMixture(self.means[keep], weights=self.weights[keep], covariances=self.component_covariances()[keep])

    def _class_mask(self, label, x: Tensor) -> Tensor:
        """0 where component k may explain example b (its class is label[b], or label[b] = -1), -inf elsewhere."""
        if self.labels is None:
            raise ValueError("label= needs a labelled mixture (labels= per component)")
        label = torch.as_tensor(label, device=x.device).long().reshape(-1).expand(x.shape[0])
        if bool(((label < -1) | (label >= self.num_classes)).any()):
            raise ValueError(f"labels must lie in 0..{self.num_classes - 1} (or -1 for none)")
        ok = (self.labels.to(x.device)[None, :] == label[:, None]) | (label[:, None] < 0)
        return torch.zeros(ok.shape, dtype=x.dtype, device=x.device).masked_fill(~ok, -math.inf)

    # -- moments -----------------------------------------------------------------------------
    def component_covariances(self) -> Tensor:
        if self.rotations is None:
            return torch.diag_embed(self.variances)
        U = self.rotations
        return U @ torch.diag_embed(self.variances) @ U.transpose(1, 2)

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        m = self.mean()
        dev = self.means - m
        within = (self.weights[:, None, None] * self.component_covariances()).sum(0)
        return within + (self.weights[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None, *, path=None, t=0.0, device=None,
               dtype=torch.float32, return_components: bool = False):
        """n draws of x0 (or of x_t when a path and time are given)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = randn((n, self.dim), generator=generator, dtype=torch.float64)
        scaled = z * self.variances[comp].sqrt()
        if self.rotations is not None:
            scaled = torch.einsum("nij,nj->ni", self.rotations[comp], scaled)
        x = self.means[comp] + scaled
        if path is not None:
            x = path.perturb(x, torch.as_tensor(t, dtype=torch.float64), randn(x.shape, generator=generator, dtype=torch.float64))
        x = x.to(device=device, dtype=dtype)
        return (x, comp.to(x.device)) if return_components else x

    # -- the exact quantities under a path ------------------------------------------------------
    def _terms(self, x: Tensor, t, path):
        """Per component: eigen-coordinates y = U^T (x - alpha mu), variances S, log pi_k N(x; alpha mu_k, S_k)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}); got {tuple(x.shape)}")
        dtype = x.dtype
        if path is None:
            t = torch.zeros(x.shape[0], dtype=dtype, device=x.device)
            a = torch.ones(x.shape[0], 1, dtype=dtype, device=x.device)
            s = torch.zeros_like(a)
        else:
            t = batch_times(t, x)
            a = append_dims(path.alpha(t), 2).to(dtype)
            s = append_dims(path.sigma(t), 2).to(dtype)
        mu = self.means.to(x)
        lam = self.variances.to(x)
        diff = x[:, None, :] - a[:, :, None] * mu[None]  # (B, K, d)
        y = diff if self.rotations is None else torch.einsum("kji,bkj->bki", self.rotations.to(x), diff)
        S = (a[:, :, None] ** 2 * lam[None] + s[:, :, None] ** 2).clamp_min(torch.finfo(dtype).tiny)
        log_n = -0.5 * ((y**2 / S) + torch.log(2 * math.pi * S)).sum(-1)
        return y, S, a, log_n + torch.log(self.weights.to(x))[None]

    def _iso_terms(self, x: Tensor, t, path):
        """Isotropic components: (alpha, sigma^2, S (B, K), log pi_k N(x; alpha mu_k, S_k I)) via matrix products."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}); got {tuple(x.shape)}")
        if path is None:
            a = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
            s2 = torch.zeros_like(a)
        else:
            t = batch_times(t, x)
            a = append_dims(path.alpha(t), 2).to(x.dtype)
            s2 = append_dims(path.sigma(t), 2).to(x.dtype) ** 2
        mu = self.means.to(x)
        S = (a**2 * self._iso_var.to(x)[None] + s2).clamp_min(torch.finfo(x.dtype).tiny)  # (B, K)
        dist2 = (x**2).sum(1, keepdim=True) - 2 * a * (x @ mu.T) + a**2 * (mu**2).sum(1)[None]
        log_n = -0.5 * (dist2.clamp_min(0) / S + self.dim * torch.log(2 * math.pi * S))
        return a, s2, S, log_n + torch.log(self.weights.to(x))[None]

    def _rotate_back(self, v: Tensor) -> Tensor:
        return v if self.rotations is None else torch.einsum("kij,bkj->bki", self.rotations.to(v), v)

    def _log_joint(self, x: Tensor, t, path) -> Tensor:
        return (self._iso_terms if self._iso_var is not None else self._terms)(x, t, path)[-1]

    def posterior_weights(self, x: Tensor, t=0.0, path=None, label=None) -> Tensor:
        """w_k(x): the probability that x_t = x came from component k (of class `label`), shape (B, K)."""
        logp = self._log_joint(x, t, path)
        return torch.softmax(logp if label is None else logp + self._class_mask(label, x), dim=1)

    def log_prob(self, x: Tensor, t=0.0, path=None, label=None) -> Tensor:
        """log p_t(x) (or log p_t(x | c) for `label` = c) in nats per example (the data density when no path is given)."""
        logp = self._log_joint(x, t, path)
        if label is None:
            return torch.logsumexp(logp, dim=1)
        mask = self._class_mask(label, x)
        prior = torch.logsumexp(torch.log(self.weights.to(x))[None] + mask, dim=1)  # log p(c) (0 for label -1)
        return torch.logsumexp(logp + mask, dim=1) - prior

    def class_log_posterior(self, x: Tensor, t=0.0, path=None) -> Tensor:
        """log p_t(c | x_t = x) for every class c, shape (B, C)."""
        logp = self._log_joint(x, t, path)
        per_class = torch.full((x.shape[0], self.num_classes), -math.inf, dtype=x.dtype, device=x.device)
        for c in range(self.num_classes):
            k = self.labels.to(x.device) == c
            if bool(k.any()):
                per_class[:, c] = torch.logsumexp(logp[:, k], dim=1)
        return per_class - torch.logsumexp(logp, dim=1, keepdim=True)

    def score(self, x: Tensor, t=0.0, path=None, label=None) -> Tensor:
        """grad_x log p_t(x) (of class `label` when given)."""
        if self._iso_var is not None:  # -sum_k w_k (x - alpha mu_k) / S_k
            a, _, S, logp = self._iso_terms(x, t, path)
            wS = self._weights(logp, label, x) / S
            return -x * wS.sum(1, keepdim=True) + a * (wS @ self.means.to(x))
        y, S, _, logp = self._terms(x, t, path)
        w = self._weights(logp, label, x)
        return -(w[:, :, None] * self._rotate_back(y / S)).sum(1)

    def _weights(self, logp: Tensor, label, x: Tensor) -> Tensor:
        return torch.softmax(logp if label is None else logp + self._class_mask(label, x), dim=1)

    def posterior_mean(self, x: Tensor, t, path, label=None) -> Tensor:
        """E[x0 | x_t = x] (and class `label`): the exact denoiser."""
        if self._iso_var is not None:  # sum_k w_k (mu_k sigma^2 / S_k + x alpha c_k^2 / S_k)
            a, s2, S, logp = self._iso_terms(x, t, path)
            wS = self._weights(logp, label, x) / S
            return s2 * (wS @ self.means.to(x)) + x * a * (wS * self._iso_var.to(x)[None]).sum(1, keepdim=True)
        y, S, a, logp = self._terms(x, t, path)
        w = self._weights(logp, label, x)
        lam = self.variances.to(x)
        shift = self._rotate_back(a[:, :, None] * lam[None] / S * y)
        return (w[:, :, None] * (self.means.to(x)[None] + shift)).sum(1)

    def denoiser(self, path):
        """The exact denoiser D(x_t, t, label=None) = E[x0 | x_t (, c)] of this mixture under `path`."""
        return _OracleDenoiser(self, path)

    def classifier(self, path):
        """The exact noise-conditional classifier: (x_t, t, label) -> log p_t(label | x_t) per example."""
        return _OracleClassifier(self, path)

    def classify(self, x: Tensor) -> Tensor:
        """The most probable component of each data point (for mode-weight checks)."""
        return self.posterior_weights(x).argmax(1)

    def posterior(self, A, y, noise_std: float = 0.0, shape=None) -> "GaussianMixture":
        r"""p(x0 | y) for one observation y = A x0 + n, n ~ N(0, noise_std^2 I): again a Gaussian mixture, with, for
        each component N(mu_k, C_k) of weight pi_k (G_k = A C_k A^T + s^2 I, the covariance of y given k),

            C_k' = C_k - C_k A^T G_k^{-1} A C_k,   mu_k' = mu_k + C_k A^T G_k^{-1} (y - A mu_k),
            pi_k' proportional to pi_k N(y; A mu_k, G_k).

        Since x_t depends on y only through x0, its `denoiser(path)` is the exact E[x0 | x_t, y]. `A`: a
        `difflab.inverse` operator or an (m, d) tensor; `shape`: the example shape A acts on (default (d,); the
        mixture's vectors are the flattened examples); `y`: (m,) or A's output shape."""
        shape = (self.dim,) if shape is None else tuple(shape)
        if math.prod(shape) != self.dim:
            raise ValueError(f"shape {shape} has {math.prod(shape)} entries; the mixture's examples have {self.dim}")
        M = A.matrix(shape) if hasattr(A, "matrix") else torch.as_tensor(A, dtype=torch.float64)  # (m, d)
        if M.ndim != 2 or M.shape[1] != self.dim:
            raise ValueError(f"A must be an operator or an (m, {self.dim}) matrix, got shape {tuple(M.shape)}")
        M = M.double()
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if y.shape[0] != M.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries; the operator observes {M.shape[0]}")
        s2 = float(noise_std) ** 2
        C = self.component_covariances()  # (K, d, d)
        CA = C @ M.T  # C_k A^T, (K, d, m)
        G = M @ CA + s2 * torch.eye(M.shape[0], dtype=torch.float64)  # (K, m, m)
        L = torch.linalg.cholesky(G)
        resid = y[None, :] - self.means @ M.T  # (K, m)
        gain = torch.cholesky_solve(CA.transpose(1, 2), L).transpose(1, 2)  # C_k A^T G_k^{-1}, (K, d, m)
        means = self.means + (gain @ resid[:, :, None]).squeeze(-1)
        cov = C - gain @ CA.transpose(1, 2)
        lam, U = torch.linalg.eigh(0.5 * (cov + cov.transpose(1, 2)))  # PSD up to rounding (0 where y pins x0 down)
        cov = U @ torch.diag_embed(lam.clamp_min(0)) @ U.transpose(1, 2)
        white = torch.linalg.solve_triangular(L, resid[:, :, None], upper=False).squeeze(-1)
        log_lik = -0.5 * (white.square().sum(1) + 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
                          + M.shape[0] * math.log(2 * math.pi))
        weights = torch.softmax(torch.log(self.weights) + log_lik, 0)
        return GaussianMixture(means, weights=weights, covariances=cov, labels=self.labels)


class _OracleDenoiser:
    def __init__(self, mixture: GaussianMixture, path):
        self.mixture, self.path = mixture, path

    def __call__(self, x_t: Tensor, t: Tensor, label: Tensor | None = None, **cond) -> Tensor:
        return self.mixture.posterior_mean(x_t, t, self.path, label)

    def __repr__(self) -> str:
        return f"exact denoiser of a {self.mixture.num_components}-component mixture under {self.path!r}"


class _OracleClassifier:
    def __init__(self, mixture: GaussianMixture, path):
        self.mixture, self.path = mixture, path

    def __call__(self, x_t: Tensor, t: Tensor, label: Tensor) -> Tensor:
        label = torch.as_tensor(label, device=x_t.device).long().reshape(-1).expand(x_t.shape[0])
        return self.mixture.class_log_posterior(x_t, t, self.path).gather(1, label[:, None]).squeeze(1)

    def __repr__(self) -> str:
        return f"exact classifier p_t(c | x_t) of a labelled {self.mixture.num_components}-component mixture under {self.path!r}"


class Gaussian(GaussianMixture):
    """N(mean, C): a one-component mixture with a closed-form probability-flow map."""

    def __init__(self, mean, std=None, *, covariance=None):
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)
        if covariance is not None:
            covariance = torch.as_tensor(covariance, dtype=torch.float64)[None]
            super().__init__(mean, covariances=covariance)
        else:
            super().__init__(mean, 1.0 if std is None else torch.as_tensor(std, dtype=torch.float64).reshape(1, -1))

    def flow(self, x: Tensor, t, s, path) -> Tensor:
        """The exact probability-flow ODE map x_t -> x_s (either direction)."""
        t = check_times(batch_times(t, x))
        s = check_times(batch_times(s, x))
        at, st = (append_dims(f(t), 2).to(x) for f in (path.alpha, path.sigma))
        as_, ss = (append_dims(f(s), 2).to(x) for f in (path.alpha, path.sigma))
        mu, lam = self.means[0].to(x), self.variances[0].to(x)
        ratio = torch.sqrt((as_**2 * lam + ss**2) / (at**2 * lam + st**2))
        dev = x - at * mu
        if self.rotations is None:
            return as_ * mu + ratio * dev
        U = self.rotations[0].to(x)
        return as_ * mu + ((dev @ U) * ratio) @ U.T


def ring_mixture(num_modes: int = 8, radius: float = 4.0, std: float = 0.5) -> GaussianMixture:
    """`num_modes` equal isotropic Gaussians evenly spaced on a circle in 2-D (the 'eight Gaussians')."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    return GaussianMixture(means, std)


def labelled_ring(num_classes: int = 3, modes_per_class: int = 2, radius: float = 3.0, std: float = 0.4) -> GaussianMixture:
    """`num_classes * modes_per_class` isotropic Gaussians on a circle, the classes interleaved around it."""
    K = num_classes * modes_per_class
    mix = ring_mixture(K, radius, std)
    return GaussianMixture(mix.means, std, labels=torch.arange(K) % num_classes)


class GaussianSuperResolution:
    r"""The exact oracles of a cascade on Gaussian images: x0 ~ N(mu, Sigma) over images (C, H, W) flattened,
    and its low-resolution image y = P x0, the f x f block average (`data.downsample`).

    - `base`: y ~ N(P mu, P Sigma P^T), the first stage's data (a `Gaussian` over flattened (C, H/f, W/f)).
    - `denoiser(path)`: E[x0 | x_t, low_res] for the second stage, where low_res = o = a y + s eps is y noised to
      the level `low_res_level` on `path` (a = alpha(level), s = sigma(level); o = y at level 0). x0 given o
      is Gaussian:

          m_o = mu + a Sigma P^T V^{-1} (o - a P mu),  C_o = Sigma - a^2 Sigma P^T V^{-1} P Sigma,
          V = a^2 P Sigma P^T + s^2 I,

      and E[x0 | x_t, o] = m_o + C_o alpha (alpha^2 C_o + sigma^2 I)^{-1} (x_t - alpha m_o) (C_o = U diag(lam) U^T:
      the gain is alpha lam / (alpha^2 lam + sigma^2) along each eigenvector; at level 0 C_o P^T = 0, so every
      sample's block average is exactly y).
    - `conditional(y, level)`: (m_o, C_o) for a clean y, to test samples against.
    """

    def __init__(self, mean, covariance, shape, factor: int = 2):
        from .data.images import downsample

        self.shape, self.factor = tuple(shape), int(factor)
        d = math.prod(self.shape)
        self.mean = torch.as_tensor(mean, dtype=torch.float64).reshape(d)
        self.cov = torch.as_tensor(covariance, dtype=torch.float64).reshape(d, d)
        eye = torch.eye(d, dtype=torch.float64)
        self.P = downsample(eye.reshape(d, *self.shape), self.factor).reshape(d, -1).T  # (m, d)
        self.low_shape = tuple(downsample(torch.zeros(1, *self.shape), self.factor).shape[1:])
        self.base = Gaussian(self.P @ self.mean, covariance=self.P @ self.cov @ self.P.T)

    def _posterior(self, o: Tensor, a: float, s: float) -> tuple[Tensor, Tensor]:
        """(m_o per row of o (n, m), C_o) for observations o = a y + s eps."""
        P, S, mu = self.P, self.cov, self.mean
        V = a * a * P @ S @ P.T + s * s * torch.eye(P.shape[0], dtype=torch.float64)
        K = a * torch.linalg.solve(V, P @ S).T  # Sigma P^T V^{-1} a, (d, m)
        return mu + (o - a * (P @ mu)) @ K.T, S - a * K @ P @ S

    def conditional(self, y: Tensor, level: float = 0.0, path=None) -> tuple[Tensor, Tensor]:
        a, s = (1.0, 0.0) if not level else (float(path.alpha(level)), float(path.sigma(level)))
        return self._posterior(y.reshape(y.shape[0], -1).double(), a, s)

    def denoiser(self, path):
        def D(x_t: Tensor, t, low_res: Tensor, low_res_level=None, **cond) -> Tensor:
            n = x_t.shape[0]
            x = x_t.reshape(n, -1).double()
            t = batch_times(t, x_t).to(torch.float64)
            al, sg = append_dims(path.alpha(t), 2).double(), append_dims(path.sigma(t), 2).double()
            o = low_res.reshape(low_res.shape[0], -1).double().expand(n, -1)
            levels = torch.zeros(n, dtype=torch.float64) if low_res_level is None else \
                torch.as_tensor(low_res_level, dtype=torch.float64).reshape(-1).expand(n).cpu()
            out = torch.empty_like(x)
            for lv in levels.unique():  # one posterior covariance per augmentation level
                rows = (levels == lv).nonzero().reshape(-1).to(x.device)
                a, s = (1.0, 0.0) if not lv else (float(path.alpha(lv)), float(path.sigma(lv)))
                m, C = self._posterior(o[rows].cpu(), a, s)
                lam, U = torch.linalg.eigh(C)
                lam = lam.clamp_min(0)
                m, lam, U = m.to(x.device), lam.to(x.device), U.to(x.device)
                gain = al[rows] * lam / (al[rows] ** 2 * lam + sg[rows] ** 2)
                out[rows] = m + (((x[rows] - al[rows] * m) @ U) * gain) @ U.T
            return out.reshape(x_t.shape).to(x_t.dtype)
        return D

    def base_denoiser(self, path):
        """The first stage's exact denoiser over images (C, H/f, W/f)."""
        inner = self.base.denoiser(path)

        def D(y_t: Tensor, t, **cond) -> Tensor:
            return inner(y_t.reshape(y_t.shape[0], -1).double(), t).reshape(y_t.shape).to(y_t.dtype)
        return D
