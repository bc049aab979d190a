"""The per-layer codec: prune -> cluster -> encode the map position -> cluster in a Bloomier filter.

`encode_layer` turns a float tensor of any rank into an `EncodedLayer`, whose `decode()` gives
back the pruned and clustered tensor, plus rare false positives: zero weights read back as one
of the cluster centroids, each with probability `clusters / 2**cell_bits`.
"""

from __future__ import annotations

import math
import operator
import os
import struct
import zlib
from typing import TYPE_CHECKING, Literal, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _core
from .clustered import ClusteredTensor, prune_and_cluster
from .dtypes import is_bfloat16, numpy_dtype
from .filter import BloomierFilter

if TYPE_CHECKING:  # weightless.exact imports this module
    from .exact import ExactLayer

__all__ = ["EncodedLayer", "encode_layer", "encode_clustered", "choose_cell_bits", "max_decode_bytes",
           "DEFAULT_FP_RATE", "choose_outliers", "split_outliers", "OUTLIER_SCALE", "MAX_OUTLIER_FRACTION"]

# With neither cell_bits nor fp_rate given: about 1 zero weight in 64 reads back as a spurious
# weight. Retraining absorbs more; without it, this keeps accuracy close to the clustered model.
DEFAULT_FP_RATE = 1 / 64

_MAGIC = b"WLLY"
_VERSION = 1
_HEADER = struct.Struct("<4sHBBIQQ")  # magic, version, ndim, reserved, clusters, false positives, filter bytes
_MAX_NDIM = 32
_DECODE_CHUNK = 1 << 18  # positions per chunk when decoding to float16 / float64


