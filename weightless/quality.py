"""What an encoding does to a tensor, and what the alternatives would take for the same weights.

`measure` compares a decoded tensor with the original and with the pruned, clustered tensor the
encoder was given (for the filter the difference is its false positives; for an exact codec it
is zero). `baseline_nbytes` sizes the storage formats a user would otherwise pick on exactly the
kept weights and codes, never on a decoded tensor (whose false positives would inflate them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .baselines import csr_zstd_nbytes, deep_compression_nbytes
from .clustered import ClusteredTensor

__all__ = ["Quality", "measure", "baseline_nbytes"]

_CHUNK = 1 << 20  # elements per step of the norms: float64 accumulation without a float64 copy


@dataclass(frozen=True)
class Quality:
    """Relative errors ||decoded - x|| / ||x|| (Frobenius), x the original tensor or the pruned,
    clustered one (0 when x is all zero and so is the difference, inf when only x is)."""

    relative_error: float
    relative_error_clustered: float


def _relative(difference_sq: float, reference_sq: float) -> float:
    if reference_sq == 0.0:
        return 0.0 if difference_sq == 0.0 else float("inf")
    return float(np.sqrt(difference_sq / reference_sq))


def measure(original: np.ndarray, decoded: np.ndarray, clustered: ClusteredTensor) -> Quality:
    w, d = original.reshape(-1), decoded.reshape(-1)
    if w.shape != d.shape or clustered.size != w.size:
        raise ValueError(f"sizes differ: original {w.size}, decoded {d.size}, clustered {clustered.size}")
    error_sq = original_sq = decoded_sq = 0.0
    # Sums of squares by ufuncs, not np.dot: a BLAS dot starts OpenBLAS's thread pool, whose
    # spinning threads then compete with the encoders (measured: --jobs 2 gained nothing).
    for begin in range(0, w.size, _CHUNK):
        a = w[begin : begin + _CHUNK].astype(np.float64)
        b = d[begin : begin + _CHUNK].astype(np.float64)
        error_sq += float(np.square(a - b).sum())
        original_sq += float(np.square(a).sum())
        decoded_sq += float(np.square(b).sum())
    # The decoded tensor equals the clustered one at every kept position (every codec stores
    # those exactly) and the clustered one is zero elsewhere, so the difference's energy is the
    # decoded tensor's outside the kept positions.
    values = clustered.values().astype(np.float64)
    kept_decoded = d[clustered.positions].astype(np.float64)
    if not np.array_equal(kept_decoded, values):
        raise ValueError("the decoded tensor differs from the clustered one at a kept position")
    clustered_sq = float(np.square(values).sum())
    return Quality(_relative(error_sq, original_sq), _relative(max(decoded_sq - clustered_sq, 0.0), clustered_sq))


def baseline_nbytes(clustered: ClusteredTensor, *, zstd: bool = False) -> dict[str, int]:
    """Bytes of Deep Compression style storage (5-bit relative indices, Huffman) and, with
    `zstd` (slower, needs zstandard), of CSR + zstd, for the kept weights and codes."""
    k = max(len(clustered.codebook), 1)
    sizes = {"deep_compression": deep_compression_nbytes(clustered.positions, clustered.codes, k, clustered.shape,
                                                         index_bits=5)["total"]}
    if zstd:
        try:
            sizes["csr_zstd"] = csr_zstd_nbytes(clustered.positions, clustered.codes, k, clustered.shape)["total"]
        except ImportError:
            raise ImportError("the CSR + zstd baseline needs zstandard: pip install 'weightless[cli]'") from None
    return sizes
