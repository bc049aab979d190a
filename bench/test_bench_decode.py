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
def test_decode(benchmark, layer, isa, threads, monkeypatch):
    name, encoded = layer
    monkeypatch.setenv("WEIGHTLESS_ISA", isa)
    benchmark.group = f"decode-{name}"
    rounds = 3 if encoded.size > 10**7 else 50
    out = benchmark.pedantic(encoded.decode, kwargs={"threads": threads}, rounds=rounds, iterations=1)
    assert _core.active_isa() == isa
    assert out.shape == encoded.shape


def test_numpy_write_floor(benchmark, layer):
    """The physical floor: numpy allocating and writing an output of the same size."""
    name, encoded = layer
    benchmark.group = f"decode-{name}"
    rounds = 3 if encoded.size > 10**7 else 50
    benchmark.pedantic(np.full, args=(encoded.shape, 1.0), kwargs={"dtype": np.float32}, rounds=rounds, iterations=1)
