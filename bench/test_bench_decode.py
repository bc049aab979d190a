"""Decode speed per ISA and thread count (issue targets, this machine: VGG FC-6 at 4%, t = 12,
single thread <= 0.15 s; all cores <= 3x numpy's time to allocate and write the output; LeNet
layers <= 1 ms).

    python3 -m pytest bench/test_bench_decode.py --benchmark-only
"""

import os

import numpy as np
import pytest

import weightless
from weightless import _core

LAYERS = {  # name: (shape, density, clusters)
    "lenet300-fc0": ((300, 784), 0.08, 16),
    "lenet5-fc0": ((500, 800), 0.08, 16),
    "vgg16-fc6": ((25088, 4096), 0.04, 32),
}
THREADS = sorted({1, os.cpu_count() or 1})


@pytest.fixture(scope="module", params=list(LAYERS))
def layer(request):
    shape, density, clusters = LAYERS[request.param]
    w = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return request.param, weightless.encode_layer(w, sparsity=1 - density, clusters=clusters, cell_bits=12)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("isa", _core.supported_isas())
def test_decode(benchmark, layer, isa, threads):
    name, encoded = layer
    _core.set_isa(isa)
    benchmark.group = f"decode-{name}"
    rounds = 3 if encoded.size > 10**7 else 50
    out = benchmark.pedantic(encoded.decode, kwargs={"threads": threads}, rounds=rounds, iterations=1)
    assert _core.active_isa() == isa
    assert out.shape == encoded.shape
    _core.set_isa(None)


@pytest.fixture(scope="module")
def fc6_filters():
    """VGG FC-6 (25088 x 4096, 4% kept, t = 12, 32 clusters) in both layouts, same keys and values:
    format v3 (chunked, arity 4, the default) and format v2 (fuse, arity 3, v2's default)."""
    rng = np.random.default_rng(6)
    size = 25088 * 4096
    keys = np.flatnonzero(rng.random(size) < 0.04).astype(np.uint64)
    values = rng.integers(0, 32, len(keys)).astype(np.uint32)
    book = np.linspace(-1, 1, 32, dtype=np.float32)
    return size, book, {
        "v3": weightless.BloomierFilter(keys, values, value_bits=5, cell_bits=12),
        "v2": weightless.BloomierFilter(keys, values, value_bits=5, cell_bits=12, layout="fuse", arity=3),
    }


# version varies fastest: v3 and v2 of one ISA and thread count run back to back, so a machine
# whose load drifts slows both alike.
@pytest.mark.parametrize("version", ["v3", "v2"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", _core.supported_isas())
def test_decode_fc6_v3_against_v2(benchmark, fc6_filters, version, isa, threads):
    """Side by side in one run: the group table compares v3 with v2 per ISA and thread count."""
    size, book, filters = fc6_filters
    _core.set_isa(isa)
    benchmark.group = f"decode-fc6-{isa}-{threads}threads"
    out = np.empty(size, dtype=np.float32)
    filters[version].decode_weights(size, book, threads=threads, out=out)
    benchmark.pedantic(filters[version].decode_weights, args=(size, book), kwargs=dict(threads=threads, out=out),
                       rounds=7, iterations=1)
    assert _core.active_isa() == isa
    _core.set_isa(None)


def test_numpy_write_floor(benchmark, layer):
    """The physical floor: numpy allocating and writing an output of the same size."""
    name, encoded = layer
    benchmark.group = f"decode-{name}"
    rounds = 3 if encoded.size > 10**7 else 50
    benchmark.pedantic(np.full, args=(encoded.shape, 1.0), kwargs={"dtype": np.float32}, rounds=rounds, iterations=1)
