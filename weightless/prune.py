"""Magnitude pruning: the first step of the Weightless pipeline.

Pruning decides which weights survive; only those become keys of the Bloomier
filter (or entries of a sparse baseline format). Everything here is plain numpy.

Two ways to choose what survives:

* ``sparsity=s``: keep the ``round((1 - s) * size)`` weights of largest
  magnitude (rounded to nearest, halves up). Equal magnitudes are broken by
  position: the lower flat (row-major) index is kept. Weights that are already
  zero are never kept, so fewer may survive when the input is already sparse.
* ``threshold=t``: keep every weight with ``|w| > t`` (strictly greater).

With neither, every nonzero weight is kept.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["prune_mask", "prune"]


def _magnitudes(weights: np.ndarray) -> np.ndarray:
    """|weights| in a dtype where abs cannot overflow, after checking finiteness."""
    if weights.dtype == np.bool_ or not np.issubdtype(weights.dtype, np.number):
        raise TypeError(f"weights must be a real numeric array, got dtype {weights.dtype}")
    if np.issubdtype(weights.dtype, np.complexfloating):
        raise TypeError("weights must be real, got a complex array")
    if np.issubdtype(weights.dtype, np.integer):
        # abs(int8(-128)) wraps to -128; float64 has no such corner.
        return np.abs(weights.astype(np.float64))
    mag = np.abs(weights)
    # One pass finds both: the max of |w| is NaN if any entry is, and Inf if any entry is.
    if mag.size and not np.isfinite(mag.max()):
        raise ValueError("weights contain NaN" if np.isnan(mag).any() else "weights contain Inf")
    return mag


def _check_args(sparsity: float | None, threshold: float | None) -> None:
    if sparsity is not None and threshold is not None:
        raise ValueError("give at most one of sparsity and threshold, not both")
    if sparsity is not None and not (0.0 <= sparsity <= 1.0):  # also rejects NaN
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    if threshold is not None and not (threshold >= 0.0):  # also rejects NaN
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")


def _kth_largest(flat: np.ndarray, keep: int) -> float:
    """The keep-th largest value of flat (1 <= keep <= flat.size), in O(n).

    A selection over all of a large layer costs ~1 s per 100M weights; instead a random sample
    bounds the answer from below, one pass keeps the candidates at or above that bound (a few
    percent of the layer at typical sparsities), and the selection runs on those. The sample
    bound is checked, never trusted: if too few candidates pass, fall back to the full selection.
    """
    n = flat.size
    if n > 4 * _SAMPLE:
        rng = np.random.default_rng(0)
        sample = flat[rng.integers(0, n, _SAMPLE)]
        # A quantile a margin below the target, so the true keep-th largest is above it except
        # with vanishing probability (the margin is ~10 standard deviations of the sample quantile).
        q = 1.0 - keep / n
        margin = 10.0 * math.sqrt(q * (1.0 - q) / _SAMPLE) + 1.0 / _SAMPLE
        bound = np.quantile(sample, max(0.0, q - margin))
        candidates = flat[flat >= bound]
        if candidates.size >= keep:
            return candidates[np.argpartition(candidates, candidates.size - keep)[candidates.size - keep]]
    return np.partition(flat, n - keep)[n - keep]


_SAMPLE = 1 << 16


def prune_mask(
    weights: np.ndarray,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Boolean mask (same shape as ``weights``) of the weights that survive pruning.

    Args:
        weights: real array of any shape; must not contain NaN or Inf.
        sparsity: fraction of weights to set to zero, in [0, 1]. Keeps the
            ``round((1 - sparsity) * weights.size)`` largest ``|w|`` (halves
            rounded up); among equal magnitudes the lowest row-major positions
            win. ``1.0`` prunes everything. Already-zero weights are never kept.
        threshold: keep exactly the weights with ``|w| > threshold``; must be >= 0.

    If neither is given, all nonzero weights are kept.

    Raises:
        ValueError: both options given, sparsity outside [0, 1], negative
            threshold, or NaN/Inf in ``weights``.
        TypeError: non-numeric, boolean or complex ``weights``.
    """
    _check_args(sparsity, threshold)
    w = np.asarray(weights)
    mag = _magnitudes(w)

    if threshold is not None:
        return mag > threshold
    if sparsity is None:
        return mag != 0

    # round() on (1 - s) * n rather than floor/ceil: (1 - 0.92) * 1000 is
    # 79.999..., which must keep 80, not 79.
    keep = int(math.floor((1.0 - sparsity) * w.size + 0.5))
    flat = mag.ravel()
    nonzero = int(np.count_nonzero(flat))
    if keep >= nonzero:
        return mag != 0
    if keep == 0:
        return np.zeros(w.shape, dtype=bool)

    kth = _kth_largest(flat, keep)
    # Everything strictly above the keep-th largest magnitude survives; the remaining slots go
    # to the equal-magnitude weights in position order, which makes ties deterministic.
    mask = flat > kth
    remaining = keep - int(np.count_nonzero(mask))
    if remaining:
        mask[np.flatnonzero(flat == kth)[:remaining]] = True
    return mask.reshape(w.shape)


def prune(
    weights: np.ndarray,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """Copy of ``weights`` with the pruned entries set to zero.

    Takes the same options as :func:`prune_mask`; the input is never modified
    and the result keeps its dtype and shape.
    """
    mask = prune_mask(weights, sparsity=sparsity, threshold=threshold)
    out = np.array(weights, copy=True)
    out[~mask] = 0
    return out
