"""The codec choice of compress: the filter, the exact codec, or the smaller of the two within an
error budget (codec="auto", the default); candidates, errors and kinds recorded per tensor."""

from __future__ import annotations

import numpy as np
import pytest

from weightless.clustered import prune_and_cluster
from weightless.container import DEFAULT_MAX_ERROR, compress, decompress, open_container


def _layer(shape: tuple[int, int] = (200, 300), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_auto_picks_the_smaller_within_the_error_budget(tmp_path):
    w = _layer()
    state = {"dense": w, "sparse": _layer(seed=1)}
    # 50% kept: the exact codec (~5.5 bits a kept weight) beats a filter of 10-bit cells; 98% pruned
    # at t = 6 the filter is smaller, but its false positives are far over the default budget.
    layers = {"dense": {"sparsity": 0.5, "cell_bits": 10}, "sparse": {"sparsity": 0.98, "cell_bits": 6}}
    report = compress(state, tmp_path / "a.wl", layers=layers, clusters=16)
    entries = {e.name: e for e in report.tensors}
    for e in entries.values():
        assert e.kind == "exact" and e.relative_error_clustered == 0.0
        assert e.candidates is not None and e.nbytes == e.candidates["exact"]
    assert entries["dense"].candidates["exact"] < entries["dense"].candidates["bloomier"]
    assert entries["sparse"].candidates["bloomier"] < entries["sparse"].candidates["exact"]
    # With no budget the smaller wins: the filter.
    report = compress(state, tmp_path / "b.wl", layers=layers, clusters=16, max_error=None)
    assert [e.kind for e in report.tensors] == ["exact", "encoded"]
    assert report.tensors[1].relative_error_clustered > DEFAULT_MAX_ERROR
    out = decompress(tmp_path / "b.wl")
    clustered = prune_and_cluster(w, sparsity=0.5, clusters=16)
    np.testing.assert_array_equal(out["dense"], clustered.dense())  # exact: the clustered tensor itself


def test_forced_codecs_and_per_layer_overrides(tmp_path):
    state = {"a": _layer(seed=2), "b": _layer(seed=3)}
    report = compress(state, tmp_path / "f.wl", sparsity=0.9, codec="bloomier",
                      layers={"a": {}, "b": {"codec": "exact"}})
    assert [e.kind for e in report.tensors] == ["encoded", "exact"]
    assert set(report.tensors[0].candidates or {}) == {"bloomier"}
    with open_container(tmp_path / "f.wl") as c:
        assert c.exact_layer("b").kept == report.tensors[1].kept
        with pytest.raises(ValueError, match="stored exact, not in a filter"):
            c.encoded_layer("b")
    with pytest.raises(ValueError, match="codec must be one of auto, bloomier, exact"):
        compress(state, tmp_path / "x.wl", codec="zip")
    with pytest.raises(ValueError, match="max_error must be a non-negative number"):
        compress(state, tmp_path / "x.wl", max_error=-1.0)
    assert not (tmp_path / "x.wl").exists()


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_exact_tensors_decode_to_their_dtype(tmp_path, dtype):
    w = _layer((40, 50), seed=4).astype(dtype)
    compress({"w": w}, tmp_path / "d.wl", sparsity=0.7, codec="exact")
    out = decompress(tmp_path / "d.wl")["w"]
    clustered = prune_and_cluster(w, sparsity=0.7, clusters=16)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, clustered.dense().astype(dtype))


def test_more_clusters_than_the_exact_codec_takes(tmp_path):
    w = np.arange(6000 * 2, dtype=np.float32).reshape(60, 200)
    report = compress({"w": w}, tmp_path / "m.wl", clusters=5000, cell_bits=14)
    assert report.tensors[0].kind == "encoded"  # auto: only the filter can hold 5000 codes
    with pytest.raises(ValueError, match="tensor 'w'"):
        compress({"w": w}, tmp_path / "e.wl", clusters=5000, codec="exact")
