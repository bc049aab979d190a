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


M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def chunk_cells(k, arity, attempt):
    if k == 0:
        return 0
    slack = (k * 31 + 1023) // 1024 + 2 if arity == 4 else (k * 113 + 1023) // 1024 + 3
    return k + slack + (attempt // 4) * (k // 32 + 1)


def parse_v3(data):
    assert data[:4] == b"WLBF" and struct.unpack_from("<H", data, 4)[0] == 3
    k, r, t, s, w, a = data[6:12]
    (K,) = struct.unpack_from("<H", data, 12)
    n = int.from_bytes(data[14:20], "little")
    (seed,) = struct.unpack_from("<Q", data, 20)
    assert zlib.crc32(data[:-4]) == struct.unpack_from("<I", data, len(data) - 4)[0]
    stream, at = int.from_bytes(data[28:-4], "little"), 0

    def take(bits):
        nonlocal at
        v = (stream >> at) & ((1 << bits) - 1)
        at += bits
        return v

    C = -(-n // K)
    chunks, b = [], 0
    for i in range(C):
        if i:
            delta = take(w)
            assert delta >= 1
            b += delta << s
        attempt = take(a)
        keys = n * (i + 1) // C - n * i // C
        m = chunk_cells(keys, k, attempt)
        chunks.append(dict(first_key=b, m=m, s=splitmix64(seed ^ splitmix64((i << 4) | attempt))))
    for c in chunks:
        c["cells"] = [take(t) for _ in range(c["m"])]
    assert stream >> at == 0  # padding
    assert len(data) == 28 + (at + 7) // 8 + 4
    return dict(k=k, r=r, t=t, n=n, seed=seed, chunks=chunks)


def query_v3(f, key):
    chunk = [c for c in f["chunks"] if c["first_key"] <= key][-1] if f["chunks"] else None
    s = chunk["s"] if chunk else f["seed"]
    x = (key & M32) ^ (s & M32)
    y = (key >> 32) ^ (s >> 32)
    y ^= fmix32(x)
    x ^= fmix32(y)
    word = fmix32((x + y) & M32) & ((1 << f["t"]) - 1)
    if chunk:
        m = chunk["m"]
        h = [((x & 0xFFFF) * m) >> 16, ((x >> 16) * m) >> 16, ((y & 0xFFFF) * m) >> 16, ((y >> 16) * m) >> 16]
        for j in range(f["k"]):
            word ^= chunk["cells"][h[j]]
    return word if word >> f["r"] == 0 else -1


def parse(data):
    assert data[:4] == b"WLBF"
    version, k, r, t = struct.unpack_from("<HBBB", data, 4)
    assert version in (1, 2)
    (P,) = struct.unpack_from("<I", data, 12)
    (n,) = struct.unpack_from("<Q", data, 16)
    pieces, start = [], 0
    for i in range(P):
        first_key, seed, num_keys, S = struct.unpack_from("<QQII", data, 32 + 32 * i)
        length_log2, block_log2 = data[32 + 32 * i + 24], data[32 + 32 * i + 25]
        (B,) = struct.unpack_from("<I", data, 32 + 32 * i + 28)
        if version == 1:
            block_log2, B = 63, 1 if S else 0
        C = (S + k - 1) << length_log2 if S else 0
        pieces.append(dict(first_key=first_key, s=seed, S=S, L=1 << length_log2, start=start, block_log2=block_log2,
                           B=B))
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
                       block_keys=64, layout="fuse")
    assert 1 < f.num_pieces < f.num_blocks
    spec = parse(f.to_bytes())
    assert spec["n"] == len(keys)
    probes = np.concatenate([keys, np.arange(3000, dtype=np.uint64), rng.integers(0, 2**64, 500, dtype=np.uint64)])
    expected = f.lookup(probes)
    got = [query(spec, int(key)) for key in probes]
    assert got == expected.tolist()
    assert got[: len(keys)] == values.tolist()


@pytest.mark.parametrize("arity,value_bits,cell_bits,chunk_keys",
                         [(4, 4, 8, 97), (3, 5, 13, 200), (4, 16, 32, 1024), (4, 1, 1, 64), (3, 3, 4, 1)])
def test_spec_decoder_agrees_with_core_v3(arity, value_bits, cell_bits, chunk_keys):
    rng = np.random.default_rng(arity + cell_bits + chunk_keys)
    keys = np.concatenate([rng.choice(3000, 700, replace=False), rng.integers(2**40, 2**64, 300, dtype=np.uint64)])
    keys = keys.astype(np.uint64)
    values = rng.integers(0, 2**value_bits, len(keys))
    f = BloomierFilter(keys, values, value_bits=value_bits, cell_bits=cell_bits, arity=arity, chunk_keys=chunk_keys)
    data = f.to_bytes()
    spec = parse_v3(data)
    assert spec["n"] == len(keys) and len(spec["chunks"]) == f.num_pieces
    assert sum(c["m"] for c in spec["chunks"]) == f.num_cells
    probes = np.concatenate([keys, np.arange(3000, dtype=np.uint64), rng.integers(0, 2**64, 500, dtype=np.uint64)])
    expected = f.lookup(probes)
    got = [query_v3(spec, int(key)) for key in probes]
    assert got == expected.tolist()
    assert got[: len(keys)] == values.tolist()


@pytest.mark.parametrize("n", [0, 1, 5])
def test_spec_decoder_v3_small(n):
    keys = np.arange(n, dtype=np.uint64) * 3 + 2**63
    f = BloomierFilter(keys, np.arange(n) % 4, value_bits=2, cell_bits=6)
    data = f.to_bytes()
    assert len(data) == (32 if n == 0 else len(data))
    spec = parse_v3(data)
    probes = list(range(20)) + [int(k) for k in keys] + [2**64 - 1]
    assert [query_v3(spec, key) for key in probes] == f.lookup(np.array(probes, dtype=np.uint64)).tolist()
