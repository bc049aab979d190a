"""End-to-end compression: a VGG-16 FC-6 sized layer in a filter (issue target: <= 3 s on this
machine), and an 8-tensor model with --jobs 1 against --jobs 2 (same bytes, side by side).

    python3 -m pytest bench/test_bench_compress.py --benchmark-only
"""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import weightless
from weightless.io import save_state

SHAPE = (25088, 4096)


@pytest.fixture(scope="module")
def fc6():
    rng = np.random.default_rng(0)
    return {"fc6.weight": rng.standard_normal(SHAPE, dtype=np.float32) * np.float32(0.01)}


def test_compress_fc6(benchmark, fc6, tmp_path):
    benchmark.group = "compress-fc6"
    out = tmp_path / "fc6.wl"

    def run():
        return weightless.compress(fc6, out, overwrite=True, sparsity=0.96, clusters=32, cell_bits=12,
                                   codec="bloomier")

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
    weightless.compress(fc6, out, sparsity=0.96, clusters=32, cell_bits=12, codec="bloomier")
    state = benchmark.pedantic(weightless.decompress, args=(out,), rounds=3, iterations=1)
    assert state["fc6.weight"].shape == SHAPE


@pytest.fixture(scope="module")
def eight_tensors(tmp_path_factory):
    """An 8-tensor model file: 8 matrices of 2048 x 2048 (16 MB each), as a checkpoint holds them."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("jobs") / "model.npz"
    save_state({f"layer{i}.weight": rng.standard_normal((2048, 2048), dtype=np.float32) for i in range(8)}, path)
    return path


@pytest.mark.parametrize("jobs", [1, 2])
def test_compress_eight_tensors_jobs(benchmark, eight_tensors, tmp_path, jobs):
    benchmark.group = "compress-8-tensors"
    out = tmp_path / f"jobs{jobs}.wl"
    options = dict(sparsity=0.9, clusters=16, cell_bits=10)

    def run():
        if jobs == 1:
            return weightless.compress(eight_tensors, out, overwrite=True, threads=1, **options)
        with ProcessPoolExecutor(jobs) as pool:
            return weightless.compress(eight_tensors, out, overwrite=True, executor=pool, **options)

    benchmark.pedantic(run, rounds=3, iterations=1)
    reference = tmp_path / "reference.wl"
    weightless.compress(eight_tensors, reference, threads=1, **options)
    assert out.read_bytes() == reference.read_bytes()  # parallel gives the sequential file
