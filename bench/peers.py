"""Peer filters for the build benchmarks.

pyfusefilter's own classes hash every key through xxhash in a Python loop,
which would make the comparison about CPython, not about construction.
So we skip them and call xor_singleheader's C functions directly through the
package's cffi module, handing the whole numpy key array over as one pointer.

    fuse8_build(keys)       allocate + populate; the closest match to
                            ``weightless.BloomierFilter(...)``, which also
                            allocates its cell array.
    Fuse8Peer.allocate(n)   allocate only, then time ``peer.populate(keys)``
                            for the populate-only cost.
"""

import numpy as np
from pyfusefilter._xorfilter import ffi, lib


class Fuse8Peer:
    """One ``binary_fuse8_t`` from xor_singleheader (8-bit fingerprints)."""

    def __init__(self, struct):
        self._f = struct

    @classmethod
    def allocate(cls, n: int) -> "Fuse8Peer":
        if not 0 < n < 2**32:  # populate takes a uint32_t size
            raise ValueError(f"binary_fuse8 needs 0 < n < 2**32, got {n}")
        struct = ffi.new("binary_fuse8_t *")
        if not lib.binary_fuse8_allocate(n, struct):
            raise MemoryError(f"binary_fuse8_allocate({n}) failed")
        # The fingerprint array is malloc'd by C, so free it when this
        # object dies, like the weightless filter drops its cells.
        return cls(ffi.gc(struct, lib.binary_fuse8_free))

    def populate(self, keys: np.ndarray) -> None:
        """Build over ``keys`` (distinct, C-contiguous uint64, length n)."""
        if keys.dtype != np.uint64 or not keys.flags.c_contiguous:
            # No silent copy: it would be timed along with the build.
            raise TypeError("keys must be a C-contiguous uint64 array")
        if len(keys) != self._f.Size:
            raise ValueError(f"filter was allocated for {self._f.Size} keys, got {len(keys)}")
        # Zero-copy view of the numpy buffer; populate only reads it.
        ptr = ffi.from_buffer("uint64_t[]", keys)
        if not lib.binary_fuse8_populate(ptr, len(keys), self._f):
            raise RuntimeError(
                f"binary_fuse8_populate failed for {len(keys)} keys "
                "(out of memory, or no valid seed found within its retry limit)"
            )

    def contains(self, key: int) -> bool:
        return bool(lib.binary_fuse8_contain(key, self._f))

    @property
    def array_length(self) -> int:
        """Number of 8-bit fingerprint cells."""
        return self._f.ArrayLength

    @property
    def nbytes(self) -> int:
        """Fingerprint bytes only, comparable to weightless ``nbytes``."""
        return self._f.ArrayLength

    def bits_per_key(self) -> float:
        return self._f.ArrayLength * 8 / self._f.Size


def fuse8_build(keys: np.ndarray) -> Fuse8Peer:
    """Allocate and populate a binary fuse8 filter over ``keys``.

    Freeing happens when the returned object is dropped.
    """
    peer = Fuse8Peer.allocate(len(keys))
    peer.populate(keys)
    return peer
