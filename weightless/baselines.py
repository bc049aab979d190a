"""Storage cost of the formats a user would otherwise pick for a pruned, clustered matrix.

Every function takes the same description of one weight matrix:

* ``positions``: strictly increasing int flat (row-major) indices of the kept
  weights in a matrix of ``shape``;
* ``codes``: the cluster index (0..num_clusters-1) of each kept weight;
* ``num_clusters``: size of the float32 codebook;
* ``shape``: the matrix shape (any number of dimensions; for CSR, all but the
  last are flattened into rows).

and returns byte counts, the numerator of a compression factor whose
denominator is :func:`dense_float32_nbytes`. No container header (shape, entry
count) is counted for any format; it is a few bytes either way.

Only numpy, heapq and (lazily, for :func:`csr_zstd_nbytes`) zstandard are used.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

__all__ = [
    "huffman_code_lengths",
    "huffman_bits",
    "relative_index_stream",
    "deep_compression_nbytes",
    "csr_arrays",
    "csr_zstd_blob",
    "csr_zstd_nbytes",
    "dense_float32_nbytes",
]


def dense_float32_nbytes(shape: tuple[int, ...]) -> int:
    """Bytes of the uncompressed float32 matrix: 4 * number of elements."""
    return 4 * math.prod(int(d) for d in shape)


def _check_inputs(
    positions: np.ndarray, codes: np.ndarray, num_clusters: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, int]:
    size = math.prod(int(d) for d in shape)
    if any(int(d) < 0 for d in shape):
        raise ValueError(f"shape must have non-negative dimensions, got {tuple(shape)}")
    pos = np.asarray(positions)
    cod = np.asarray(codes)
    if pos.ndim != 1 or cod.ndim != 1:
        raise ValueError("positions and codes must be 1-D arrays")
    if pos.shape != cod.shape:
        raise ValueError(f"positions ({pos.shape[0]}) and codes ({cod.shape[0]}) differ in length")
    if pos.size and not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"positions must be integers, got dtype {pos.dtype}")
    if cod.size and not np.issubdtype(cod.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {cod.dtype}")
    pos = pos.astype(np.int64, copy=False)
    cod = cod.astype(np.int64, copy=False)
    if num_clusters < 0:
        raise ValueError(f"num_clusters must be >= 0, got {num_clusters}")
    if pos.size:
        if np.any(np.diff(pos) <= 0):
            raise ValueError("positions must be strictly increasing (sorted, no duplicates)")
        if pos[0] < 0 or pos[-1] >= size:
            raise ValueError(f"positions must lie in [0, {size}) for shape {tuple(shape)}")
        if cod.min() < 0 or cod.max() >= num_clusters:
            raise ValueError(f"codes must lie in [0, {num_clusters})")
    return pos, cod, size


# --------------------------------------------------------------------------- Huffman


def huffman_code_lengths(freqs: np.ndarray) -> np.ndarray:
    """Optimal (Huffman) code length in bits for each symbol of a frequency table.

    Standard algorithm: repeatedly merge the two lightest trees (heapq, ties
    broken by creation order so the result is deterministic); a symbol's length
    is its leaf depth. Symbols with frequency 0 get length 0. A stream with a
    single distinct symbol still needs 1 bit per symbol to be decodable.
    """
    f = np.asarray(freqs, dtype=np.int64)
    lengths = np.zeros(f.shape[0], dtype=np.int64)
    used = np.flatnonzero(f > 0)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    # Nodes 0..m-1 are the leaves, internal nodes are appended; parent ids are
    # always larger than child ids, so depths follow in one reverse sweep.
    m = used.size
    parent = np.full(2 * m - 1, -1, dtype=np.int64)
    heap = [(int(f[s]), node) for node, s in enumerate(used)]
    heapq.heapify(heap)
    nxt = m
    while len(heap) > 1:
        wa, a = heapq.heappop(heap)
        wb, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (wa + wb, nxt))
        nxt += 1
    depth = np.zeros(2 * m - 1, dtype=np.int64)
    for node in range(2 * m - 3, -1, -1):  # root (2m-2) has depth 0
        depth[node] = depth[parent[node]] + 1
    lengths[used] = depth[:m]
    return lengths


def huffman_bits(symbols: np.ndarray, alphabet_size: int) -> int:
    """Total bits of the Huffman-coded stream ``symbols`` (ints in [0, alphabet_size))."""
    freqs = np.bincount(np.asarray(symbols, dtype=np.int64), minlength=alphabet_size)
    return int(np.dot(freqs, huffman_code_lengths(freqs)))


# --------------------------------------------------------------------------- Deep Compression


def relative_index_stream(
    positions: np.ndarray, codes: np.ndarray, num_clusters: int, *, index_bits: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """The (index symbol, value symbol) streams Deep Compression stores, fillers included.

    Walking the flattened matrix, each stored entry records how many zeros
    were skipped since the previous stored entry (the first entry counts from
    the start of the matrix): ``gap_i = positions[i] - positions[i-1] - 1``
    with ``positions[-1] = -1``. That number is stored in ``index_bits`` bits,
    so it must be at most ``M - 1`` with ``M = 2**index_bits``; equivalently,
    consecutive stored entries are at most ``M`` positions apart (Han et al.
    2016, Fig. 2: a 3-bit index spans 8). A longer run of zeros is bridged by
    ``gap // M`` filler entries, each placed ``M`` positions after the previous
    entry (index symbol ``M - 1``) and holding the value "zero", which gets its
    own value symbol ``num_clusters``. The real entry then stores ``gap % M``.

    Returns:
        ``(index_symbols, value_symbols)``, equal-length int64 arrays.
    """
    if not 1 <= index_bits <= 16:
        raise ValueError(f"index_bits must be in 1..16, got {index_bits}")
    pos = np.asarray(positions, dtype=np.int64)
    cod = np.asarray(codes, dtype=np.int64)
    span = 1 << index_bits
    gaps = np.diff(pos, prepend=-1) - 1
    fillers = gaps // span
    reps = fillers + 1
    # Each real entry is preceded by its fillers: entry i occupies slots
    # [start_i, start_i + fillers_i], the real one last.
    total = int(reps.sum())
    last = np.cumsum(reps) - 1
    index_symbols = np.full(total, span - 1, dtype=np.int64)
    value_symbols = np.full(total, num_clusters, dtype=np.int64)
    index_symbols[last] = gaps % span
    value_symbols[last] = cod
    return index_symbols, value_symbols


def deep_compression_nbytes(
    positions: np.ndarray,
    codes: np.ndarray,
    num_clusters: int,
    shape: tuple[int, ...],
    *,
    index_bits: int = 5,
) -> dict[str, int]:
    """Storage of a layer in the Deep Compression format (Han et al. 2016: prune + quantise + Huffman).

    The kept weights are stored as a stream of entries in row-major order
    (see :func:`relative_index_stream` for gaps and fillers). Each entry holds
    an ``index_bits`` relative index and a value symbol (cluster code, or the
    extra "zero" symbol of a filler). The two symbol streams are then Huffman
    coded separately, as in the paper.

    Returned keys (sizes in bytes unless the name says bits):
        entries: stored entries, fillers included.
        fillers: filler entries.
        index_bits_huffman / value_bits_huffman: Huffman-coded stream sizes in bits.
        index_bytes_huffman / value_bytes_huffman: the same, each rounded up to bytes.
        codebook_bytes: ``num_clusters * 4`` (float32 centroids).
        huffman_tables_bytes: one code-length byte per alphabet symbol, which
            is what a canonical Huffman decoder needs: ``2**index_bits``
            for the index stream + ``num_clusters + 1`` for the value stream.
        total: index + value streams + codebook + tables.
        total_no_huffman: fixed-width entries, ``entries * (index_bits +
            ceil(log2(num_clusters + 1)))`` bits rounded up, + codebook (the
            "P+Q" size, before Huffman coding).
    """
    pos, cod, _ = _check_inputs(positions, codes, num_clusters, shape)
    idx_sym, val_sym = relative_index_stream(pos, cod, num_clusters, index_bits=index_bits)
    span = 1 << index_bits
    entries = int(idx_sym.shape[0])
    index_bits_huff = huffman_bits(idx_sym, span)
    value_bits_huff = huffman_bits(val_sym, num_clusters + 1)
    codebook_bytes = 4 * num_clusters
    tables = span + num_clusters + 1
    index_bytes = -(-index_bits_huff // 8)
    value_bytes = -(-value_bits_huff // 8)
    value_width = max(1, math.ceil(math.log2(num_clusters + 1)))
    return {
        "entries": entries,
        "fillers": entries - int(pos.shape[0]),
        "index_bits_huffman": index_bits_huff,
        "value_bits_huffman": value_bits_huff,
        "index_bytes_huffman": index_bytes,
        "value_bytes_huffman": value_bytes,
        "codebook_bytes": codebook_bytes,
        "huffman_tables_bytes": tables,
        "total": index_bytes + value_bytes + codebook_bytes + tables,
        "total_no_huffman": -(-entries * (index_bits + value_width) // 8) + codebook_bytes,
    }


# --------------------------------------------------------------------------- CSR + zstd


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    cols = int(shape[-1])
    return math.prod(int(d) for d in shape[:-1]), cols


def csr_arrays(
    positions: np.ndarray, codes: np.ndarray, num_clusters: int, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """The plain CSR arrays a user would save for the pruned, clustered matrix.

    * ``indptr``: int32, rows + 1 entries (row start offsets);
    * ``indices``: column index per kept weight, uint16 when cols <= 65536,
      else int32;
    * ``codes``: cluster index per kept weight, uint8 when num_clusters <= 256,
      else uint16.
    """
    pos, cod, _ = _check_inputs(positions, codes, num_clusters, shape)
    rows, cols = _rows_cols(shape)
    row_of = pos // max(cols, 1)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of, minlength=rows), out=indptr[1:])
    return {
        "indptr": indptr.astype(np.int32),
        "indices": (pos % max(cols, 1)).astype(np.uint16 if cols <= 65536 else np.int32),
        "codes": cod.astype(np.uint8 if num_clusters <= 256 else np.uint16),
    }


def csr_zstd_blob(
    positions: np.ndarray,
    codes: np.ndarray,
    num_clusters: int,
    shape: tuple[int, ...],
    *,
    level: int = 19,
    codebook: np.ndarray | None = None,
) -> tuple[bytes, int]:
    """zstd-compressed concatenation ``indptr | indices | codes [| codebook]`` and its raw length.

    Arrays are little-endian, in the dtypes of :func:`csr_arrays`; the
    codebook, if given, is appended as float32.
    """
    import zstandard  # optional dependency: only this baseline needs it

    arrays = csr_arrays(positions, codes, num_clusters, shape).values()
    parts = [a.astype(a.dtype.newbyteorder("<"), copy=False) for a in arrays]
    if codebook is not None:
        cb = np.asarray(codebook, dtype="<f4")
        if cb.shape != (num_clusters,):
            raise ValueError(f"codebook must have shape ({num_clusters},), got {cb.shape}")
        parts.append(cb)
    raw = b"".join(p.tobytes() for p in parts)
    return zstandard.ZstdCompressor(level=level).compress(raw), len(raw)


def csr_zstd_nbytes(
    positions: np.ndarray,
    codes: np.ndarray,
    num_clusters: int,
    shape: tuple[int, ...],
    *,
    level: int = 19,
    codebook: np.ndarray | None = None,
) -> dict[str, Any]:
    """Size of the plain CSR arrays (see :func:`csr_arrays`) plus codebook, compressed with zstd.

    If ``codebook`` (float32 centroids) is given it is compressed together with
    the arrays; otherwise its ``4 * num_clusters`` bytes are counted raw, which
    is what zstd achieves on a handful of float32 centroids anyway.

    Returned keys (bytes): ``indptr_bytes``, ``indices_bytes``, ``codes_bytes``,
    ``codebook_bytes``, ``raw`` (all of them uncompressed), ``compressed``
    (the zstd frame), ``total`` (what is stored: the frame, plus the codebook
    when it was not inside it), and ``level``.
    """
    arrays = csr_arrays(positions, codes, num_clusters, shape)
    blob, _ = csr_zstd_blob(positions, codes, num_clusters, shape, level=level, codebook=codebook)
    codebook_bytes = 4 * num_clusters
    return {
        "indptr_bytes": arrays["indptr"].nbytes,
        "indices_bytes": arrays["indices"].nbytes,
        "codes_bytes": arrays["codes"].nbytes,
        "codebook_bytes": codebook_bytes,
        "raw": sum(a.nbytes for a in arrays.values()) + codebook_bytes,
        "compressed": len(blob),
        "total": len(blob) + (0 if codebook is not None else codebook_bytes),
        "level": level,
    }
