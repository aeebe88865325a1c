r"""Sample-based distances between distributions.

Sliced 2-Wasserstein (Rabin et al. 2011; Bonneel et al. 2015): project both samples on random
unit directions theta and average the 1-D squared W2 distances, which in 1-D are the mean squared
differences of the sorted projections (the quantile functions):

    SW2(P, Q) = ( E_theta W2^2(theta#P, theta#Q) )^(1/2).

With finite samples it never reaches 0; compare it with the *noise floor*, the same distance
between two independent samples of the data of the same size.

Exact 2-Wasserstein between two empirical measures with uniform weights (POT's network simplex):

    W2(P_n, Q_m) = ( min_{pi in Pi(1/n, 1/m)} sum_ij pi_ij ||x_i - y_j||^2 )^(1/2),

O(n^3)-ish: a few thousand points per side.

Kernel and energy distances, both unbiased U-statistics (so either can dip just below 0 when the
two samples come from one distribution):

    MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y)      (Gretton et al. 2012, eq. 3),
    with a sum of RBF kernels k(x, y) = sum_b exp(-||x - y||^2 / (2 h_b^2)); by default the
    bandwidths are (1/4, 1/2, 1, 2, 4) times the median distance within the reference sample y,
    so a fixed reference gives comparable figures run to run;
    E(P, Q) = 2 E||x - y|| - E||x - x'|| - E||y - y'||      (Szekely & Rizzo 2013), zero iff P = Q.

Every sample distance has a floor at finite n: `noise_floor` measures it as the mean distance
between two independent draws of the data, over seeds.

Feature-space distances for images (features from `difflab.features`):

    Frechet distance (Heusel et al. 2017): FD = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^(1/2) S_2 S_1^(1/2))^(1/2)),
    the squared W2 between the two Gaussians fitted to the features (FID with Inception features);
    precision / recall (Kynkaanniemi et al. 2019): the data manifold is the union of balls around
    each real feature with radius its distance to its k-th nearest real neighbour; precision is the
    share of generated samples inside it, recall the share of real samples inside the generated
    manifold built the same way. Density and coverage (Naeem et al. 2020) count, respectively, the
    real balls each generated sample falls in (/ k) and the real balls holding any generated sample.

Path energy of a flow (Tong et al. 2023, "Improving and generalizing flow-based generative models
with minibatch optimal transport", Sec. 5): PE = E int_0^1 ||dx/dt||^2 dt along the learned
trajectories. On a discretised trajectory x_0..x_K at times t_0..t_K it is sum_k ||x_{k+1} - x_k||^2 /
|t_{k+1} - t_k|, exactly the Riemann sum of ||v||^2 for Euler steps. By Cauchy-Schwarz PE >=
E ||x_K - x_0||^2 >= W2^2(source, target), with equality for straight, optimally paired paths; the
*normalised* path energy |PE - W2^2| / W2^2 measures how far a flow is from the OT flow.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_finite, choose
from ._random import randn

__all__ = ["sliced_wasserstein", "wasserstein2", "mmd", "energy_distance", "noise_floor", "frechet_distance", "gaussian_stats",
           "precision_recall", "path_energy", "normalized_path_energy", "class_report", "digits_classifier",
           "fit_cnn_classifier"]


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
    """Sliced 2-Wasserstein distance between the samples x (n, ...) and y (m, ...); the random directions
    come from `generator` (by default a fixed seed, so the figure is a function of x and y alone)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)  # never the global random state
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


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = x.flatten(1), y.flatten(1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"samples have different dimensions: {x.shape[1]} and {y.shape[1]}")
    check_finite(x, "x")
    check_finite(y, "y")
    return x.detach().cpu().double(), y.detach().cpu().double()


