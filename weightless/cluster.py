"""1-D k-means weight sharing: the second step of the Weightless pipeline.

The kept (nonzero) weights of a layer are replaced by one of ``k`` shared
values (the codebook); what gets stored per weight is only its cluster index.

The k-means here is Lloyd's algorithm specialised to one dimension, so it stays
cheap on millions of values:

* the values are sorted once (O(n log n));
* in 1-D every cluster is a contiguous run of the sorted values, bounded by
  the midpoints between consecutive centroids, so an assignment is
  ``k - 1`` binary searches (``np.searchsorted``) instead of an (n x k)
  distance matrix;
* a cluster's mean comes from prefix sums of the sorted values, O(1) each.

One iteration therefore costs O(k log n); only the final labelling touches all
n values. Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

__all__ = ["Clustering", "kmeans_1d", "init_centroids", "quantize", "MAX_CLUSTERS"]

#: Codes are uint16, so at most 2**16 clusters.
MAX_CLUSTERS = 1 << 16

_INITS = ("density", "linear", "random")


@dataclass(frozen=True, eq=False)  # eq=False: element-wise array == has no single truth value
class Clustering:
    """Result of weight sharing.

    Attributes:
        codebook: float32, shape (k,), strictly ascending distinct centroids.
        codes: uint16, one cluster index per input value (input order and
            shape flattened), each in ``range(k)``.
    """

    codebook: np.ndarray
    codes: np.ndarray

    @property
    def num_clusters(self) -> int:
        """k, the number of codebook entries actually used."""
        return int(self.codebook.shape[0])


def _as_finite_1d(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.number):
        raise TypeError(f"values must be a real numeric array, got dtype {v.dtype}")
    if np.issubdtype(v.dtype, np.complexfloating):
        raise TypeError("values must be real, got a complex array")
    v = v.astype(np.float64, copy=False).ravel()
    if np.isnan(v).any():
        raise ValueError("values contain NaN")
    if np.isinf(v).any():
        raise ValueError("values contain Inf")
    return v


def _check_clusters(clusters: int) -> int:
    try:
        k = operator.index(clusters)
    except TypeError:
        raise ValueError(f"clusters must be an integer in 1..{MAX_CLUSTERS}, got {clusters!r}") from None
    if not 1 <= k <= MAX_CLUSTERS:
        raise ValueError(f"clusters must be in 1..{MAX_CLUSTERS}, got {k}")
    return k


def _init_sorted(xs: np.ndarray, k: int, init: str, seed: int) -> np.ndarray:
    """Initial centroids (float64, ascending, distinct) for sorted values ``xs``.

    May return fewer than ``k`` centroids when quantiles coincide (heavy ties);
    the Lloyd loop re-seeds the missing ones.
    """
    n = xs.shape[0]
    if init == "density":
        # Centres of k equal-mass bins of the empirical CDF: evenly spaced in the
        # CDF's y-axis, as in Deep Compression's density-based initialisation.
        # Linear interpolation between order statistics (np.quantile's default),
        # done by hand because xs is already sorted.
        pos = (np.arange(k) + 0.5) / k * (n - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        frac = pos - lo
        c = xs[lo] + frac * (xs[hi] - xs[lo])
    elif init == "linear":
        c = np.linspace(xs[0], xs[-1], k)
    elif init == "random":
        distinct = xs[np.r_[True, xs[1:] != xs[:-1]]]
        rng = np.random.default_rng(seed)
        c = rng.choice(distinct, size=min(k, distinct.shape[0]), replace=False)
    else:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    return np.unique(c)


def init_centroids(values: np.ndarray, clusters: int, *, init: str = "density", seed: int = 0) -> np.ndarray:
    """The initial centroids :func:`kmeans_1d` starts from (float64, ascending, distinct).

    * ``"density"``: the empirical quantiles at probabilities ``(i + 0.5) / k``,
      i = 0..k-1 (linear interpolation, like ``np.quantile``).
    * ``"linear"``: ``k`` points evenly spaced from min to max, ends included.
    * ``"random"``: ``k`` distinct input values drawn with ``seed``.

    Coinciding centroids are merged, so fewer than ``clusters`` may be returned.
    """
    k = _check_clusters(clusters)
    xs = np.sort(_as_finite_1d(values))
    if xs.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    return _init_sorted(xs, k, init, seed)


def _assign(xs: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Run boundaries ``edges`` (len(c) + 1) of the sorted values: cluster j owns xs[edges[j]:edges[j+1]].

    A value exactly on a midpoint goes to the lower centroid.
    """
    mids = 0.5 * (c[:-1] + c[1:])
    inner = np.searchsorted(xs, mids, side="right")
    return np.concatenate(([0], inner, [xs.shape[0]]))


