"""`BloomierFilter`: the generic retrieval structure of the C++ core, with numpy in and out."""

from __future__ import annotations

import operator
import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _core

__all__ = ["BloomierFilter"]


def _as_index(name: str, value: Any) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None


def _threads(threads: int | None) -> int:
    threads = (os.cpu_count() or 1) if threads is None else _as_index("threads", threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return threads


def _as_unsigned_array(name: str, array: object, dtype: type, limit: int | None = None) -> np.ndarray:
    """A 1-D contiguous array of `dtype`, refusing any conversion that would change a value."""
    a = np.asarray(array)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        if a.size == 0:
            return np.empty(0, dtype=dtype)  # an empty list arrives as float64
        raise TypeError(f"{name} must be an array of unsigned integers, got dtype {a.dtype}")
    if a.size:
        if np.issubdtype(a.dtype, np.signedinteger) and a.min() < 0:
            raise ValueError(f"{name} must be non-negative, got {a.min()}")
        if limit is not None and int(a.max()) >= limit:
            raise ValueError(f"{name} must be < {limit}, got {a.max()} at index {int(a.argmax())}")
    return np.ascontiguousarray(a, dtype=dtype)


_LAYOUTS = {"chunked": 3, "fuse": 2}  # layout -> format version


class BloomierFilter:
    """A static map from distinct 64-bit keys to `value_bits`-bit values in `cell_bits`-bit cells.

    A stored key reads back its value exactly. Any other key reads a random `cell_bits`-bit word
    and is reported absent (-1) unless the word's top `cell_bits - value_bits` bits are zero: a
    false positive, with probability ``2 ** (value_bits - cell_bits)``, which returns some value
    in ``[0, 2 ** value_bits)``. The table takes about 1.035 * len(keys) * cell_bits bits with the
    default (chunked) layout and 4 cells per key.

    Parameters
    ----------
    keys : array of unsigned integers (uint64, distinct)
    values : array of unsigned integers < 2 ** value_bits, same length as keys
    value_bits : int, 1..16
    cell_bits : int, value_bits..32
    seed : int, the build is a deterministic function of keys, values, options and seed
    arity : 4 (default) or 3 cells per key. Chunked layout: 4 needs ~1.035 cells per key, 3 ~1.11;
        fuse layout: 3 needs ~1.13 at 1M keys (much more for small n), 4 ~1.08
    layout : "chunked" (format version 3): chunks of ~chunk_keys consecutive keys, each solved by
        Gaussian elimination over GF(2); or "fuse" (format version 2): binary fuse pieces built by
        peeling, about 2x faster to build and larger (docs/RETRIEVAL.md). Default: "fuse" if
        piece_keys or block_keys is given, else "chunked"
    chunk_keys : chunked layout: keys per chunk (default: the measured default, 1024; at most 32768)
    piece_keys : fuse layout: keys per independently built piece (default: the measured default)
    block_keys : fuse layout: keys per block, the stretch of keys whose cells share one slice of the
        table, so that decoding consecutive keys reads a small, cache-resident part of it
        (default: the measured default; at least 64)
    threads : threads for construction (default: all cores); the result does not depend on it

    Bad input raises ValueError (TypeError for non-integer arrays) naming the problem.
    """

    __slots__ = ("_filter",)

    def __init__(
        self,
        keys: ArrayLike,
        values: ArrayLike,
        *,
        value_bits: int,
        cell_bits: int,
        seed: int = 0,
        arity: int = 4,
        piece_keys: int | None = None,
        block_keys: int | None = None,
        threads: int | None = None,
        layout: str | None = None,
        chunk_keys: int | None = None,
    ) -> None:
        if layout is None:  # piece_keys or block_keys ask for the fuse layout, which has pieces and blocks
            layout = "fuse" if piece_keys is not None or block_keys is not None else "chunked"
        if layout not in _LAYOUTS:
            raise ValueError(f"layout must be 'chunked' or 'fuse', got {layout!r}")
        if layout == "chunked" and (piece_keys is not None or block_keys is not None):
            raise ValueError("piece_keys and block_keys apply to layout='fuse'; the chunked layout takes chunk_keys")
        if layout == "fuse" and chunk_keys is not None:
            raise ValueError("chunk_keys applies to layout='chunked'")
        if chunk_keys is None:
            chunk_keys = 0  # the core's default
        else:
            chunk_keys = _as_index("chunk_keys", chunk_keys)
            if not 1 <= chunk_keys <= 32768:
                raise ValueError(f"chunk_keys must be in [1, 32768], got {chunk_keys}")
        value_bits = _as_index("value_bits", value_bits)
        cell_bits = _as_index("cell_bits", cell_bits)
        if not 1 <= value_bits <= 16:
            raise ValueError(f"value_bits must be in [1, 16], got {value_bits}")
        if not value_bits <= cell_bits <= 32:
            raise ValueError(f"cell_bits must be in [value_bits, 32] = [{value_bits}, 32], got {cell_bits}")
        seed = _as_index("seed", seed)
        if not 0 <= seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        piece_keys = 0 if piece_keys is None else _as_index("piece_keys", piece_keys)
        if piece_keys < 0:
            raise ValueError(f"piece_keys must be positive, got {piece_keys}")
        if block_keys is None:
            block_keys = 0  # the core's default
        else:
            block_keys = _as_index("block_keys", block_keys)
            if block_keys < 64:
                raise ValueError(f"block_keys must be at least 64, got {block_keys}")
        threads = _threads(threads)
        keys = _as_unsigned_array("keys", keys, np.uint64)
        values = _as_unsigned_array("values", values, np.uint32, limit=2**value_bits)
        if len(keys) != len(values):
            raise ValueError(f"keys and values differ in length: {len(keys)} vs {len(values)}")
        self._filter = _core.Filter.build(
            keys, values, value_bits, cell_bits, seed, _as_index("arity", arity), piece_keys, block_keys, threads,
            _LAYOUTS[layout], chunk_keys
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | np.ndarray) -> BloomierFilter:
        """Parse a filter serialized by `to_bytes`; malformed, truncated or corrupted data raises ValueError."""
        if isinstance(data, np.ndarray):
            buffer = np.ascontiguousarray(data).view(np.uint8).reshape(-1).data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            buffer = memoryview(data)
        else:
            raise TypeError(f"from_bytes expects bytes, got {type(data).__name__}")
        self = cls.__new__(cls)
        self._filter = _core.Filter.from_bytes(buffer.cast("B"))
        return self

    def to_bytes(self) -> bytes:
        """The serialized filter (docs/FORMAT.md): versioned, little-endian, CRC-32 checked."""
        return self._filter.to_bytes()

    def lookup(self, keys: ArrayLike) -> np.ndarray:
        """int64 array: each key's value, or -1 where the key is detected as absent."""
        return self._filter.query_values(_as_unsigned_array("keys", keys, np.uint64)).astype(np.int64)

    def lookup_range(self, start: int, stop: int) -> np.ndarray:
        """`lookup` of every key in [start, stop), as the decoder of a layer evaluates positions."""
        start, stop = _as_index("start", start), _as_index("stop", stop)
        if not 0 <= start <= stop < 2**64:
            raise ValueError(f"need 0 <= start <= stop < 2**64, got start={start}, stop={stop}")
        return self._filter.decode_range(start, stop).astype(np.int64)

    def raw(self, keys: ArrayLike) -> np.ndarray:
        """uint32 array: the raw `cell_bits`-bit word each key reads."""
        return self._filter.query_raw(_as_unsigned_array("keys", keys, np.uint64))

    @property
    def nbytes(self) -> int:
        """Size of the serialized filter in bytes."""
        return self._filter.nbytes

    @property
    def num_cells(self) -> int:
        return self._filter.num_cells

    @property
    def layout(self) -> str:
        """"chunked" (format version 3) or "fuse" (versions 1 and 2)."""
        return "chunked" if self._filter.version == 3 else "fuse"

    @property
    def num_pieces(self) -> int:
        """Pieces (fuse layout) or chunks (chunked layout)."""
        return self._filter.num_pieces

    @property
    def num_blocks(self) -> int:
        return self._filter.num_blocks

    @property
    def cell_bits(self) -> int:
        return self._filter.cell_bits

    @property
    def value_bits(self) -> int:
        return self._filter.value_bits

    @property
    def arity(self) -> int:
        return self._filter.arity

    @property
    def seed(self) -> int:
        return self._filter.seed

    @property
    def false_positive_rate(self) -> float:
        """Expected fraction of absent keys read as present: 2 ** (value_bits - cell_bits)."""
        return 2.0 ** (self.value_bits - self.cell_bits)

    def decode_weights(self, size: int, codebook: ArrayLike, *, threads: int | None = None,
                       out: np.ndarray | None = None) -> np.ndarray:
        """The layer whose positions are the keys 0 .. size - 1: codebook[v] where a position
        reads a value v < len(codebook), 0.0 elsewhere, as a float32 array of `size` elements.

        `out`, if given, is a writeable C-contiguous float32 array of `size` elements that receives
        the result (and is returned): decoding into a buffer already written skips the page
        faults of a fresh one, a large part of the time for a large layer. `threads` defaults to
        all cores; the result does not depend on it.
        """
        size = _as_index("size", size)
        if size < 0:
            raise ValueError(f"size must be non-negative, got {size}")
        book = np.ascontiguousarray(codebook, dtype=np.float32)
        if book.ndim != 1:
            raise ValueError(f"codebook must be 1-D, got shape {book.shape}")
        threads = _threads(threads)
        if out is None:
            return self._filter.decode_weights(size, book, threads)
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous float32 numpy array")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
        if out.size != size:
            raise ValueError(f"out has {out.size} elements, the layer {size}")
        self._filter.decode_weights_into(out, book, threads)
        return out

    def count_decoded(self, size: int, codebook_size: int, *, threads: int | None = None) -> int:
        """How many of the positions 0 .. size - 1 read a value below codebook_size (the kept
        weights plus the false positives), without materializing the layer."""
        size, codebook_size = _as_index("size", size), _as_index("codebook_size", codebook_size)
        if size < 0 or codebook_size < 0:
            raise ValueError(f"size and codebook_size must be non-negative, got {size} and {codebook_size}")
        return self._filter.count_decoded(size, min(codebook_size, 1 << 16), _threads(threads))

    def __len__(self) -> int:
        return self._filter.num_keys

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (BloomierFilter.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        return (
            f"BloomierFilter(keys={len(self)}, value_bits={self.value_bits}, cell_bits={self.cell_bits}, "
            f"arity={self.arity}, layout={self.layout!r}, "
            f"{'chunks' if self.layout == 'chunked' else 'pieces'}={self.num_pieces}, nbytes={self.nbytes})"
        )
