"""End-to-end compression of a VGG-16 FC-6 sized layer (issue target: <= 3 s on this machine).

    python3 -m pytest bench/test_bench_compress.py --benchmark-only
"""

import numpy as np
import pytest

import weightless

SHAPE = (25088, 4096)


@pytest.fixture(scope="module")
def fc6():
    rng = np.random.default_rng(0)
    return {"fc6.weight": rng.standard_normal(SHAPE, dtype=np.float32) * np.float32(0.01)}


def test_compress_fc6(benchmark, fc6, tmp_path):
    benchmark.group = "compress-fc6"
    out = tmp_path / "fc6.wl"

    def run():
        return weightless.compress(fc6, out, overwrite=True, sparsity=0.96, clusters=32, cell_bits=12)

    report = benchmark.pedantic(run, rounds=3, iterations=1)
    entry = report.encoded[0]
    benchmark.extra_info.update(
        kept=entry.kept, false_positives=entry.false_positives, bytes=report.compressed_bytes,
        ratio=round(report.ratio, 1),
    )
    assert entry.kept == round(0.04 * fc6["fc6.weight"].size)


def test_decompress_fc6(benchmark, fc6, tmp_path):
    benchmark.group = "decompress-fc6"
    out = tmp_path / "fc6.wl"
    weightless.compress(fc6, out, sparsity=0.96, clusters=32, cell_bits=12)
    state = benchmark.pedantic(weightless.decompress, args=(out,), rounds=3, iterations=1)
    assert state["fc6.weight"].shape == SHAPE
