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
