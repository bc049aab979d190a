"""weightless.quality and weightless.clustered: errors against the original and the clustered
tensor, baselines on the kept weights and codes."""

from __future__ import annotations

import numpy as np
import pytest

from weightless.baselines import deep_compression_nbytes
from weightless.clustered import prune_and_cluster
from weightless.codec import encode_clustered, encode_layer
from weightless.quality import baseline_nbytes, measure


def test_clustered_tensor_and_encode_layer_agree():
    w = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
    c = prune_and_cluster(w, sparsity=0.8, clusters=8, seed=2)
    assert c.kept == 240 and c.shape == (30, 40) and np.all(np.diff(c.positions) > 0)
    dense = c.dense()
    assert np.count_nonzero(dense) == 240 and set(np.unique(dense[dense != 0])) <= set(c.codebook)
    a = encode_layer(w, sparsity=0.8, clusters=8, seed=2, cell_bits=9)
    b = encode_clustered(c, seed=2, cell_bits=9)
    assert a.to_bytes() == b.to_bytes()


def test_measure_exact_and_with_false_positives():
    w = np.random.default_rng(1).normal(size=(50, 50)).astype(np.float32)
    c = prune_and_cluster(w, sparsity=0.9, clusters=4)
    exact = measure(w, c.dense(), c)
    assert exact.relative_error_clustered == 0.0
    expected = np.linalg.norm(c.dense().astype(np.float64) - w) / np.linalg.norm(w.astype(np.float64))
    assert exact.relative_error == pytest.approx(expected, rel=1e-12)
    layer = encode_clustered(c, cell_bits=4)  # 4 clusters at t = 4: a quarter of the zeros come back
    decoded = layer.decode()
    q = measure(w, decoded, c)
    fp = decoded.astype(np.float64).reshape(-1)
    fp[c.positions] = 0
    kept = c.values().astype(np.float64)
    assert q.relative_error_clustered == pytest.approx(np.linalg.norm(fp) / np.linalg.norm(kept), rel=1e-9)
    assert q.relative_error > exact.relative_error
    with pytest.raises(ValueError, match="differs from the clustered one"):
        measure(w, np.zeros_like(w), c)
    zero = prune_and_cluster(np.zeros((4, 4), np.float32), clusters=2)
    assert measure(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), zero).relative_error == 0.0


def test_baselines_are_sized_on_the_kept_weights():
    w = np.random.default_rng(2).normal(size=(64, 64)).astype(np.float32)
    c = prune_and_cluster(w, sparsity=0.95, clusters=16)
    sizes = baseline_nbytes(c)
    assert sizes == {"deep_compression": deep_compression_nbytes(c.positions, c.codes, 16, (64, 64),
                                                                 index_bits=5)["total"]}