def _varint_size(v: int) -> int:
    return max(1, -(-v.bit_length() // 7))


def max_decode_bytes() -> int:
    """The largest decoded tensor, in bytes, a decode allocates.

    WEIGHTLESS_MAX_DECODE_BYTES if set, else the machine's physical memory. An encoded layer
    declares its shape, and an all-zero layer's filter is a few bytes whatever the shape, so the
    output of a hostile file is bounded only by this check, made before allocating.
    """
    env = os.environ.get("WEIGHTLESS_MAX_DECODE_BYTES")
    if env is not None:
        try:
            limit = int(env)
        except ValueError:
            limit = -1
        if limit < 0:
            raise ValueError(f"WEIGHTLESS_MAX_DECODE_BYTES must be a number of bytes, got {env!r}")
        return limit
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name
        return 2**63


def check_decode_size(nbytes: int) -> None:
    """ValueError unless an output of nbytes bytes fits within `max_decode_bytes()`."""
    limit = max_decode_bytes()
    if nbytes > limit:
        source = ("WEIGHTLESS_MAX_DECODE_BYTES" if "WEIGHTLESS_MAX_DECODE_BYTES" in os.environ
                  else "this machine's memory; WEIGHTLESS_MAX_DECODE_BYTES changes it")
        raise ValueError(f"decoding needs {nbytes:,} bytes, more than the limit of {limit:,} ({source})")


def value_bits_for(clusters: int) -> int:
    """Bits r of a cluster index: enough for `clusters` codes, at least 1."""
    return max(1, math.ceil(math.log2(clusters))) if clusters > 1 else 1


def choose_cell_bits(clusters: int, fp_rate: float) -> int:
    """The smallest t whose expected false-positive rate, clusters / 2**t, is at most fp_rate.

    A zero weight reads a random t-bit word; it becomes a spurious weight when that word is one
    of the `clusters` valid codes (codes past the last cluster are read as zero too).
    """
    if not 0.0 < fp_rate < 1.0:
        raise ValueError(f"fp_rate must be in (0, 1), got {fp_rate!r}")
    r = value_bits_for(clusters)
    t = math.ceil(math.log2(max(clusters, 1) / fp_rate) - 1e-12)
    if t > 32:
        raise ValueError(f"fp_rate {fp_rate!r} with {clusters} clusters needs more than 32 bits per cell")
    return max(r, t)


def _threads(threads: int | None) -> int:
    if threads is None:
        return os.cpu_count() or 1
    threads = operator.index(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return threads


class EncodedLayer:
    """One encoded tensor: its shape, its codebook and the filter of its kept positions.

    Attributes: `shape`, `codebook` (float32, ascending), `cell_bits`, `value_bits`,
    `kept` (number of kept weights), `false_positives` (zero weights that decode as nonzero),
    `filter` (the `BloomierFilter`), `outliers` (an `ExactLayer` of the same shape whose kept
    weights overwrite the filter's values, or None), `nbytes` (its payload's size in a .wl file).
    """

    __slots__ = ("shape", "codebook", "filter", "false_positives", "outliers")

    def __init__(self, shape: tuple[int, ...], codebook: np.ndarray, filter: BloomierFilter, false_positives: int,
                 outliers: ExactLayer | None = None):
        self.shape = tuple(int(d) for d in shape)
        self.codebook = np.ascontiguousarray(codebook, dtype=np.float32)
        self.filter = filter
        self.false_positives = int(false_positives)
        if outliers is not None and outliers.shape != self.shape:
            raise ValueError(f"outliers of shape {outliers.shape} for a layer of shape {self.shape}")
        self.outliers = outliers

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def kept(self) -> int:
        return len(self.filter)

    @property
    def cell_bits(self) -> int:
        return self.filter.cell_bits

    @property
    def value_bits(self) -> int:
        return self.filter.value_bits

    @property
    def expected_false_positives(self) -> float:
        return (self.size - self.kept) * len(self.codebook) / 2.0**self.cell_bits

    @property
    def nbytes(self) -> int:
        """Bytes of `to_payload()`: what the layer takes in a .wl file."""
        k, f = len(self.codebook), self.filter.nbytes
        outliers = self.outliers.payload_nbytes if self.outliers is not None else 0
        return _varint_size(k) + _varint_size(self.false_positives) + 4 * k + _varint_size(f) + f + outliers

    def _overlay(self, flat: np.ndarray, begin: int = 0) -> None:
        """Write the outliers' values over flat, which holds positions [begin, begin + len(flat))."""
        if self.outliers is None:
            return
        positions, codes = self.outliers.sparse()
        lo, hi = np.searchsorted(positions, [begin, begin + len(flat)])
        flat[positions[lo:hi].astype(np.int64) - begin] = self.outliers.codebook[codes[lo:hi]]

    def decode(self, threads: int | None = None, dtype: DTypeLike = np.float32,
               out: np.ndarray | None = None) -> np.ndarray:
        """The tensor: the clustered kept weights, the false positives, zeros elsewhere, and the
        outliers (if any) over them.

        Decoded as float32; another floating `dtype` (float16, float64, or "bfloat16", which
        needs ml_dtypes) is converted a chunk at a time (float16 and bfloat16 round to nearest
        even), so the memory used is the output's plus a small constant.
        ValueError if the output would exceed `max_decode_bytes()`, before allocating it.
        `out`: a writeable C-contiguous float32 array of the layer's shape to decode into (and
        return) instead of a new one; a buffer already written skips a fresh allocation's page
        faults, a large part of the time for a large layer.
        """
        dtype = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
        if dtype.kind != "f" and not is_bfloat16(dtype):
            raise TypeError(f"decode: dtype must be a floating dtype, got {dtype}")
        threads = _threads(threads)
        if out is not None:
            if dtype != np.float32:
                raise ValueError(f"decode: out is decoded as float32, not {dtype}")
            if not isinstance(out, np.ndarray) or out.shape != self.shape:
                raise ValueError(f"decode: out must be a numpy array of shape {self.shape}, "
                                 f"got {getattr(out, 'shape', type(out).__name__)}")
            if not out.flags.c_contiguous:  # reshape would decode into a copy
                raise ValueError("decode: out must be C-contiguous")
            self.filter.decode_weights(self.size, self.codebook, threads=threads, out=out.reshape(-1))
            self._overlay(out.reshape(-1))
            return out
        try:
            check_decode_size(self.size * dtype.itemsize)
        except ValueError as e:
            raise ValueError(f"shape {self.shape}: {e}") from None
        if dtype == np.float32:
            flat = self.filter.decode_weights(self.size, self.codebook, threads=threads)
            self._overlay(flat)
            return flat.reshape(self.shape)
        out = np.empty(self.size, dtype=dtype)
        k = len(self.codebook)
        book = np.append(self.codebook, np.float32(0))
        for begin in range(0, self.size, _DECODE_CHUNK):
            end = min(begin + _DECODE_CHUNK, self.size)
            # The same values decode_weights gives: codebook[v] for a value v < clusters, else 0.
            values = self.filter.lookup_range(begin, end)
            chunk = book[np.where((values >= 0) & (values < k), values, k)]
            self._overlay(chunk, begin)
            out[begin:end] = chunk
        return out.reshape(self.shape)

    def to_payload(self) -> bytes:
        """The layer's payload in a .wl file (docs/FORMAT.md, "Bloomier payload"): the shape and
        dtype are the container directory's, so they are not repeated here."""
        outliers = self.outliers.to_bytes() if self.outliers is not None else None  # stored headless
        return _core.bloomier_payload(self.codebook, self.false_positives, self.filter.to_bytes(), outliers,
                                      list(self.shape))

    @classmethod
    def from_payload(cls, data: bytes | bytearray | memoryview, shape: tuple[int, ...]) -> EncodedLayer:
        """Parse `to_payload` output for a tensor of this shape; ValueError if malformed."""
        from .exact import ExactLayer

        shape = tuple(int(d) for d in shape)
        codebook, false_positives, filter_bytes, outliers = _core.bloomier_split(data, list(shape))  # checks it all
        return cls(shape, codebook, BloomierFilter.from_bytes(filter_bytes), false_positives,
                   ExactLayer(outliers) if outliers is not None else None)

    def to_bytes(self) -> bytes:
        """The standalone layer format of .wl version 1 (WLLY: header, shape, codebook, filter,
        CRC-32; docs/FORMAT.md), which has no outliers section."""
        if self.outliers is not None:
            raise ValueError("to_bytes: the version 1 layer format has no outliers; use to_payload")
        filter_bytes = self.filter.to_bytes()
        body = b"".join(
            [
                _HEADER.pack(_MAGIC, _VERSION, len(self.shape), 0, len(self.codebook), self.false_positives,
                             len(filter_bytes)),
                np.asarray(self.shape, dtype="<u8").tobytes(),
                self.codebook.astype("<f4").tobytes(),
                filter_bytes,
            ]
        )
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> EncodedLayer:
        """Parse `to_bytes` output; anything malformed, truncated or corrupted raises ValueError."""
        data = memoryview(data).cast("B")
        if len(data) < _HEADER.size + 4:
            raise ValueError(f"malformed encoded layer: truncated ({len(data)} bytes)")
        magic, version, ndim, reserved, clusters, false_positives, filter_size = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("malformed encoded layer: bad magic")
        if version != _VERSION:
            raise ValueError(f"malformed encoded layer: unsupported version {version} (this library reads {_VERSION})")
        if ndim > _MAX_NDIM or reserved or clusters > 1 << 16:
            raise ValueError("malformed encoded layer: header fields out of range")
        expected = _HEADER.size + 8 * ndim + 4 * clusters + filter_size + 4
        if len(data) != expected:
            raise ValueError(f"malformed encoded layer: {len(data)} bytes where the header describes {expected}")
        if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
            raise ValueError("malformed encoded layer: checksum mismatch (the data is corrupted)")
        at = _HEADER.size
        shape = tuple(int(d) for d in np.frombuffer(data, dtype="<u8", count=ndim, offset=at))
        at += 8 * ndim
        codebook = np.frombuffer(data, dtype="<f4", count=clusters, offset=at).astype(np.float32)
        at += 4 * clusters
        f = BloomierFilter.from_bytes(data[at : at + filter_size])
        size = math.prod(shape)
        if any(d >= 2**63 for d in shape) or size >= 2**63:
            raise ValueError("malformed encoded layer: shape too large")
        if len(f) > size or false_positives > size - len(f):
            raise ValueError("malformed encoded layer: more kept weights or false positives than positions")
        if clusters > 2**f.value_bits or not np.all(np.isfinite(codebook)):
            raise ValueError("malformed encoded layer: codebook does not match the filter")
        return cls(shape, codebook, f, false_positives)

    def __repr__(self) -> str:
        outliers = f", outliers={self.outliers.kept}" if self.outliers is not None else ""
        return (
            f"EncodedLayer(shape={self.shape}, kept={self.kept}, clusters={len(self.codebook)}, "
            f"cell_bits={self.cell_bits}, false_positives={self.false_positives}{outliers}, nbytes={self.nbytes})"
        )


#: `outliers` of `encode_clustered` / `encode_layer`: "auto" (`choose_outliers` decides), None
#: (no outliers: the filter holds every kept weight), or how many of the largest-|centroid|
#: clusters to store exactly, apart from the filter.
Outliers = Union[Literal["auto"], int, None]

#: "auto" moves only clusters whose |centroid| exceeds this multiple of the kept weights'
#: median magnitude (an outlier, not the tail of a Gaussian or Laplace body), and at most
#: MAX_OUTLIER_FRACTION of the kept weights.
OUTLIER_SCALE = 4.0
MAX_OUTLIER_FRACTION = 0.25
_CELLS_PER_KEY = 1.035  # the default filter layout's cells per key (arity 4, chunked)


def split_outliers(clustered: ClusteredTensor, clusters: int) -> tuple[ClusteredTensor, ClusteredTensor]:
    """(the rest, the outliers): the tensor without its `clusters` largest-|centroid| clusters
    (ties: the larger centroid first), and those clusters' weights alone. Both keep the shape;
    codes are renumbered into each part's codebook, still ascending."""
    k = len(clustered.codebook)
    if not 0 <= clusters <= k:
        raise ValueError(f"outlier clusters must be in 0..{k}, got {clusters}")
    book = clustered.codebook.astype(np.float64)
    order = np.lexsort((-book, -np.abs(book)))  # by |c| descending, then c descending
    out = np.zeros(k, dtype=bool)
    out[order[:clusters]] = True
    number = np.zeros(k, dtype=np.int64)
    number[~out] = np.arange(k - clusters)
    number[out] = np.arange(clusters)
    moved = out[clustered.codes]

    def part(mask: np.ndarray, chosen: np.ndarray) -> ClusteredTensor:
        return ClusteredTensor(clustered.shape, clustered.positions[mask],
                               number[clustered.codes[mask]].astype(clustered.codes.dtype),
                               clustered.codebook[chosen])

    return part(~moved, ~out), part(moved, out)


def _cell_bits_for(clusters: int, cell_bits: int | None, fp_rate: float | None) -> int:
    if cell_bits is not None:
        return cell_bits
    return choose_cell_bits(clusters, DEFAULT_FP_RATE if fp_rate is None else fp_rate)


def choose_outliers(clustered: ClusteredTensor, *, cell_bits: int | None = None, fp_rate: float | None = None,
                    scale: float = OUTLIER_SCALE, max_fraction: float = MAX_OUTLIER_FRACTION) -> int:
    """How many of the largest-|centroid| clusters `outliers="auto"` stores exactly, apart from
    the filter (docs/FALSE_POSITIVES.md).

    A zero weight read back as a false positive takes a centroid of the filter's codebook with
    probability 2^-t each, so the expected false-positive squared error is
    zeros * 2^-t * sum(c^2 over the filter's codebook): one large centroid dominates it. Moving
    the m largest clusters out takes their centroids from the filter (a false positive can only
    be a smaller value; the filter may also need fewer cell bits) and stores their weights in an
    exact layer. The m chosen minimises

        bits(m) + 1.035 * kept * log2(error(m) + ||clustered||^2 / 100)

    with bits(m) the filter's cells (1.035 t per key) plus the exact layer's information bound,
    error(m) the expected false-positive squared error: storage is spent on outliers only where
    it buys more than the same bits spent on the filter's cells would (each cell bit per key
    halves the false positives), and only while the false positives' error is above a relative
    error of about 0.1 (with t = 24 nothing moves). Only clusters whose |centroid| exceeds `scale` times the kept
    weights' median magnitude are candidates (outliers, not the tail of the layer's body: a
    Gaussian layer keeps every cluster in the filter), at most `max_fraction` of the kept weights
    move, and at least one cluster stays in the filter; 0 when there are no zero weights or fewer
    than 2 clusters.
    """
    from .exact import information_bound_bits

    k, n, size = len(clustered.codebook), clustered.kept, clustered.size
    zeros = size - n
    if k < 2 or n == 0 or zeros == 0:
        return 0
    book = clustered.codebook.astype(np.float64)
    order = np.lexsort((-book, -np.abs(book)))
    counts = np.bincount(clustered.codes.astype(np.int64), minlength=k)
    squares = book**2
    floor = float(squares[clustered.codes.astype(np.int64)].sum()) / 100
    typical = float(np.median(np.abs(book[clustered.codes.astype(np.int64)])))
    candidates = int(np.count_nonzero(np.abs(book) > scale * typical))
    best, best_cost = 0, math.inf
    moved = 0
    for m in range(min(candidates, k - 1) + 1):
        if m:
            moved += int(counts[order[m - 1]])
            if moved > max_fraction * n:
                break
        t = _cell_bits_for(k - m, cell_bits, fp_rate)
        error = zeros * 2.0**-t * float(squares[order[m:]].sum())
        bits = _CELLS_PER_KEY * t * (n - moved)
        if m:
            out = np.isin(clustered.codes, order[:m])
            bits += information_bound_bits(size, clustered.codes[out]) + 8 * (4 * m + 24)  # codebook, header
        cost = bits + _CELLS_PER_KEY * n * math.log2(error + floor + 1e-300)
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def _outlier_count(clustered: ClusteredTensor, outliers: Outliers, cell_bits: int | None,
                   fp_rate: float | None) -> int:
    if outliers is None:
        return 0
    if isinstance(outliers, str):
        if outliers != "auto":
            raise ValueError(f'outliers must be "auto", None or a number of clusters, got {outliers!r}')
        return choose_outliers(clustered, cell_bits=cell_bits, fp_rate=fp_rate)
    if isinstance(outliers, bool) or not isinstance(outliers, (int, np.integer)) or \
            not 0 <= int(outliers) < max(len(clustered.codebook), 1):
        raise ValueError(f"outliers must be \"auto\", None or a number of clusters in "
                         f"0..{max(len(clustered.codebook) - 1, 0)}, got {outliers!r}")
    return int(outliers)


def encode_clustered(
    clustered: ClusteredTensor,
    *,
    cell_bits: int | None = None,
    fp_rate: float | None = None,
    seed: int = 0,
    arity: int = 4,
    piece_keys: int | None = None,
    block_keys: int | None = None,
    threads: int | None = None,
    outliers: Outliers = "auto",
) -> EncodedLayer:
    """Store a pruned, clustered tensor in a Bloomier filter (arguments as for `encode_layer`).

    With outliers (`outliers="auto"`: `choose_outliers`; or a number of clusters), the largest-
    |centroid| clusters' weights are stored exactly in `EncodedLayer.outliers` and the filter
    holds the rest, its codebook only the remaining centroids (t is chosen for those when
    cell_bits is not given). Outlier positions are not keys of the filter; decoding overwrites
    them with their values.
    """
    if cell_bits is not None and fp_rate is not None:
        raise ValueError("give cell_bits or fp_rate, not both")
    whole = clustered
    moved = _outlier_count(clustered, outliers, cell_bits, fp_rate)
    exact_part = None
    if moved:
        from .exact import encode_clustered as encode_exact_clustered

        clustered, rest = split_outliers(whole, moved)
        exact_part = encode_exact_clustered(rest.positions, rest.codes, rest.shape, rest.codebook)
    k = len(clustered.codebook)
    r = value_bits_for(k)
    if cell_bits is None:
        cell_bits = choose_cell_bits(k, DEFAULT_FP_RATE if fp_rate is None else fp_rate)
    elif not r <= cell_bits <= 32:
        raise ValueError(f"cell_bits must be in [{r}, 32] for {k} clusters, got {cell_bits}")
    threads = _threads(threads)
    f = BloomierFilter(clustered.positions.astype(np.uint64), clustered.codes, value_bits=r, cell_bits=cell_bits,
                       seed=seed, arity=arity, piece_keys=piece_keys, block_keys=block_keys, threads=threads)
    false_positives = f.count_decoded(clustered.size, k, threads=threads) - clustered.kept
    if exact_part is not None:  # what the filter decodes at outlier positions is overwritten
        values = f.lookup(rest.positions.astype(np.uint64))
        false_positives -= int(np.count_nonzero((values >= 0) & (values < k)))
    return EncodedLayer(whole.shape, clustered.codebook, f, false_positives, exact_part)


def encode_layer(
    weights: ArrayLike,
    *,
    sparsity: float | None = None,
    threshold: float | None = None,
    clusters: int = 16,
    cell_bits: int | None = None,
    fp_rate: float | None = None,
    seed: int = 0,
    init: str = "density",
    arity: int = 4,
    piece_keys: int | None = None,
    block_keys: int | None = None,
    threads: int | None = None,
    outliers: Outliers = "auto",
) -> EncodedLayer:
    """Prune, cluster and encode a float tensor of any rank.

    Args:
        weights: float array (a conv kernel is encoded on its flattened positions).
        sparsity / threshold: magnitude pruning (`weightless.prune.prune_mask`); neither keeps
            every nonzero weight.
        clusters: k-means clusters for weight sharing (1-D, density-based initialisation).
        cell_bits: bits per filter cell t; or
        fp_rate: the expected fraction of zero weights read back as nonzero, from which t is
            chosen (`choose_cell_bits`). With neither, fp_rate = DEFAULT_FP_RATE.
        seed: seeds clustering and the filter; the result is a deterministic function of it.
        init: k-means initialisation, "density" (the paper's), "linear" or "random".
        arity, piece_keys, block_keys: filter layout (`BloomierFilter`): 4 cells per key in
            chunks of ~1024 keys solved by Gaussian elimination (format v3, ~1.035 cells per
            key); arity 3 needs ~1.11; piece_keys / block_keys ask for the older peeled "fuse"
            layout (format v2; docs/RETRIEVAL.md).
        threads: for building and counting; the result does not depend on it.
        outliers: "auto" (default) stores the largest-|centroid| clusters exactly, apart from
            the filter, where that reduces the false positives' error by more than the same
            bytes spent on cell bits would (`choose_outliers`; docs/FALSE_POSITIVES.md), so a
            false positive can only take a small value; a number forces that many clusters;
            None stores every kept weight in the filter (the encoding of earlier versions).

    The same as `encode_clustered(prune_and_cluster(weights, ...), ...)`.
    """
    w = np.asarray(weights)
    if w.dtype == np.bool_ or not np.issubdtype(w.dtype, np.floating):
        raise TypeError(f"encode_layer expects a float tensor, got dtype {w.dtype}")
    if cell_bits is not None and fp_rate is not None:
        raise ValueError("give cell_bits or fp_rate, not both")
    clustered = prune_and_cluster(w, sparsity=sparsity, threshold=threshold, clusters=clusters, seed=seed, init=init)
    return encode_clustered(clustered, cell_bits=cell_bits, fp_rate=fp_rate, seed=seed, arity=arity,
                            piece_keys=piece_keys, block_keys=block_keys, threads=threads, outliers=outliers)
