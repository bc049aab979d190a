"""The decoders' instruction sets from Python: every supported one decodes exactly what the scalar
reference decodes, WEIGHTLESS_ISA is read on every call, and the expected one is active here."""

import platform

import numpy as np
import pytest

from weightless import _core
from weightless.codec import encode_layer

SHAPES = [(1,), (7,), (9,), (17,), (33,), (101, 3), (300, 784), (64, 3, 5, 5), (1000, 997)]


def _layer(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def test_supported_isas():
    isas = _core.supported_isas()
    assert isas[0] == "scalar"
    assert set(isas) <= {"scalar", "avx2", "avx512", "neon"}
    assert len(set(isas)) == len(isas)


def test_expected_isa_is_active(monkeypatch):
    """A SIMD path that silently compiled out fails here."""
    monkeypatch.delenv("WEIGHTLESS_ISA", raising=False)
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags = _cpu_flags()
        expected = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "scalar"
    elif machine in ("aarch64", "arm64"):
        expected = "neon"
    else:
        expected = "scalar"
    assert _core.active_isa() == expected
    assert _core.supported_isas()[-1] == expected


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell_bits", [None, 5, 32])
def test_every_isa_decodes_like_scalar(monkeypatch, shape, cell_bits):
    weights = _layer(shape, seed=len(shape) * 1000 + shape[0])
    layer = encode_layer(weights, sparsity=0.9, clusters=16, cell_bits=cell_bits, seed=3)
    monkeypatch.setenv("WEIGHTLESS_ISA", "scalar")
    assert _core.active_isa() == "scalar"
    reference = layer.decode(threads=1)
    size = reference.size
    reference_codes = layer.filter._filter.decode_range(0, size)
    reference_count = layer.filter._filter.count_decoded(size, len(layer.codebook), 1)
    for isa in _core.supported_isas():
        monkeypatch.setenv("WEIGHTLESS_ISA", isa)  # read per call, not once at import
        assert _core.active_isa() == isa
        for threads in (1, 2):
            got = layer.decode(threads=threads)
            assert got.dtype == np.float32 and got.shape == reference.shape
            assert got.tobytes() == reference.tobytes(), (isa, threads)
            assert layer.filter._filter.count_decoded(size, len(layer.codebook), threads) == reference_count
        assert np.array_equal(layer.filter._filter.decode_range(0, size), reference_codes), isa
    monkeypatch.delenv("WEIGHTLESS_ISA")
    assert layer.decode().tobytes() == reference.tobytes()


def test_decode_into_a_given_buffer():
    layer = encode_layer(_layer((300, 257), seed=9), sparsity=0.9, clusters=16, cell_bits=9, seed=2)
    expected = layer.decode(threads=1)
    out = np.full((300, 257), np.nan, dtype=np.float32)
    assert layer.decode(threads=2, out=out) is out
    assert out.tobytes() == expected.tobytes()
    for bad, match in [(np.zeros((257, 300), np.float32), "shape"), (np.zeros((300, 257)), "float32"),
                       (np.zeros((300, 514), np.float32)[:, ::2], "contiguous")]:
        with pytest.raises(ValueError, match=match):
            layer.decode(out=bad)
    with pytest.raises(ValueError, match="float32"):
        layer.decode(dtype=np.float16, out=out)


def test_large_layer_two_threads(monkeypatch):
    """Both threads' slices, against the scalar reference."""
    weights = _layer((2048, 1024), seed=5)
    layer = encode_layer(weights, sparsity=0.92, clusters=32, cell_bits=12, seed=1)
    monkeypatch.setenv("WEIGHTLESS_ISA", "scalar")
    reference = layer.decode(threads=1)
    monkeypatch.delenv("WEIGHTLESS_ISA")
    for threads in (1, 2, 3):
        assert layer.decode(threads=threads).tobytes() == reference.tobytes()


@pytest.mark.parametrize("bad", ["bogus", "sse4", "neon" if platform.machine().lower() in ("x86_64", "amd64") else "avx2"])
def test_bad_isa_raises_value_error(monkeypatch, bad):
    layer = encode_layer(_layer((50, 40), seed=1), sparsity=0.8, clusters=4)
    monkeypatch.setenv("WEIGHTLESS_ISA", bad)
    with pytest.raises(ValueError, match=bad):
        _core.active_isa()
    with pytest.raises(ValueError, match="scalar"):
        layer.decode()
    monkeypatch.delenv("WEIGHTLESS_ISA")
    assert layer.decode().shape == (50, 40)
