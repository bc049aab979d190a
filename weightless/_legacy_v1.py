"""LEGACY, read only: .wl files of container version 1 (a JSON header, 8-byte aligned blobs and
a file CRC-32; docs/FORMAT.md, "The model container, version 1 (legacy)").

Version 3 files are read and written by the C++ core (csrc/model/container.h) through
`weightless.container`; this module exists only so that files written before version 3 still
open, decompress and inspect. Nothing writes version 1 any more.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from typing import Any, NoReturn

from .dtypes import ITEMSIZE

PREAMBLE = struct.Struct("<4sHHQ")  # magic, version, reserved, header length
_ALIGN = 8  # the data area and every blob start at multiples of 8 bytes of the file
_CRC = struct.Struct("<I")
_MAX_NDIM = 64
_MAX_FILTER_CLUSTERS = 1 << 16


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _reject_constant(token: str) -> NoReturn:
    raise ValueError(f"{token} is not a valid JSON number here")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key in a JSON object")
    return dict(pairs)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class V1File:
    """The header of a version-1 file, checked; blobs read on demand.

    `entries` are (name, kind, dtype, shape, offset, length, crc32, fields) with `fields` the
    entry's JSON object (statistics and measurements, checked by the caller's entry parser).
    """

    def __init__(self, path: str, f: io.BufferedReader, size: int, malformed: Any, raw_dtypes: tuple[str, ...],
                 encoded_dtypes: tuple[str, ...]):
        self.path, self._file, self._malformed = path, f, malformed
        f.seek(0)
        preamble = f.read(PREAMBLE.size)
        if len(preamble) < PREAMBLE.size:
            raise malformed(f"truncated ({size} bytes)")
        _, _, reserved, header_len = PREAMBLE.unpack(preamble)
        if reserved:
            raise malformed("reserved field is not zero")
        # Sizes are checked against the file before anything is allocated for them.
        if header_len > size - PREAMBLE.size - _CRC.size:
            raise malformed(f"truncated (header of {header_len} bytes in a {size}-byte file)")
        if (PREAMBLE.size + header_len) % _ALIGN:
            raise malformed("the data area is not 8-byte aligned")
        raw_header = f.read(header_len)
        self.data_start = PREAMBLE.size + header_len
        self._verify_checksum(preamble + raw_header, size)
        try:
            header = json.loads(raw_header.decode("utf-8"), parse_constant=_reject_constant,
                                object_pairs_hook=_unique_keys)
            if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
                raise ValueError("the header has no tensor list")
            self.entries = [self._parse_entry(e, i, raw_dtypes, encoded_dtypes)
                            for i, e in enumerate(header["tensors"])]
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise malformed(f"bad header ({e})") from None
        self._check_layout(size)
        self.metadata: dict[str, Any] = {k: v for k, v in header.items() if k != "tensors"}

    def _verify_checksum(self, head: bytes, size: int) -> None:
        # Streamed, so checking a large file does not hold it in memory.
        crc = zlib.crc32(head)
        remaining = size - len(head) - _CRC.size
        while remaining > 0:
            chunk = self._file.read(min(remaining, 1 << 20))
            if not chunk:
                raise self._malformed("the file changed while it was read")
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
        stored = self._file.read(_CRC.size)
        if len(stored) != _CRC.size or _CRC.unpack(stored)[0] != crc:
            raise self._malformed("checksum mismatch (the file is truncated or corrupted)")

    @staticmethod
    def _parse_entry(e: Any, i: int, raw_dtypes: tuple[str, ...], encoded_dtypes: tuple[str, ...]) -> tuple:
        if not isinstance(e, dict):
            raise ValueError(f"tensor #{i} is not a JSON object")
        name = e.get("name")
        if not isinstance(name, str):
            raise ValueError(f"tensor #{i} has no name")
        where = f"tensor {name!r}"
        kind, dtype, shape = e.get("kind"), e.get("dtype"), e.get("shape")
        if kind not in ("raw", "encoded", "exact"):
            raise ValueError(f"{where}: unknown kind {kind!r}")
        if not isinstance(dtype, str) or dtype not in (raw_dtypes if kind == "raw" else encoded_dtypes):
            raise ValueError(f"{where}: dtype {dtype!r} is not allowed for a {kind} tensor")
        if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
            raise ValueError(f"{where}: bad shape {shape!r}")
        ints: dict[str, int] = {}
        statistics = {"raw": (), "encoded": ("kept", "clusters", "cell_bits", "false_positives"),
                      "exact": ("kept", "clusters")}[kind]
        for key in ("offset", "length", "crc32", *statistics):
            v = e.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{where}: {key} must be a non-negative integer, got {v!r}")
            ints[key] = v
        if ints["crc32"] >= 1 << 32:
            raise ValueError(f"{where}: crc32 out of range")
        if kind != "raw" and not isinstance(e.get("options"), dict):
            raise ValueError(f"{where}: options must be a JSON object")
        return name, kind, dtype, tuple(shape), ints["offset"], ints["length"], ints["crc32"], e

    def _check_layout(self, size: int) -> None:
        # Blobs follow each other in tensor order, each at the next aligned offset, so offsets
        # cannot overlap, leave holes or point outside the data area.
        names: set[str] = set()
        expected = 0
        for name, kind, dtype, shape, offset, length, _, e in self.entries:
            if name in names:
                raise self._malformed(f"tensor {name!r} appears twice")
            names.add(name)
            if offset != expected:
                raise self._malformed(f"tensor {name!r} starts at {offset}, expected {expected}")
            numel = math.prod(shape)
            if kind == "raw" and numel * ITEMSIZE[dtype] != length:
                raise self._malformed(f"tensor {name!r}: {length} bytes for shape {shape} of {dtype}")
            if kind == "encoded" and (e["kept"] + e["false_positives"] > numel or e["clusters"] > _MAX_FILTER_CLUSTERS
                                      or not 1 <= e["cell_bits"] <= 32):
                raise self._malformed(f"tensor {name!r}: encoding statistics out of range")
            if kind == "exact" and e["kept"] > numel:
                raise self._malformed(f"tensor {name!r}: encoding statistics out of range")
            expected = _align(offset + length)
        data_len = size - self.data_start - _CRC.size
        if expected != data_len:
            raise self._malformed(f"the tensors take {expected} bytes but the data area has {data_len}")

    def blob(self, name: str, offset: int, length: int, crc32: int) -> bytearray:
        """A tensor's blob, its CRC-32 checked."""
        self._file.seek(self.data_start + offset)
        buf = bytearray(length)  # mutable, so arrays viewing it are writable
        if self._file.readinto(buf) != length:
            raise self._malformed("the file changed while it was read")
        if zlib.crc32(buf) != crc32:
            raise self._malformed(f"tensor {name!r}: checksum mismatch (the data is corrupted)")
        return buf
