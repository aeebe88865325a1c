r"""Sample-based distances between distributions.

Sliced 2-Wasserstein (Rabin et al. 2011; Bonneel et al. 2015): project both samples on random
unit directions theta and average the 1-D squared W2 distances, which in 1-D are the mean squared
differences of the sorted projections (the quantile functions):

    SW2(P, Q) = ( E_theta W2^2(theta#P, theta#Q) )^(1/2).

With finite samples it never reaches 0; compare it with the *noise floor*, the same distance
between two independent samples of the data of the same size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite
from ._random import randn

__all__ = ["sliced_wasserstein", "class_report", "digits_classifier", "fit_cnn_classifier"]


def _quantiles(v: Tensor, m: int) -> Tensor:
    """The 1-D empirical quantile functions of the rows of v (P, n) at m midpoints (sorted when n = m)."""
    v = v.sort(dim=1).values
    n = v.shape[1]
    if n == m:
        return v
    q = (torch.arange(m, dtype=v.dtype, device=v.device) + 0.5) / m * n - 0.5
    lo = q.floor().clamp(0, n - 1).long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (q - lo).clamp(0, 1)
    return v[:, lo] * (1 - frac) + v[:, hi] * frac


def sliced_wasserstein(x: Tensor, y: Tensor, *, projections: int = 256, generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance between the samples x (n, ...) and y (m, ...)."""
    x, y = x.flatten(1), y.flatten(1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples have different dimensions: {x.shape[1]} and {y.shape[1]}")
    check_finite(x, "x")
    check_finite(y, "y")
    x, y = x.to(torch.float64), y.to(torch.float64)
    theta = randn((projections, x.shape[1]), generator=generator, device=x.device, dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    m = max(x.shape[0], y.shape[0])
    # (P, n) with each projection contiguous: sorting along the last dimension is several times faster
    px, py = _quantiles(theta @ x.T, m), _quantiles(theta @ y.T, m)
    return float(((px - py) ** 2).mean().sqrt())


def class_report(probs: Tensor, num_classes: int | None = None) -> dict:
    """Confidence and diversity of generated samples judged by a classifier's class probabilities (N, K):
    the mean top-class probability and the fraction of samples given each class."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    k = num_classes or probs.shape[1]
    top = probs.max(1)
    hist = torch.bincount(top.indices, minlength=k).double() / probs.shape[0]
    return {"mean_top_prob": float(top.values.mean()), "class_fractions": hist.tolist(),
            "min_class_fraction": float(hist.min()), "max_class_fraction": float(hist.max())}


def digits_classifier(seed: int = 0):
    """A logistic-regression classifier of scikit-learn's 8x8 digits, fitted on difflab's digits train
    split (in [-1, 1]); returns (predict_proba for images (N, 1, 8, 8), its accuracy on the test split)."""
    from sklearn.linear_model import LogisticRegression

    from .data import digits

    train, test = digits("train"), digits("test")
    clf = LogisticRegression(max_iter=5000, C=1.0, random_state=seed)  # scikit-learn's default regularisation
    clf.fit(train.images.flatten(1).numpy(), train.labels.numpy())
    acc = float(clf.score(test.images.flatten(1).numpy(), test.labels.numpy()))

    def predict_proba(x: Tensor) -> Tensor:
        return torch.from_numpy(clf.predict_proba(x.detach().cpu().flatten(1).double().numpy()))

    return predict_proba, acc


def fit_cnn_classifier(train, test=None, *, epochs: int = 2, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
                       progress: bool = False):
    """Train `nets.SmallCNN` on an ImageData train split; returns (network in eval mode, test accuracy or None).

    A fixed seed fixes the initialisation and the data order, so the judge is reproducible.
    """
    from .nets import SmallCNN

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SmallCNN(train.shape[0], train.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    n = len(train)
    steps = epochs * (n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="classifier", unit="step")
    order = torch.randperm(n, generator=g)
    for s in it:
        e, b = divmod(s, n // batch_size)
        if b == 0 and s > 0:
            order = torch.randperm(n, generator=g)
        idx = order[b * batch_size:(b + 1) * batch_size]
        loss = torch.nn.functional.cross_entropy(net(train.images[idx]), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval().requires_grad_(False)
    acc = None
    if test is not None:
        with torch.no_grad():
            pred = torch.cat([net(x).argmax(1) for x in test.images.split(1000)])
        acc = float((pred == test.labels).double().mean())
    return net, acc