def _means(xs: np.ndarray, csum: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means of the nonempty runs and the edges of those runs (lo, hi)."""
    lo, hi = edges[:-1], edges[1:]
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    means = (csum[hi] - csum[lo]) / (hi - lo)
    # Prefix-sum differences carry rounding error; clamping to the run's own
    # range keeps means strictly ordered (runs occupy disjoint value ranges) and
    # exact for runs of one repeated value.
    means = np.clip(means, xs[lo], xs[hi - 1])
    return means, np.stack((lo, hi))


def _farthest_points(xs: np.ndarray, means: np.ndarray, runs: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` values farthest from their own cluster mean (new seeds for empty clusters).

    In 1-D the farthest member of a run is one of its two ends. Ends at distance
    0 are skipped, so every seed differs from every mean and from each other.
    Ties are broken by position for determinism.
    """
    lo, hi = runs
    cand = np.concatenate((xs[lo], xs[hi - 1]))
    dist = np.concatenate((means - xs[lo], xs[hi - 1] - means))
    pick = np.argsort(-dist, kind="stable")[:count]
    pick = pick[dist[pick] > 0]
    return cand[pick]


def kmeans_1d(
    values: np.ndarray,
    clusters: int,
    *,
    init: str = "density",
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 0.0,
) -> Clustering:
    """Cluster a flat array of values (the kept nonzero weights) with 1-D k-means.

    Args:
        values: real array (flattened); no NaN/Inf.
        clusters: requested k, 1..65536 (codes are uint16).
        init: ``"density"`` (quantiles, the paper's choice), ``"linear"`` or
            ``"random"``; see :func:`init_centroids`.
        seed: only used by ``init="random"``.
        max_iter: maximum number of Lloyd updates (assign, then move each
            centroid to its cluster mean). 0 means no update of the initial
            centroids before the final labelling.
        tol: stop once no centroid moves by more than ``tol``. With the
            default 0 the loop runs until the assignment is stable, which in
            1-D happens after finitely many steps.

    Returns:
        A :class:`Clustering`. Its codebook is the mean of each final cluster
        (so it is optimal for the returned codes), computed in float64 and
        returned as float32; its ``codes`` follow the input order.

    Size of the codebook:
        * fewer distinct values than ``clusters``: the codebook is exactly the
          distinct values (k reduced to their number), no iterations run;
        * a cluster that goes empty during the loop is re-seeded at the value
          farthest from its cluster mean (deterministic), so k is kept;
        * the codebook can still come out shorter than requested if a cluster
          empties in the final labelling after ``max_iter`` ran out, or if two
          float64 centroids round to the same float32 (then merged). In all
          cases the codebook is strictly ascending and every code indexes it.

    Empty input gives an empty codebook and empty codes.

    Raises:
        ValueError: ``clusters`` outside 1..65536, unknown ``init``, negative
            ``max_iter`` or ``tol``, NaN/Inf in ``values``.
    """
    k = _check_clusters(clusters)
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    x = _as_finite_1d(values)
    n = x.shape[0]
    if n == 0:
        return Clustering(np.empty(0, dtype=np.float32), np.empty(0, dtype=np.uint16))

    xs = np.sort(x)
    distinct = int(np.count_nonzero(xs[1:] != xs[:-1])) + 1

    if distinct <= k:
        # Exact: one cluster per distinct value, no quantisation error beyond
        # the float32 cast of the codebook.
        centroids = xs[np.r_[True, xs[1:] != xs[:-1]]]
    else:
        csum = np.concatenate(([0.0], np.cumsum(xs)))
        centroids = _init_sorted(xs, k, init, seed)
        for _ in range(max_iter):
            means, runs = _means(xs, csum, _assign(xs, centroids))
            missing = k - means.shape[0]
            if missing:
                # Empty clusters (or coinciding initial quantiles): reseed so the
                # caller gets the k it asked for. distinct > k guarantees some run
                # holds two distinct values, hence at least one candidate.
                seeds = _farthest_points(xs, means, runs, missing)
                new = np.sort(np.concatenate((means, seeds)))
            else:
                new = means
            done = new.shape[0] == centroids.shape[0] and float(np.max(np.abs(new - centroids))) <= tol
            centroids = new
            if done:
                break

    # Final labelling against the last centroids; the codebook is the mean of
    # each resulting cluster (equal to the centroids once converged). Clusters
    # are contiguous value ranges, so a value's code is the number of ranges
    # starting at or below it: no argsort needed to map codes back to input order.
    if distinct <= k:
        codebook64 = centroids
        starts = centroids[1:]
    else:
        codebook64, runs = _means(xs, csum, _assign(xs, centroids))
        starts = xs[runs[0][1:]]
    run_codes = np.searchsorted(starts, x, side="right")

    # float32 rounding can merge neighbouring centroids; np.unique keeps the
    # codebook strictly ascending and remaps the codes onto it.
    codebook, remap = np.unique(codebook64.astype(np.float32), return_inverse=True)
    codes = remap.astype(np.uint16)[run_codes]
    return Clustering(codebook=codebook, codes=codes)


def quantize(values: np.ndarray, clustering: Clustering) -> np.ndarray:
    """``codebook[codes]`` shaped like ``values``: the weight-shared version of ``values``."""
    v = np.asarray(values)
    if clustering.codes.shape[0] != v.size:
        raise ValueError(
            f"clustering has {clustering.codes.shape[0]} codes but values has {v.size} elements"
        )
    return clustering.codebook[clustering.codes].reshape(v.shape)
