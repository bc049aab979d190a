"""An independent reading of docs/FORMAT.md's container version 3 for the tests: a strict parser
of well-formed files and a builder that writes whatever directory it is given (for hand-made
and deliberately broken files). Kept apart from weightless's own reader on purpose."""

from __future__ import annotations

import struct
import zlib

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16",
          "float32", "float64")


def varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, next offset) of the LEB128 varint at `at`."""
    v = shift = 0
    while True:
        b = data[at]
        at += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, at


def put_varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def parse(data: bytes) -> tuple[list[dict], bytes, bytes]:
    """(directory records, payload area, metadata) of a well-formed version 3 file; each record
    has name, dtype (its name), codec (its id), shape, offset (in the file), length, crc32."""
    magic, version, flags = struct.unpack_from("<4sHH", data)
    assert (magic, version, flags) == (b"WLMF", 3, 0)
    dir_len, meta_len, crc, magic2 = struct.unpack_from("<III4s", data, len(data) - 16)
    assert magic2 == b"WLMF"
    dir_start = len(data) - 16 - meta_len - dir_len
    directory, metadata = data[dir_start : dir_start + dir_len], data[dir_start + dir_len : len(data) - 16]
    assert zlib.crc32(directory + metadata) == crc
    count, at = varint(directory, 0)
    records, offset = [], 8
    for _ in range(count):
        n, at = varint(directory, at)
        name = directory[at : at + n].decode()
        dtype, codec, ndim = directory[at + n : at + n + 3]
        at += n + 3
        shape = []
        for _ in range(ndim):
            d, at = varint(directory, at)
            shape.append(d)
        length, at = varint(directory, at)
        (crc,) = struct.unpack_from("<I", directory, at)
        at += 4
        records.append({"name": name, "dtype": DTYPES[dtype], "codec": codec, "shape": shape, "offset": offset,
                        "length": length, "crc32": crc})
        offset += length
    assert at == len(directory) and offset == dir_start
    return records, data[8:dir_start], metadata


def build(records: list[dict], area: bytes, metadata: bytes = b"") -> bytes:
    """A file whose directory says what `records` say (offsets implied), whatever that is: a
    dtype is a name of DTYPES or a raw id, the other fields are written as given."""
    directory = bytearray(put_varint(len(records)))
    for r in records:
        name = r["name"].encode("utf-8", "surrogatepass")
        dtype = DTYPES.index(r["dtype"]) if isinstance(r["dtype"], str) else r["dtype"]
        directory += put_varint(len(name)) + name + bytes([dtype, r["codec"], len(r["shape"])])
        directory += b"".join(put_varint(d) for d in r["shape"]) + put_varint(r["length"])
        directory += struct.pack("<I", r["crc32"])
    trailer = struct.pack("<III4s", len(directory), len(metadata), zlib.crc32(bytes(directory) + metadata), b"WLMF")
    return b"WLMF" + struct.pack("<HH", 3, 0) + area + bytes(directory) + metadata + trailer
