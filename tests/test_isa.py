"""The decoders' instruction sets from Python: every supported one decodes exactly what the scalar
reference decodes, in both layouts; set_isa switches, WEIGHTLESS_ISA is read once; and the expected
one is active here."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import weightless
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


@pytest.fixture(autouse=True)
def _default_isa():
    _core.set_isa(None)
    yield
    _core.set_isa(None)


def test_expected_isa_is_active():
    """A SIMD path that silently compiled out fails here."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags = _cpu_flags()
        avx512 = {"avx512f", "avx512bw"} <= flags
        expected = "avx512" if avx512 else "avx2" if "avx2" in flags else "scalar"
    elif machine in ("aarch64", "arm64"):
        expected = "neon"
    else:
        expected = "scalar"
    assert _core.active_isa() == expected
    assert _core.supported_isas()[-1] == expected


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell_bits", [None, 5, 32])
@pytest.mark.parametrize("arity", [3, 4])
def test_every_isa_decodes_like_scalar(shape, cell_bits, arity):
    weights = _layer(shape, seed=len(shape) * 1000 + shape[0])
    layer = encode_layer(weights, sparsity=0.9, clusters=16, cell_bits=cell_bits, seed=3, arity=arity)
    assert layer.filter.layout == "chunked"
    _core.set_isa("scalar")
    assert _core.active_isa() == "scalar"
    reference = layer.decode(threads=1)
    size = reference.size
    reference_codes = layer.filter._filter.decode_range(0, size)
    reference_count = layer.filter._filter.count_decoded(size, len(layer.codebook), 1)
    for isa in _core.supported_isas():
        assert _core.set_isa(isa) == isa
        assert _core.active_isa() == isa
        for threads in (1, 2):
            got = layer.decode(threads=threads)
            assert got.dtype == np.float32 and got.shape == reference.shape
            assert got.tobytes() == reference.tobytes(), (isa, threads)
            assert layer.filter._filter.count_decoded(size, len(layer.codebook), threads) == reference_count
        assert np.array_equal(layer.filter._filter.decode_range(0, size), reference_codes), isa
    _core.set_isa(None)
    assert layer.decode().tobytes() == reference.tobytes()


@pytest.mark.parametrize("layout,options", [("chunked", dict(chunk_keys=97)),
                                            ("fuse", dict(piece_keys=3000, block_keys=64))])
def test_every_isa_decodes_like_scalar_at_every_tail(layout, options):
    """Chunk (piece, block) boundaries at odd places, ranges of every small length."""
    rng = np.random.default_rng(4)
    size = 60_013
    keys = np.flatnonzero(rng.random(size) < 0.07).astype(np.uint64)
    f = weightless.BloomierFilter(keys, rng.integers(0, 16, len(keys)), value_bits=4, cell_bits=11, layout=layout,
                                  **options)
    _core.set_isa("scalar")
    reference = f._filter.decode_range(0, size)
    for isa in _core.supported_isas():
        _core.set_isa(isa)
        for start in (0, 1, 5, 1000, 31_999):
            for length in (0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 997):
                got = f._filter.decode_range(start, start + length)
                assert np.array_equal(got, reference[start : start + length]), (isa, start, length)


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


def test_large_layer_two_threads():
    """Both threads' slices, against the scalar reference."""
    weights = _layer((2048, 1024), seed=5)
    layer = encode_layer(weights, sparsity=0.92, clusters=32, cell_bits=12, seed=1)
    _core.set_isa("scalar")
    reference = layer.decode(threads=1)
    _core.set_isa(None)
    for threads in (1, 2, 3):
        assert layer.decode(threads=threads).tobytes() == reference.tobytes()


BAD = ["bogus", "sse4", "neon" if platform.machine().lower() in ("x86_64", "amd64") else "avx2"]


@pytest.mark.parametrize("bad", BAD)
def test_bad_isa_raises_value_error(bad):
    layer = encode_layer(_layer((50, 40), seed=1), sparsity=0.8, clusters=4)
    with pytest.raises(ValueError, match=bad):
        _core.set_isa(bad)
    assert _core.active_isa() == _core.supported_isas()[-1]  # unchanged
    assert layer.decode().shape == (50, 40)


def _run(code, isa):
    env = dict(os.environ, WEIGHTLESS_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_environment_is_read_once():
    code = ("import os, numpy as np, weightless; from weightless import _core\n"
            "f = weightless.BloomierFilter(np.arange(100, dtype=np.uint64), np.arange(100) % 4,\n"
            "                              value_bits=2, cell_bits=8)\n"
            "f.lookup_range(0, 500); a = _core.active_isa()\n"
            "os.environ['WEIGHTLESS_ISA'] = _core.supported_isas()[-1]; f.lookup_range(0, 500)\n"
            "print(a, _core.active_isa(), _core.set_isa(None))")
    out = _run(code, "Scalar")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scalar", "scalar", _core.supported_isas()[-1]]


@pytest.mark.parametrize("bad", BAD)
def test_bad_environment_raises_value_error_until_set_isa(bad):
    code = ("import numpy as np, weightless; from weightless import _core\n"
            "f = weightless.BloomierFilter(np.arange(100, dtype=np.uint64), np.arange(100) % 4,\n"
            "                              value_bits=2, cell_bits=8)\n"
            "for call in (_core.active_isa, lambda: f.decode_weights(500, np.ones(4, np.float32))):\n"
            "    try:\n        call(); print('no error')\n"
            "    except ValueError as e:\n        print('ValueError', 'scalar' in str(e))\n"
            "_core.set_isa('scalar'); print(f.decode_weights(500, np.ones(4, np.float32)).shape)")
    out = _run(code, bad)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["ValueError True", "ValueError True", "(500,)"]