def wasserstein2(x: Tensor, y: Tensor, *, max_points: int = 10_000) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of x (n, ...) and y (m, ...) (module doc)."""
    import ot

    x, y = _pair(x, y)
    if max(len(x), len(y)) > max_points:
        raise ValueError(f"exact W2 on {len(x)} x {len(y)} points would take very long; subsample to <= {max_points} "
                         "points per side or use sliced_wasserstein")
    cost = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(2)  # exact 0 on equal points
    w2sq = ot.emd2(torch.full((len(x),), 1.0 / len(x), dtype=torch.float64),
                   torch.full((len(y),), 1.0 / len(y), dtype=torch.float64), cost, numItermax=10_000_000)
    return float(w2sq) ** 0.5


def _offdiag_mean(m: Tensor) -> float:
    n = m.shape[0]
    return float((m.sum() - m.diagonal().sum()) / (n * (n - 1)))


def _distances(x: Tensor, y: Tensor) -> Tensor:
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def mmd(x: Tensor, y: Tensor, *, bandwidths=None) -> float:
    """Unbiased squared MMD with a multi-bandwidth RBF kernel (module doc); `bandwidths` absolute, or None."""
    x, y = _pair(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("MMD needs at least 2 points per sample")
    dyy = _distances(y, y)
    if bandwidths is None:
        med = float(dyy[torch.triu_indices(len(y), len(y), 1).unbind()].median())
        bandwidths = [med * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    hs = torch.as_tensor(bandwidths, dtype=torch.float64)
    if hs.ndim != 1 or not bool((hs > 0).all()):
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths}")

    def k(d):
        return torch.exp(-(d[..., None] ** 2) / (2 * hs**2)).sum(-1)

    return _offdiag_mean(k(_distances(x, x))) + _offdiag_mean(k(dyy)) - 2 * float(k(_distances(x, y)).mean())


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Unbiased energy distance 2 E||x - y|| - E||x - x'|| - E||y - y'|| (module doc)."""
    x, y = _pair(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the energy distance needs at least 2 points per sample")
    return 2 * float(_distances(x, y).mean()) - _offdiag_mean(_distances(x, x)) - _offdiag_mean(_distances(y, y))


def noise_floor(distance, draw, n: int, *, seeds: int = 5, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `seeds` of distance(draw(n, g1), draw(n, g2)) for independent generators: what a
    perfect model would score against a reference of n points. `draw(n, generator)` samples the data."""
    vals = []
    for s in range(seeds):
        g1 = torch.Generator().manual_seed(seed + 2 * s)
        g2 = torch.Generator().manual_seed(seed + 2 * s + 1)
        vals.append(float(distance(draw(n, g1), draw(n, g2))))
    v = torch.tensor(vals, dtype=torch.float64)
    return float(v.mean()), (float(v.std()) if len(vals) > 1 else 0.0)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, covariance) of features (N, D) in float64, the sufficient statistics of the Frechet distance."""
    f = torch.as_tensor(features).detach().cpu().double().flatten(1)
    check_finite(f, "features")
    if len(f) < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(c: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((c + c.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(x, y) -> float:
    """Frechet distance between features x and y (N, D), or between (mean, covariance) pairs (module doc)."""
    (m1, c1), (m2, c2) = (v if isinstance(v, tuple) else gaussian_stats(v) for v in (x, y))
    if m1.shape != m2.shape:
        raise ValueError(f"features have different dimensions: {m1.shape[0]} and {m2.shape[0]}")
    r = _psd_sqrt(c1)
    cross = torch.linalg.eigvalsh(r @ c2 @ r).clamp_min(0).sqrt().sum()  # tr (S1^1/2 S2 S1^1/2)^1/2
    return float(((m1 - m2) ** 2).sum() + c1.trace() + c2.trace() - 2 * cross)


def _kth_radius(f: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of each row of f to its k-th nearest other row."""
    out = []
    for block in f.split(chunk):
        d = _distances(block, f)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0 is the point itself
    return torch.cat(out)


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3, chunk: int = 2048) -> dict:
    """Precision, recall, density and coverage of generated features `fake` against `real` (module doc)."""
    real, fake = _pair(real, fake)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} real and generated samples, got {len(real)} and {len(fake)}")
    r_real, r_fake = _kth_radius(real, k, chunk), _kth_radius(fake, k, chunk)
    inside_real = torch.zeros(len(fake), dtype=torch.bool)  # fake j in some real ball
    count_real = torch.zeros(len(fake), dtype=torch.float64)  # how many real balls hold fake j
    covered = torch.zeros(len(real), dtype=torch.bool)  # real ball i holds some fake
    recalled = torch.zeros(len(real), dtype=torch.bool)  # real i in some fake ball
    for start in range(0, len(real), chunk):
        d = _distances(real[start:start + chunk], fake)  # (r, f)
        in_real_ball = d <= r_real[start:start + chunk, None]
        inside_real |= in_real_ball.any(0)
        count_real += in_real_ball.double().sum(0)
        covered[start:start + chunk] = in_real_ball.any(1)
        recalled[start:start + chunk] = (d <= r_fake[None]).any(1)
    return {"precision": float(inside_real.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(count_real.mean() / k), "coverage": float(covered.double().mean()), "k": k}


def path_energy(states, times) -> float:
    """Mean kinetic energy sum_k ||x_{k+1} - x_k||^2 / |t_{k+1} - t_k| of trajectories given as a list
    (or a stacked tensor) of K + 1 states (n, ...) at K + 1 distinct times (module doc)."""
    xs = [torch.as_tensor(s).detach().cpu().double().flatten(1) for s in states]
    ts = torch.as_tensor(times, dtype=torch.float64).flatten()
    if len(xs) != len(ts) or len(xs) < 2:
        raise ValueError(f"need as many states as times (at least 2); got {len(xs)} states and {len(ts)} times")
    dt = (ts[1:] - ts[:-1]).abs()
    if not bool((dt > 0).all()):
        raise ValueError("the times of a trajectory must be distinct")
    e = sum(((b - a) ** 2).sum(1) / float(h) for a, b, h in zip(xs[:-1], xs[1:], dt))
    return float(e.mean())


def normalized_path_energy(energy: float, w2: float) -> float:
    """|PE - W2^2| / W2^2 for a path energy PE and the source-to-target W2 (module doc)."""
    if not w2 > 0:
        raise ValueError(f"the source-to-target W2 must be > 0, got {w2}")
    return abs(energy - w2**2) / w2**2


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
                       progress: bool = False, arch: str = "small_cnn"):
    """Train a CNN classifier (`arch`: "small_cnn" for `nets.SmallCNN`, "residual_cnn" for `nets.ResidualCNN`) on an
    ImageData train split; returns (network in eval mode, test accuracy or None).

    A fixed seed fixes the initialisation and the data order, so the judge is reproducible.
    """
    from .nets import ResidualCNN, SmallCNN

    archs = {"small_cnn": SmallCNN, "residual_cnn": ResidualCNN}
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the initialisation draws from a seeded global RNG, then it is restored
        torch.manual_seed(seed)
        net = archs[choose(arch, archs, "classifier architecture")](train.shape[0], train.num_classes)
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
