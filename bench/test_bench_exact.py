"""Exact codec decode speed beside numpy's allocate-and-write of the same float32 output
(the issue's target: decoding at most 2x numpy's time). Groups pair the two per layer.

    python3 -m pytest bench/test_bench_exact.py --benchmark-only --benchmark-columns=min,median,rounds

Layers are i.i.d. masks with skewed 16-cluster codes (sizes of real layers; the real LeNet fc1
is in bench/bench_exact.py). bench/exact_decode_speed.py prints the same comparison as a table
of ratios, and with --baseline another build's beside it. `numpy` is `np.empty(shape, float32)` then `out[...] = 0`, the
cheapest way numpy allocates and writes every element; `exact` allocates, zeroes and scatters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from weightless.exact import ExactLayer, encode_clustered

LAYERS = {  # name: (shape, density)
    "lenet300-fc1-0.1%": ((300, 784), 0.001),
    "lenet300-fc1-1%": ((300, 784), 0.01),
    "lenet300-fc1-8%": ((300, 784), 0.08),
    "lenet300-fc1-50%": ((300, 784), 0.5),
    "lenet300-fc1-100%": ((300, 784), 1.0),
    "4096x1024-0.1%": ((4096, 1024), 0.001),
    "4096x1024-1%": ((4096, 1024), 0.01),
    "4096x1024-8%": ((4096, 1024), 0.08),
    "4096x1024-50%": ((4096, 1024), 0.5),
    "4096x1024-100%": ((4096, 1024), 1.0),
    "4096x4096-1%": ((4096, 4096), 0.01),
    "1536x384-50%": ((1536, 384), 0.5),
    "1536x384-90%": ((1536, 384), 0.9),
}


def make_layer(shape: tuple[int, ...], density: float, seed: int = 0) -> ExactLayer:
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    positions = np.flatnonzero(rng.random(size) < density)
    probs = np.sort(rng.dirichlet(np.ones(16)))[::-1]
    codes = rng.choice(16, size=positions.size, p=probs)
    codebook = np.sort(rng.standard_normal(16)).astype(np.float32)
    return encode_clustered(positions, codes, shape, codebook)


def numpy_alloc_write(shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=np.float32)
    out[...] = 0
    return out


@pytest.fixture(scope="module", params=list(LAYERS))
def layer(request: Any) -> tuple[str, ExactLayer]:
    shape, density = LAYERS[request.param]
    return request.param, make_layer(shape, density)


def _rounds(size: int) -> int:
    return 20 if size > 10**7 else 200


def test_numpy(benchmark: Any, layer: tuple[str, ExactLayer]) -> None:
    name, encoded = layer
    benchmark.group = f"exact-{name}"
    out = benchmark.pedantic(numpy_alloc_write, args=(encoded.shape,), rounds=_rounds(encoded.size),
                             iterations=1, warmup_rounds=2)
    assert out.shape == encoded.shape


def test_exact(benchmark: Any, layer: tuple[str, ExactLayer]) -> None:
    name, encoded = layer
    benchmark.group = f"exact-{name}"
    out = benchmark.pedantic(encoded.decode, rounds=_rounds(encoded.size), iterations=1, warmup_rounds=2)
    assert out.shape == encoded.shape and np.count_nonzero(out) <= encoded.kept
