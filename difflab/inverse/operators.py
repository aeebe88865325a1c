r"""Linear measurement operators: an observation y = A x0 + n, n ~ N(0, s^2 I), of examples of any shape.

An operator maps a batch x (N, *shape) to A(x) (N, *out) and back with its adjoint (the transpose)
A^T(v) (N, *shape). Pseudo-inverse guidance (`transforms.pgdm`) also needs, per example,

    u = (r^2 A A^T + s^2 I)^{-1} v,

with one r^2 per example (`gram_solve`). It is in closed form where A A^T is simple: a mask keeps some
entries (A A^T = I), block averaging over f x f blocks (A A^T = I / f^2), the identity, and a matrix (by
the eigendecomposition of M M^T, computed once), a blur of a small image by the eigendecomposition of one
channel's B B^T, of a large one by conjugate gradients. `matrix(shape)`
is the dense (m, d) matrix of A on examples of `shape` (what the exact posterior of a Gaussian mixture
needs: `oracles.GaussianMixture.posterior`). `as_operator` accepts an operator or a plain (m, d) tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import append_dims

__all__ = ["Operator", "Identity", "Mask", "Downsample", "Upsample", "Blur", "Matrix", "Composed", "as_operator",
           "conjugate_gradients"]


class Operator:
    """A linear map on examples (module doc). Subclasses give `__call__` and `adjoint`, and `gram_solve` when
    they have it in closed form."""

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def adjoint(self, v: Tensor, shape) -> Tensor:
        """A^T v for observations v (N, *out) of examples of `shape`: (N, *shape)."""
        raise NotImplementedError

    def gram(self, v: Tensor, shape) -> Tensor:
        """A A^T v."""
        return self(self.adjoint(v, shape))

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        """(r2 A A^T + s2 I)^{-1} v per example (r2: (N,)), by conjugate gradients."""
        return conjugate_gradients(lambda u: append_dims(r2, u.ndim) * self.gram(u, shape) + s2 * u, v)

    def matrix(self, shape) -> Tensor:
        """The dense (m, d) matrix of A on examples of `shape` (d = their number of entries), in float64."""
        d = math.prod(shape)
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        return self(basis).reshape(d, -1).T.contiguous()

    def out_shape(self, shape) -> tuple:
        """The shape of one observation of an example of `shape`."""
        return tuple(self(torch.zeros(1, *shape)).shape[1:])


def conjugate_gradients(apply, b: Tensor, *, tol: float | None = None, max_iter: int = 1000) -> Tensor:
    """The solution u of apply(u) = b for a symmetric positive definite `apply`, per example (batch first): the
    conjugate-gradient iteration, stopped when every example's residual is below tol times its |b| (default:
    1e-10 in float64, 1e-5 in lower precisions)."""
    tol = tol if tol is not None else (1e-10 if b.dtype == torch.float64 else 1e-5)
    dims = tuple(range(1, b.ndim))
    dot = lambda p, q: (p * q).sum(dims, keepdim=True)  # noqa: E731
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = dot(r, r)
    stop = (tol**2) * dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        Ap = apply(p)
        step = rr / dot(p, Ap).clamp_min(torch.finfo(b.dtype).tiny)
        u = u + step * p
        r = r - step * Ap
        rr_new = dot(r, r)
        p = r + (rr_new / rr.clamp_min(torch.finfo(b.dtype).tiny)) * p
        rr = rr_new
    return u


class Identity(Operator):
    """A = I: denoising."""

    def __call__(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, v: Tensor, shape) -> Tensor:
        return v.reshape(v.shape[0], *shape)

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        return v / append_dims(r2 + s2, v.ndim)

    def __repr__(self) -> str:
        return "Identity()"


class Mask(Operator):
    """Inpainting: A keeps the entries where `keep` (a boolean tensor of one example's shape) is true; an
    observation is the (N, m) kept entries, in the order of the flattened example."""

    def __init__(self, keep):
        keep = torch.as_tensor(keep)
        if keep.dtype != torch.bool:
            raise ValueError(f"a mask is a boolean tensor of one example's shape (true: observed), got {keep.dtype}")
        if not bool(keep.any()):
            raise ValueError("the mask keeps nothing: at least one entry must be observed")
        self.keep = keep
        self.index = keep.flatten().nonzero().squeeze(1)

    def _check(self, shape) -> None:
        if tuple(shape) != tuple(self.keep.shape):
            raise ValueError(f"the mask has shape {tuple(self.keep.shape)}; these examples have shape {tuple(shape)}")

    def __call__(self, x: Tensor) -> Tensor:
        self._check(x.shape[1:])
        return x.flatten(1)[:, self.index.to(x.device)]

    def adjoint(self, v: Tensor, shape) -> Tensor:
        self._check(shape)
        out = torch.zeros(v.shape[0], math.prod(shape), dtype=v.dtype, device=v.device)
        return out.index_copy(1, self.index.to(v.device), v.reshape(v.shape[0], -1)).reshape(v.shape[0], *shape)

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        return v / append_dims(r2 + s2, v.ndim)  # A A^T = I

    def __repr__(self) -> str:
        return f"Mask({int(self.keep.sum())} of {self.keep.numel()} observed)"


class Downsample(Operator):
    """Super-resolution: A averages images (..., H, W) over factor x factor blocks (`data.downsample`)."""

    def __init__(self, factor: int):
        if isinstance(factor, bool) or int(factor) != factor or factor < 1:
            raise ValueError(f"the downsampling factor must be an integer >= 1, got {factor!r}")
        self.factor = int(factor)

    def __call__(self, x: Tensor) -> Tensor:
        from ..data import downsample

        if x.ndim < 3:
            raise ValueError(f"block averaging needs images (N, ..., H, W), got shape {tuple(x.shape)}")
        return downsample(x, self.factor)

    def adjoint(self, v: Tensor, shape) -> Tensor:
        from ..data import upsample

        return upsample(v, self.factor).reshape(v.shape[0], *shape) / self.factor**2

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        return v / append_dims(r2 / self.factor**2 + s2, v.ndim)  # A A^T = I / f^2

    def __repr__(self) -> str:
        return f"Downsample({self.factor})"


class Upsample(Operator):
    """Nearest-neighbour enlargement of images (..., H, W) by `factor` (each pixel over a factor x factor block): what
    a low-resolution image says of the full-resolution one (`Composed` with another operator)."""

    def __init__(self, factor: int):
        self.down = Downsample(factor)
        self.factor = self.down.factor

    def __call__(self, x: Tensor) -> Tensor:
        from ..data import upsample

        return upsample(x, self.factor)

    def adjoint(self, v: Tensor, shape) -> Tensor:
        return self.down(v) * self.factor**2  # the sum over each block

    def __repr__(self) -> str:
        return f"Upsample({self.factor})"


class Composed(Operator):
    """A(B(x)): `outer` after `inner`, with `inner_shape` the shape `outer` acts on (B's output)."""

    def __init__(self, outer, inner, inner_shape):
        self.outer, self.inner, self.inner_shape = as_operator(outer), as_operator(inner), tuple(inner_shape)

    def __call__(self, x: Tensor) -> Tensor:
        return self.outer(self.inner(x).reshape(x.shape[0], *self.inner_shape))

    def adjoint(self, v: Tensor, shape) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(v, self.inner_shape), shape)

    def __repr__(self) -> str:
        return f"{self.outer!r} after {self.inner!r}"


def gaussian_kernel(std: float, size: int | None = None) -> Tensor:
    """A normalised (size, size) Gaussian kernel of standard deviation `std` pixels (size: 2 ceil(3 std) + 1)."""
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"a blur's standard deviation must be > 0 pixels, got {std}")
    size = size or 2 * math.ceil(3 * std) + 1
    u = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (u / std) ** 2)
    return torch.outer(k, k) / torch.outer(k, k).sum()


