"""The exact codec (weightless.exact): bit-exact round trips, the size bound, hostile bytes."""

from __future__ import annotations

import numpy as np
import pytest

from weightless.cluster import kmeans_1d
from weightless.exact import ExactLayer, encode_clustered, encode_exact, information_bound_bits
from weightless.prune import prune_mask


def _random_layer(rng: np.random.Generator, shape: tuple[int, ...], density: float, k: int,
                  structured: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = int(np.prod(shape))
    if structured and len(shape) >= 2 and size:
        rows, cols = shape[0], size // shape[0]
        col_p = rng.choice([0.0, density / 2, min(1.0, 2 * density)], size=cols)
        row_p = rng.uniform(0.5, 1.5, size=rows)
        p = np.clip(row_p[:, None] * col_p[None, :], 0, 1).ravel()
        mask = rng.random(size) < p
    else:
        mask = rng.random(size) < density
    positions = np.flatnonzero(mask)
    probs = rng.dirichlet(np.full(k, 0.7)) if k > 1 else np.ones(1)
    codes = rng.choice(k, size=positions.size, p=probs)
    codebook = np.sort(rng.standard_normal(k)).astype(np.float32)
    return positions, codes, codebook


def _dense(positions: np.ndarray, codes: np.ndarray, codebook: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    w = np.zeros(int(np.prod(shape)), dtype=np.float32)
    w[positions] = codebook[codes]
    return w.reshape(shape)


def _check_round_trip(layer: ExactLayer, positions: np.ndarray, codes: np.ndarray, codebook: np.ndarray,
                      shape: tuple[int, ...]) -> None:
    again = ExactLayer.from_bytes(layer.to_bytes())
    assert again.shape == shape and again.kept == positions.size and again.nbytes == layer.nbytes
    assert np.array_equal(again.codebook.view(np.uint32), codebook.astype(np.float32).view(np.uint32))
    out = again.decode()
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(out.view(np.uint32), _dense(positions, codes, codebook, shape).view(np.uint32))
    p, c = again.sparse()
    assert np.array_equal(p, positions) and np.array_equal(c, codes)


@pytest.mark.parametrize("shape", [(), (1,), (1000,), (30, 40), (6, 5, 7), (2, 3, 4, 5), (0, 5)])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.01, 0.08, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("k", [1, 2, 16, 256])
def test_round_trip(shape: tuple[int, ...], density: float, k: int) -> None:
    rng = np.random.default_rng([len(shape), int(density * 1000), k])
    for structured in (False, True):
        positions, codes, codebook = _random_layer(rng, shape, density, k, structured)
        layer = encode_clustered(positions, codes, shape, codebook)
        _check_round_trip(layer, positions, codes, codebook, shape)


@pytest.mark.parametrize("gap_mode", [0, 1])
@pytest.mark.parametrize("code_mode", [0, 1, 2, 3])
@pytest.mark.parametrize("ways", [1, 2, 4])
def test_every_mode(gap_mode: int, code_mode: int, ways: int) -> None:
    rng = np.random.default_rng(5)
    shape = (40, 60)
    positions, codes, codebook = _random_layer(rng, shape, 0.3, 16, structured=True)
    layer = encode_clustered(positions, codes, shape, codebook, gap_mode=gap_mode, code_mode=code_mode, ways=ways)
    assert (layer.gap_mode, layer.code_mode) == (gap_mode, code_mode)
    _check_round_trip(layer, positions, codes, codebook, shape)
    best = encode_clustered(positions, codes, shape, codebook, ways=ways)
    assert best.nbytes <= layer.nbytes  # the encoder keeps the smallest


def test_single_element_and_edges() -> None:
    one = encode_clustered([999], [0], (1000,), [0.5])
    _check_round_trip(one, np.array([999]), np.array([0]), np.array([0.5], np.float32), (1000,))
    zero = encode_clustered([], [], (100, 100), [])
    assert not zero.decode().any() and zero.kept == 0 and zero.nbytes < 32
    full = encode_clustered(np.arange(10**6), np.zeros(10**6, np.int64), (1000, 1000), [1.5], ways=1)
    assert full.nbytes < 48 and np.all(full.decode() == 1.5)
    many = encode_clustered(np.arange(0, 8000, 2), np.arange(4000) % 4096, (8000,),
                            np.arange(4096, dtype=np.float32))  # 4096 clusters: no code contexts
    assert many.code_mode == 0
    _check_round_trip(many, np.arange(0, 8000, 2), np.arange(4000) % 4096, np.arange(4096, dtype=np.float32), (8000,))


def test_encode_exact_matches_prune_and_cluster() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)
    layer = encode_exact(w, sparsity=0.7, clusters=16, seed=3)
    mask = prune_mask(w, sparsity=0.7)
    positions = np.flatnonzero(mask)
    c = kmeans_1d(w.reshape(-1)[positions], 16, seed=3)
    assert np.array_equal(layer.decode(), _dense(positions, c.codes, c.codebook, w.shape))
    out = np.full(w.shape, 7.0, np.float32)
    assert layer.decode(out=out) is out and np.array_equal(out, layer.decode())
    assert encode_exact(np.zeros((3, 4), np.float32)).kept == 0
    with pytest.raises(TypeError):
        encode_exact(np.arange(5))


@pytest.mark.parametrize("density", [0.001, 0.01, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("k", [2, 16, 256])
def test_size_within_bound_on_iid_masks(density: float, k: int) -> None:
    """At most 1.03 x (log2 C(N, n) + n H0(codes)) bits plus the codebook and a fixed overhead
    (header, frequency tables, rANS states): 4 K + K + 96 bytes."""
    rng = np.random.default_rng([k, int(density * 1000)])
    shape = (1000, 1000)
    positions, codes, codebook = _random_layer(rng, shape, density, k)
    layer = encode_clustered(positions, codes, shape, codebook)
    bound = information_bound_bits(10**6, codes)
    assert layer.nbytes <= 1.03 * bound / 8 + 4 * k + k + 96
    assert layer.bound_bits == pytest.approx(bound)


def _small_payload() -> bytes:
    rng = np.random.default_rng(7)
    positions, codes, codebook = _random_layer(rng, (12, 20), 0.3, 5, structured=True)
    return encode_clustered(positions, codes, (12, 20), codebook, gap_mode=1, code_mode=3, ways=2).to_bytes()


def test_every_truncation_raises() -> None:
    data = _small_payload()
    for n in range(len(data)):
        with pytest.raises(ValueError):
            ExactLayer.from_bytes(data[:n]).decode()
    with pytest.raises(ValueError):
        ExactLayer.from_bytes(data + b"\0")


def test_every_bit_flip_raises() -> None:
    data = bytearray(_small_payload())
    for i in range(8 * len(data)):
        data[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ValueError):
            ExactLayer.from_bytes(data).decode()
        data[i // 8] ^= 1 << (i % 8)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        encode_clustered([3, 2], [0, 0], (10,), [1.0])  # not increasing
    with pytest.raises(ValueError):
        encode_clustered([10], [0], (10,), [1.0])  # out of range
    with pytest.raises(ValueError):
        encode_clustered([1], [1], (10,), [1.0])  # code out of range
    with pytest.raises(ValueError):
        encode_clustered([1], [0], (10,), [np.nan])
    with pytest.raises(ValueError):
        encode_clustered([1], [0], (10,), [1.0], code_mode=4)
    with pytest.raises(ValueError):
        encode_clustered([1], [0], (10,), [1.0], ways=3)
    with pytest.raises(ValueError):
        encode_clustered(np.arange(10), np.arange(10) % 300, (10,), np.zeros(300, np.float32), code_mode=1)
    layer = encode_clustered([1], [0], (10,), [1.0])
    with pytest.raises(ValueError):
        layer.decode(out=np.zeros(10, np.float64))
    with pytest.raises(ValueError):
        layer.decode(out=np.zeros(9, np.float32))


def test_decode_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = encode_clustered([], [], (1 << 20, 1 << 20), [])  # a few bytes declaring 2^40 positions
    monkeypatch.setenv("WEIGHTLESS_MAX_DECODE_BYTES", str(1 << 30))
    with pytest.raises(ValueError, match="limit"):
        layer.decode()


def test_deterministic() -> None:
    rng = np.random.default_rng(9)
    positions, codes, codebook = _random_layer(rng, (100, 200), 0.1, 16, structured=True)
    a = encode_clustered(positions, codes, (100, 200), codebook).to_bytes()
    b = encode_clustered(positions, codes, (100, 200), codebook).to_bytes()
    assert a == b


# --- an independent decoder written from docs/FORMAT.md ("Exact codec payload") ----------------


def _spec_decode(data: bytes) -> tuple[tuple[int, ...], list[tuple[int, int]], list[float]]:
    """Decode a payload following the spec text only (no validation beyond what decoding needs)."""
    import struct
    import zlib

    assert data[:4] == b"WLEX" and data[4] == 1
    assert zlib.crc32(data[:-4]) == struct.unpack_from("<I", data, len(data) - 4)[0]
    ndim, modes, ways_log2 = data[5], data[6], data[7]
    gap_mode, code_mode, ways = modes & 3, (modes >> 2) & 3, 1 << ways_log2
    at = 8

    def varint() -> int:
        nonlocal at
        v, shift = 0, 0
        while True:
            b = data[at]
            at += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    shape = tuple(varint() for _ in range(ndim))
    size = int(np.prod(shape)) if shape else 1
    n, k = varint(), varint()
    codebook = list(struct.unpack_from(f"<{k}f", data, at))
    at += 4 * k
    t = varint()
    section = data[at : at + t]
    at += t
    bit = 0

    def bits(m: int) -> int:
        nonlocal bit
        v = 0
        for i in range(m):
            v |= ((section[(bit + i) // 8] >> ((bit + i) % 8)) & 1) << i
        bit += m
        return v

    def gamma() -> int:
        ell = 0
        while bits(1) == 0:
            ell += 1
        return (1 << ell) + bits(ell)

    def table() -> tuple[int, list[int]] | None:
        b = bits(4)
        if b == 15:
            return None
        a = gamma()
        if a == 1:
            return b, [1 << b]
        kk = bits(4)
        f = []
        for _ in range(a - 1):
            h = gamma() - 1
            f.append((h << kk) + bits(kk))
        f.append((1 << b) - sum(f))
        return b, f

    gap_tables = [table() for _ in range(1 if gap_mode == 0 else 3)]
    code_tables = [table() for _ in range({0: 1, 1: k + 1, 2: k + 1, 3: k + 3}[code_mode])]
    streams = []
    for _ in range(2):
        length = varint()
        words = list(struct.unpack_from(f"<{length // 4}I", data, at))
        at += length
        streams.append(words)
    assert at == len(data) - 4
    states = [[w[2 * j] + (w[2 * j + 1] << 32) for j in range(ways)] for w in streams] if n else [[], []]
    cursor = [2 * ways, 2 * ways]

    def renorm(si: int, j: int) -> None:
        if states[si][j] < 1 << 31:
            states[si][j] = (states[si][j] << 32) + streams[si][cursor[si]]
            cursor[si] += 1

    def symbol(si: int, j: int, tab: tuple[int, list[int]] | None) -> int:
        assert tab is not None
        b, f = tab
        x = states[si][j]
        slot = x % (1 << b)
        s, cum = 0, 0
        while not cum <= slot < cum + f[s]:
            cum += f[s]
            s += 1
        states[si][j] = f[s] * (x >> b) + slot - cum
        renorm(si, j)
        return s

    def raw(j: int, m: int) -> int:
        x = states[0][j]
        v = x % (1 << m)
        states[0][j] = x >> m
        renorm(0, j)
        return v

    row = size // shape[0] if len(shape) >= 2 and shape[0] > 0 else max(size, 1)
    out: list[tuple[int, int]] = []
    prev_sym, nxt = 16, 0
    for i in range(n):
        j = i % ways
        gctx = 0 if gap_mode == 0 else (0 if prev_sym == 0 else 1 if prev_sym <= 3 else 2)
        s = symbol(0, j, gap_tables[gctx])
        if s < 16:
            g = s
        else:
            e, m = 4 + (s - 16) // 4, (s - 16) % 4
            nb = e - 2
            low, c = 0, 0
            while 16 * c < nb:
                low |= raw(j, min(16, nb - 16 * c)) << (16 * c)
                c += 1
            g = ((4 + m) << nb) + low
        p = nxt + g
        assert p < size
        same = bool(out) and p // row == out[-1][0] // row
        adj = same and p == out[-1][0] + 1
        cp = out[-1][1] if out else 0
        ctx = {0: 0, 1: 1 + cp if adj else 0, 2: 1 + cp if same else 0,
               3: 1 + cp if adj else (k + 1 + (1 if 2 * cp >= k else 0) if same else 0)}[code_mode]
        out.append((p, symbol(1, j, code_tables[ctx])))
        prev_sym, nxt = s, p + 1
    assert cursor == [len(streams[0]), len(streams[1])] or n == 0
    assert all(x == 1 << 31 for st in states for x in st)
    return shape, out, codebook


@pytest.mark.parametrize("gap_mode,code_mode,ways", [(0, 0, 1), (1, 1, 2), (1, 2, 4), (0, 3, 2), (1, 3, 1)])
def test_spec_decoder_agrees(gap_mode: int, code_mode: int, ways: int) -> None:
    rng = np.random.default_rng(11)
    shape = (20, 37)
    positions, codes, codebook = _random_layer(rng, shape, 0.3, 9, structured=True)
    layer = encode_clustered(positions, codes, shape, codebook, gap_mode=gap_mode, code_mode=code_mode, ways=ways)
    got_shape, pairs, book = _spec_decode(layer.to_bytes())
    assert got_shape == shape and book == [float(v) for v in codebook]
    assert [p for p, _ in pairs] == positions.tolist() and [c for _, c in pairs] == codes.tolist()
    # a gap of 2^37 (35 raw bits: three 16-bit chunks) in a 2^40-position tensor
    big = encode_clustered([5, (1 << 37) + 3], [1, 0], (1 << 40,), [0.5, -0.5], ways=ways)
    assert _spec_decode(big.to_bytes())[1] == [(5, 1), ((1 << 37) + 3, 0)]


def _stream_regions(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the gap stream's and the code stream's words in a payload (FORMAT.md)."""
    at = 8

    def varint() -> int:
        nonlocal at
        v, shift = 0, 0
        while True:
            b = data[at]
            at += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    for _ in range(data[5]):
        varint()
    varint()
    k = varint()
    at += 4 * k
    t = varint()  # the table section
    at += t
    regions = []
    for _ in range(2):  # the gap stream, then the code stream, each after its size
        t = varint()
        regions.append((at, at + t))
        at += t
    return regions


def _with_crc(body: bytes) -> bytes:
    import struct
    import zlib

    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("gap_mode,code_mode,ways,density", [(0, 0, 1, 0.08), (0, 0, 4, 0.9), (1, 0, 2, 0.5),
                                                             (0, 3, 2, 0.3), (1, 1, 4, 0.08), (1, 2, 1, 1.0)])
def test_hostile_streams_agree_with_the_spec_decoder(gap_mode: int, code_mode: int, ways: int,
                                                     density: float) -> None:
    """Stream bytes mutated (CRC repaired, header and tables intact): the decoder accepts exactly
    what the spec transcription accepts, with the same tensor. The C++ decoder reads streams
    without per-symbol end checks inside chunks (csrc/codecs/exact.cpp), so this is where an
    over-read or a missed check would show."""
    rng = np.random.default_rng([gap_mode, code_mode, ways, int(density * 100)])
    shape = (24, 40)
    positions, codes, codebook = _random_layer(rng, shape, density, 6, structured=True)
    data = encode_clustered(positions, codes, shape, codebook, gap_mode=gap_mode, code_mode=code_mode,
                            ways=ways).to_bytes()
    regions = _stream_regions(data)
    accepted = 0
    for trial in range(300):
        body = bytearray(data[:-4])
        for _ in range(1 + trial % 3):
            start, end = regions[int(rng.integers(2))]
            at = int(rng.integers(start, end))
            if trial % 2:
                body[at] ^= 1 << int(rng.integers(8))
            else:
                body[at] = int(rng.integers(256))
        mutated = _with_crc(bytes(body))
        try:
            expected = _spec_decode(mutated)
        except (AssertionError, IndexError):
            expected = None
        layer = ExactLayer.from_bytes(mutated)  # header and tables are intact
        if expected is None:
            with pytest.raises(ValueError):
                layer.decode()
            with pytest.raises(ValueError):
                layer.sparse()
            continue
        accepted += 1
        p, c = layer.sparse()
        assert [(int(a), int(b)) for a, b in zip(p, c)] == expected[1]
        dense = np.zeros(int(np.prod(shape)), np.float32)
        dense[p] = codebook[c]
        assert np.array_equal(layer.decode().reshape(-1).view(np.uint32), dense.view(np.uint32))
    assert accepted < 300  # the mutations did reach the streams


def test_table_whose_one_symbol_owns_every_slot() -> None:
    """A table may list symbols of frequency 0 before one that takes all 2^b slots (the encoder
    never writes one; a hand-made payload may): every state is left as it is, a case the
    decoder's packed slot entries (freq in 12 bits) store as scale 1. Built from FORMAT.md."""
    bits: list[int] = []

    def put(v: int, m: int) -> None:
        bits.extend((v >> i) & 1 for i in range(m))

    def gamma(v: int) -> None:
        ell = v.bit_length() - 1
        put(0, ell)
        put(1, 1)
        put(v, ell)

    n, k = 700, 3
    put(12, 4)  # gap table: b = 12, one symbol (gap 0): every weight is kept
    gamma(1)
    put(12, 4)  # code table: b = 12, A = 3, k = 0, f = (0, 0, 4096): every code is 2
    gamma(3)
    put(0, 4)
    gamma(1)  # eg(0) of 0: gamma(0 + 1)
    gamma(1)
    section = bytes(sum(bit << i for i, bit in enumerate(bits[j : j + 8])) for j in range(0, len(bits), 8))
    state = (1 << 31).to_bytes(8, "little")
    codebook = np.array([-1.0, 0.25, 2.5], np.float32)
    body = (b"WLEX" + bytes([1, 1, 0, 0]) + bytes([0xBC, 0x05]) * 2 + bytes([k]) + codebook.tobytes()
            + bytes([len(section)]) + section + bytes([8]) + state + bytes([8]) + state)
    layer = ExactLayer.from_bytes(_with_crc(body))
    assert layer.shape == (n,) and layer.kept == n
    assert _spec_decode(layer.to_bytes())[1] == [(i, 2) for i in range(n)]
    assert np.array_equal(layer.decode(), np.full(n, 2.5, np.float32))
    p, c = layer.sparse()
    assert np.array_equal(p, np.arange(n)) and np.array_equal(c, np.full(n, 2))
