"""The pruned, clustered tensor: what every codec stores, exactly or (the filter) with false positives.

`prune_and_cluster` is the pipeline's first two steps on one tensor: magnitude pruning
(`weightless.prune`) and 1-D k-means weight sharing (`weightless.cluster`). Its result is the
reference a codec's output is measured against, and what baselines are sized on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .cluster import kmeans_1d
from .prune import prune_mask

__all__ = ["ClusteredTensor", "prune_and_cluster"]


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class ClusteredTensor:
    """A tensor as kept positions, their cluster codes and the codebook.

    Attributes: `shape`; `positions` (int64, strictly ascending flat C-order indices of the kept
    weights); `codes` (uint16, one per kept weight, each < len(codebook)); `codebook` (float32,
    strictly ascending).
    """

    shape: tuple[int, ...]
    positions: np.ndarray
    codes: np.ndarray
    codebook: np.ndarray

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def kept(self) -> int:
        return int(self.positions.size)

    def values(self) -> np.ndarray:
        """The kept weights' shared values, codebook[codes]."""
        return self.codebook[self.codes]

    def dense(self) -> np.ndarray:
        """The float32 tensor: the shared values at the kept positions, zero elsewhere."""
        out = np.zeros(self.size, np.float32)
        out[self.positions] = self.values()
        return out.reshape(self.shape)


def prune_and_cluster(weights: ArrayLike, *, sparsity: float | None = None, threshold: float | None = None,
                      clusters: int = 16, seed: int = 0, init: str = "density") -> ClusteredTensor:
    """Prune a float tensor by magnitude (`sparsity` or `threshold`; neither keeps every nonzero
    weight) and share the kept weights' values among `clusters` k-means centroids.

    Fewer clusters than asked result when there are fewer distinct kept values. NaN and Inf
    weights are refused with ValueError; deterministic for a given seed.
    """
    w = np.asarray(weights)
    if w.dtype == np.bool_ or not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"expected a float tensor, got dtype {w.dtype}")
    mask = prune_mask(w, sparsity=sparsity, threshold=threshold)  # also rejects NaN and Inf
    positions = np.flatnonzero(mask)
    clustering = kmeans_1d(w.reshape(-1)[positions], clusters, init=init, seed=seed)
    return ClusteredTensor(tuple(int(d) for d in w.shape), positions.astype(np.int64), clustering.codes,
                           clustering.codebook)
