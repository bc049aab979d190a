"""The exact codec: a pruned, clustered tensor stored losslessly near its information content.

Where `weightless.codec` stores the map position -> cluster index in a lossy Bloomier filter,
this codec stores it exactly: the kept positions as gaps and each kept weight's code, in one
static-model rANS stream with small contexts (the C++ core, csrc/codecs/exact.h; the byte
format is docs/FORMAT.md, "Exact codec"; measurements in docs/EXACT.md).

    layer = encode_exact(weights, sparsity=0.92, clusters=16)   # prune, cluster, encode
    layer = encode_clustered(positions, codes, shape, codebook) # already pruned and clustered
    w = layer.decode()                 # codebook[code] at kept positions, 0 elsewhere
    data = layer.to_bytes(); ExactLayer.from_bytes(data).decode()

Its size is compared with `information_bound_bits`: log2 C(N, n) + n * H0(codes), the bits of
an ideal coder that knows only the tensor's size, the kept count and the codes' frequencies.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from .clustered import prune_and_cluster
from .codec import _varint_size, check_decode_size

__all__ = ["ExactLayer", "encode_exact", "encode_clustered", "information_bound_bits", "MAX_CLUSTERS"]

#: Codes are < 4096 (the coder's 12-bit frequency tables); code contexts need at most 256.
MAX_CLUSTERS: int = _core.EXACT_MAX_CLUSTERS


def information_bound_bits(size: int, codes: ArrayLike) -> float:
    """log2 C(size, n) + n * H0(codes): the uniform information content of a clustered tensor.

    `codes` are the n kept weights' cluster indices; H0 is their empirical entropy.
    """
    c = np.asarray(codes).ravel()
    n = c.size
    if not 0 <= n <= size:
        raise ValueError(f"{n} codes for {size} positions")
    mask_bits = (math.lgamma(size + 1) - math.lgamma(n + 1) - math.lgamma(size - n + 1)) / math.log(2)
    if n == 0:
        return max(mask_bits, 0.0)
    counts = np.bincount(c.astype(np.int64))
    counts = counts[counts > 0].astype(np.float64)
    code_bits = float(-(counts * np.log2(counts / n)).sum())
    return max(mask_bits, 0.0) + code_bits


class ExactLayer:
    """One exactly encoded tensor: its serialized bytes and what its header declares.

    Attributes: `shape`, `codebook` (float32), `kept` (number of kept weights), `nbytes`
    (serialized size, `to_bytes()`), `payload_nbytes` (what it takes in a .wl file,
    `to_payload()`), `bound_bits` (`information_bound_bits` of its content), `gap_mode` and
    `code_mode` (the contexts the encoder chose; docs/FORMAT.md).
    """

    __slots__ = ("_data", "shape", "size", "kept", "codebook", "gap_mode", "code_mode", "_bound")

    def __init__(self, data: bytes):
        info = _core.exact_info(data)  # checks checksum, header and tables: ValueError if malformed
        self._data = bytes(data)
        self.shape: tuple[int, ...] = tuple(int(d) for d in info["shape"])
        self.size: int = int(info["size"])
        self.kept: int = int(info["kept"])
        self.codebook: np.ndarray = np.asarray(info["codebook"], dtype=np.float32)
        self.gap_mode: int = int(info["gap_mode"])
        self.code_mode: int = int(info["code_mode"])
        self._bound: float | None = None

    @property
    def nbytes(self) -> int:
        return len(self._data)

    @property
    def payload_nbytes(self) -> int:
        """Bytes of `to_payload()`: `nbytes` less the magic (4), ndim (1), the shape's varints
        and the CRC-32 (4), which a .wl file's directory already holds."""
        return self.nbytes - 9 - sum(_varint_size(d) for d in self.shape)

    @property
    def bound_bits(self) -> float:
        """The information bound this layer's size is measured against (computed on first use)."""
        if self._bound is None:
            _, codes = self.sparse()
            self._bound = information_bound_bits(self.size, codes)
        return self._bound

    def to_bytes(self) -> bytes:
        """The payload (docs/FORMAT.md, "Exact codec"), CRC-32 included."""
        return self._data

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> ExactLayer:
        """Parse `to_bytes` output; anything malformed, truncated or corrupted raises ValueError."""
        return cls(bytes(data))

    def to_payload(self) -> bytes:
        """The layer as a .wl file (version 3) stores it (docs/FORMAT.md, "Payloads"): headless,
        `to_bytes()` without the magic, ndim, shape and CRC-32, which the directory holds."""
        return _core.exact_headless(self._data, list(self.shape))

    @classmethod
    def from_payload(cls, data: bytes | bytearray | memoryview, shape: tuple[int, ...]) -> ExactLayer:
        """Parse `to_payload` output for a tensor of this shape (the full payload is rebuilt);
        ValueError if malformed."""
        return cls(_core.exact_full(data, [int(d) for d in shape]))

    def decode(self, out: np.ndarray | None = None) -> np.ndarray:
        """The tensor, float32: codebook[code] at the kept positions, 0 elsewhere.

        `out`: a writeable C-contiguous float32 array of the layer's shape to decode into (and
        return). Without it, ValueError if the output would exceed
        `weightless.codec.max_decode_bytes()`, before allocating.
        """
        if out is None:
            check_decode_size(4 * self.size)
            out = np.empty(self.shape, dtype=np.float32)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != self.shape
              or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"decode: out must be a writeable C-contiguous float32 array of shape {self.shape}")
        _core.exact_decode_weights(self._data, out.reshape(-1))
        return out

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions, codes): flattened kept positions (uint64, ascending) and their codes (uint32)."""
        check_decode_size(12 * self.kept)
        positions, codes = _core.exact_decode_sparse(self._data, self.kept)
        return positions, codes

    def __repr__(self) -> str:
        return (f"ExactLayer(shape={self.shape}, kept={self.kept}, clusters={len(self.codebook)}, "
                f"nbytes={self.nbytes}, gap_mode={self.gap_mode}, code_mode={self.code_mode})")


def _mode(value: int | None, name: str, top: int) -> int:
    if value is None:
        return -1
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= top:
        raise ValueError(f"{name} must be None or an integer in 0..{top}, got {value!r}")
    return int(value)


def _ways(value: int) -> int:
    if not isinstance(value, (int, np.integer)) or int(value) not in (1, 2, 4):
        raise ValueError(f"ways must be None, 1, 2 or 4, got {value!r}")
    return int(value)


def encode_clustered(
    positions: ArrayLike,
    codes: ArrayLike,
    shape: tuple[int, ...] | int,
    codebook: ArrayLike,
    *,
    gap_mode: int | None = None,
    code_mode: int | None = None,
    ways: int | None = None,
) -> ExactLayer:
    """Encode an already pruned and clustered tensor exactly.

    Args:
        positions: flattened (row-major) kept positions, strictly increasing, < prod(shape).
        codes: each kept weight's cluster index, < len(codebook) (at most `MAX_CLUSTERS`).
        shape: the tensor's shape (0-D to 32-D).
        codebook: the float32 centroids; stored bit for bit.
        gap_mode, code_mode: force the contexts (docs/FORMAT.md); None lets the encoder try
            every choice and keep the smallest.
        ways: rANS states per stream, 1, 2 or 4 (more decode faster and cost 16 bytes each);
            None chooses by the number of kept weights.
    """
    shp = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if any(d < 0 for d in shp):
        raise ValueError(f"shape must be non-negative, got {shp}")
    pos = np.asarray(positions)
    cod = np.asarray(codes)
    if pos.ndim != 1 or cod.ndim != 1 or pos.shape != cod.shape:
        raise ValueError("positions and codes must be 1-D arrays of the same length")
    if pos.size and (not np.issubdtype(pos.dtype, np.integer) or pos.min() < 0):
        raise ValueError("positions must be non-negative integers")
    if cod.size and (not np.issubdtype(cod.dtype, np.integer) or cod.min() < 0):
        raise ValueError("codes must be non-negative integers")
    book = np.asarray(codebook, dtype=np.float32).ravel()
    if not np.all(np.isfinite(book)):
        raise ValueError("codebook contains NaN or Inf")
    data = _core.exact_encode(pos.astype(np.uint64), cod.astype(np.uint32), list(shp), book,
                              _mode(gap_mode, "gap_mode", 1), _mode(code_mode, "code_mode", 3),
                              0 if ways is None else _ways(ways))
    return ExactLayer(data)


def encode_exact(
    weights: ArrayLike,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    clusters: int = 16,
    seed: int = 0,
    init: str = "density",
    gap_mode: int | None = None,
    code_mode: int | None = None,
) -> ExactLayer:
    """Prune and cluster (`weightless.clustered.prune_and_cluster`) and encode a float tensor
    exactly. Neither sparsity nor threshold keeps every nonzero weight.

    `decode()` gives back exactly the pruned, clustered tensor: codebook[code] at the kept
    positions, 0 elsewhere.
    """
    w = np.asarray(weights)
    if w.dtype == np.bool_ or not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"encode_exact expects a float tensor, got dtype {w.dtype}")
    if not 1 <= clusters <= MAX_CLUSTERS:
        raise ValueError(f"clusters must be in 1..{MAX_CLUSTERS}, got {clusters}")
    c = prune_and_cluster(w, sparsity=sparsity, threshold=threshold, clusters=clusters, seed=seed, init=init)
    codebook = c.codebook if c.kept else np.zeros(0, np.float32)  # nothing kept: no centroids either
    return encode_clustered(c.positions, c.codes, c.shape, codebook, gap_mode=gap_mode, code_mode=code_mode)
