"""An independent decoder written from docs/FORMAT.md alone, checked against the core."""

import struct
import zlib

import numpy as np
import pytest

from weightless import BloomierFilter

M32 = 0xFFFFFFFF


def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def parse(data):
    assert data[:4] == b"WLBF"
    version, k, r, t = struct.unpack_from("<HBBB", data, 4)
    assert version in (1, 2)
    (P,) = struct.unpack_from("<I", data, 12)
    (n,) = struct.unpack_from("<Q", data, 16)
    pieces, start = [], 0
    for i in range(P):
        first_key, seed, num_keys, S = struct.unpack_from("<QQII", data, 32 + 32 * i)
        l, block_log2 = data[32 + 32 * i + 24], data[32 + 32 * i + 25]
        (B,) = struct.unpack_from("<I", data, 32 + 32 * i + 28)
        if version == 1:
            block_log2, B = 63, 1 if S else 0
        C = (S + k - 1) << l if S else 0
        pieces.append(dict(first_key=first_key, s=seed, S=S, L=1 << l, start=start, block_log2=block_log2, B=B))
        start += C
    at = 32 + 32 * P
    for p in pieces:  # the inner block starts, piece by piece
        inner = list(struct.unpack_from(f"<{max(p['B'] - 1, 0)}I", data, at))
        at += 4 * len(inner)
        p["starts"] = [0] + inner + [p["S"] * p["L"]]
    assert zlib.crc32(data[:-4]) == struct.unpack_from("<I", data, len(data) - 4)[0]
    area = int.from_bytes(data[at:-4], "little")
    cells = [(area >> (j * t)) & ((1 << t) - 1) for j in range(start)]
    return dict(k=k, r=r, t=t, n=n, pieces=pieces, cells=cells)


def query(f, key):
    piece = [p for p in f["pieces"] if p["first_key"] <= key][-1]
    s, S, L = piece["s"], piece["S"], piece["L"]
    x = (key & M32) ^ (s & M32)
    y = (key >> 32) ^ (s >> 32)
    y ^= fmix32(x)
    x ^= fmix32(y)
    word = fmix32((x + y) & M32) & ((1 << f["t"]) - 1)
    if S:
        b = min((key - piece["first_key"]) >> piece["block_log2"], piece["B"] - 1)
        base, end = piece["starts"][b], piece["starts"][b + 1]
        h0 = base + ((x * (end - base)) >> 32)
        h = [h0, (h0 + L) ^ (y & (L - 1)), (h0 + 2 * L) ^ ((y >> 16) & (L - 1)), (h0 + 3 * L) ^ (x & (L - 1))]
        for j in range(f["k"]):
            word ^= f["cells"][piece["start"] + h[j]]
    return word if word >> f["r"] == 0 else -1


@pytest.mark.parametrize("arity,value_bits,cell_bits", [(3, 4, 8), (4, 5, 13), (3, 16, 32), (3, 1, 1)])
def test_spec_decoder_agrees_with_core(arity, value_bits, cell_bits):
    rng = np.random.default_rng(arity + cell_bits)
    keys = np.concatenate([rng.choice(3000, 700, replace=False), rng.integers(2**40, 2**64, 300, dtype=np.uint64)])
    keys = keys.astype(np.uint64)
    values = rng.integers(0, 2**value_bits, len(keys))
    f = BloomierFilter(keys, values, value_bits=value_bits, cell_bits=cell_bits, arity=arity, piece_keys=250,
                       block_keys=64)
    assert 1 < f.num_pieces < f.num_blocks
    spec = parse(f.to_bytes())
    assert spec["n"] == len(keys)
    probes = np.concatenate([keys, np.arange(3000, dtype=np.uint64), rng.integers(0, 2**64, 500, dtype=np.uint64)])
    expected = f.lookup(probes)
    got = [query(spec, int(key)) for key in probes]
    assert got == expected.tolist()
    assert got[: len(keys)] == values.tolist()