class Blur(Operator):
    """Deblurring: A convolves each channel of images (N, C, H, W) with `kernel` (k, k; k odd), or with a Gaussian
    of standard deviation `std` pixels, zero outside the image (the output has the input's size)."""

    def __init__(self, std: float | None = None, *, kernel=None):
        if (std is None) == (kernel is None):
            raise ValueError("give a blur's std (a Gaussian, in pixels) or its kernel, not both")
        kernel = gaussian_kernel(std) if kernel is None else torch.as_tensor(kernel, dtype=torch.float64)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            raise ValueError(f"a blur kernel is a square (k, k) tensor with k odd, got shape {tuple(kernel.shape)}")
        self.kernel, self.std = kernel, std

    def _conv(self, x: Tensor, kernel: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"a blur acts on images (N, C, H, W), got shape {tuple(x.shape)}")
        C = x.shape[1]
        w = kernel.to(x)[None, None].expand(C, 1, *kernel.shape)
        return F.conv2d(x, w, padding=kernel.shape[0] // 2, groups=C)

    DIRECT = 4096  # images of at most this many pixels solve with the eigendecomposition of one channel's B B^T

    def __call__(self, x: Tensor) -> Tensor:
        return self._conv(x, self.kernel)

    def adjoint(self, v: Tensor, shape) -> Tensor:
        return self._conv(v.reshape(v.shape[0], *shape), self.kernel.flip(0, 1))  # correlation's transpose

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        """Directly for small images (B B^T of one channel, H W x H W, decomposed once per size: the blur is the same
        on every channel), by conjugate gradients for large ones. A noiseless blur is nearly singular, so the
        conjugate gradients would need many iterations where the direct solve needs none."""
        H, W = shape[-2:]
        if H * W > self.DIRECT:
            return super().gram_solve(v, r2, s2, shape)
        lam, U = self._eigen(H, W)
        lam, U = lam.to(v), U.to(v)
        c = v.reshape(v.shape[0], -1, H * W) @ U  # per channel, in the eigenbasis of B B^T
        c = c / (r2.to(v)[:, None, None] * lam + s2).clamp_min(torch.finfo(v.dtype).tiny)
        return (c @ U.T).reshape(v.shape)

    def _eigen(self, H: int, W: int):
        cache = self.__dict__.setdefault("_eigens", {})
        if (H, W) not in cache:
            B = self.matrix((1, H, W))  # (H W, H W), float64
            lam, U = torch.linalg.eigh(B @ B.T)
            cache[(H, W)] = (lam.clamp_min(lam.max() * 1e-13), U)
        return cache[(H, W)]

    def __repr__(self) -> str:
        return f"Blur(std={self.std:g})" if self.std is not None else f"Blur(kernel {tuple(self.kernel.shape)})"


class Matrix(Operator):
    """A = M, an (m, d) tensor acting on each flattened example as x @ M.T."""

    def __init__(self, M):
        M = torch.as_tensor(M)
        if M.ndim != 2 or not M.is_floating_point():
            raise ValueError(f"a measurement matrix is an (m, d) tensor of floats, got {M.dtype} of shape {tuple(M.shape)}")
        self.M = M
        lam, U = torch.linalg.eigh(M.double() @ M.double().T)  # M M^T = U diag(lam) U^T, once
        self.gram_values, self.gram_vectors = lam.clamp_min(0), U

    def _check(self, x: Tensor) -> None:
        if math.prod(x.shape[1:]) != self.M.shape[1]:
            raise ValueError(f"the matrix acts on examples of {self.M.shape[1]} entries; these have shape {tuple(x.shape[1:])}")

    def __call__(self, x: Tensor) -> Tensor:
        self._check(x)
        return x.flatten(1) @ self.M.to(x).T

    def adjoint(self, v: Tensor, shape) -> Tensor:
        return (v.reshape(v.shape[0], -1) @ self.M.to(v)).reshape(v.shape[0], *shape)

    def gram_solve(self, v: Tensor, r2: Tensor, s2: float, shape) -> Tensor:
        U, lam = self.gram_vectors.to(v), self.gram_values.to(v)
        c = v.reshape(v.shape[0], -1) @ U  # in the eigenbasis of M M^T
        return ((c / (r2[:, None].to(v) * lam[None] + s2)) @ U.T).reshape(v.shape)

    def matrix(self, shape) -> Tensor:
        if math.prod(shape) != self.M.shape[1]:
            raise ValueError(f"the matrix acts on examples of {self.M.shape[1]} entries, not of shape {tuple(shape)}")
        return self.M.double()

    def __repr__(self) -> str:
        return f"Matrix({self.M.shape[0]} x {self.M.shape[1]})"


def as_operator(A) -> Operator:
    """An operator, or a plain (m, d) tensor as a `Matrix`."""
    if isinstance(A, Operator):
        return A
    if torch.is_tensor(A):
        return Matrix(A)
    raise ValueError(f"a measurement operator is a difflab.inverse operator (Mask, Downsample, Blur, Identity, Matrix) or "
                     f"an (m, d) tensor, got {type(A).__name__}")
