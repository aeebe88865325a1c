"""Comparing what this machine computes with what another machine (or an older commit) stored.

Float results differ between CPUs in their last bits (another instruction set, another oneDNN kernel, another order
of a sum), and sampling carries those differences through every step. So a stored float array is compared with a
tolerance scaled to its size and dtype, and tokens drawn by sampling (where one such difference can flip a draw, and
an autoregressive draw then changes the rest of its sequence) by how many sequences and tokens agree. Bit identity is
asked for only within one process on one machine (resume = uninterrupted), never here."""

from __future__ import annotations

import numpy as np

# float32: ~1,000 ulps of the array's largest value (and 1e-5 relative); float64: a millionth of that
_SCALE = {np.dtype(np.float32): (1e-5, 1e3 * np.finfo(np.float32).eps),
          np.dtype(np.float64): (1e-11, 1e3 * np.finfo(np.float64).eps)}


def assert_close_to_stored(actual, stored, what: str = "") -> None:
    """`actual` equals the stored float array up to float rounding at its scale: |a - s| <= rtol |s| + atol max|s|."""
    actual, stored = np.asarray(actual), np.asarray(stored)
    assert actual.shape == stored.shape, (what, actual.shape, stored.shape)
    rtol, atol = _SCALE.get(stored.dtype, _SCALE[np.dtype(np.float32)])
    scale = max(1.0, float(np.abs(stored).max())) if stored.size else 1.0
    np.testing.assert_allclose(actual, stored, rtol=rtol, atol=atol * scale, err_msg=what)


def assert_tokens_agree(actual, stored, what: str = "", sequences: float = 0.6, tokens: float = 0.75) -> None:
    """Sampled token sequences (N, L) agree with the stored ones: most sequences identical and most tokens equal
    (a float difference between machines may flip a draw; a loading or sampling error changes nearly all)."""
    actual, stored = np.asarray(actual), np.asarray(stored)
    assert actual.shape == stored.shape and actual.dtype.kind in "iu", (what, actual.shape, stored.shape, actual.dtype)
    same_rows = float((actual == stored).all(axis=-1).mean())
    same = float((actual == stored).mean())
    assert same_rows >= sequences and same >= tokens, (what, same_rows, same)


def assert_matches_stored(actual, stored, what: str = "") -> None:
    """Floats by `assert_close_to_stored`; sampled tokens (a name ending in 'tokens') by `assert_tokens_agree`;
    other integers (labels, NFE counts) exactly."""
    stored = np.asarray(stored)
    if stored.dtype.kind == "f":
        assert_close_to_stored(actual, stored, what)
    elif what.endswith("tokens"):
        assert_tokens_agree(actual, stored, what)
    else:  # labels and NFE counts: integers no float rounding reaches, the same on every machine
        assert stored.dtype.kind in "iub" and np.asarray(actual).dtype.kind in "iub", (what, stored.dtype)
        np.testing.assert_array_equal(actual, stored, err_msg=what)
