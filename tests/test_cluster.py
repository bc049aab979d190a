"""Tests for weightless/cluster.py (1-D k-means weight sharing)."""

from __future__ import annotations

import numpy as np
import pytest

from weightless import cluster as C


def _check_valid(values: np.ndarray, cl) -> None:
    """Invariants every result must satisfy."""
    assert cl.codebook.dtype == np.float32 and cl.codebook.ndim == 1
    assert cl.codes.dtype == np.uint16 and cl.codes.shape == (np.asarray(values).size,)
    assert np.all(np.diff(cl.codebook) > 0), "codebook must be strictly ascending"
    if cl.codes.size:
        assert int(cl.codes.max()) < cl.codebook.size
        # Every codebook entry is used.
        assert np.all(np.bincount(cl.codes, minlength=cl.codebook.size) > 0)


def _lloyd_reference(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook Lloyd with an (n x k) distance matrix, for small inputs only."""
    labels = None
    for _ in range(1000):
        new = np.argmin(np.abs(x[:, None] - c[None, :]), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        c = np.array([x[labels == j].mean() for j in range(c.size)])
    return c, labels


def test_recovers_three_separated_centres():
    rng = np.random.default_rng(0)
    centres = np.array([-1.0, 0.5, 3.0])
    truth = rng.integers(0, 3, size=3000)
    x = centres[truth] + rng.normal(0, 0.01, size=3000)
    for init in ("density", "linear", "random"):
        cl = C.kmeans_1d(x, 3, init=init, seed=3)
        _check_valid(x, cl)
        np.testing.assert_allclose(cl.codebook, centres, atol=2e-3)
        np.testing.assert_array_equal(cl.codes, truth)


def test_matches_bruteforce_lloyd():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.laplace(0, 0.05, 400), rng.normal(0.3, 0.02, 100)])
    c0 = C.init_centroids(x, 8, init="density")
    ref_c, ref_labels = _lloyd_reference(x, c0)
    cl = C.kmeans_1d(x, 8, init="density")
    _check_valid(x, cl)
    np.testing.assert_allclose(cl.codebook, ref_c.astype(np.float32), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(cl.codes, ref_labels)


def test_codebook_is_cluster_mean_and_codes_nearest():
    rng = np.random.default_rng(2)
    x = rng.normal(size=5000)
    cl = C.kmeans_1d(x, 10)
    _check_valid(x, cl)
    means = np.bincount(cl.codes, weights=x) / np.bincount(cl.codes)
    np.testing.assert_allclose(cl.codebook, means, rtol=1e-6, atol=1e-7)
    dist_own = np.abs(x - cl.codebook[cl.codes])
    dist_best = np.min(np.abs(x[:, None] - cl.codebook[None, :].astype(np.float64)), axis=1)
    assert np.all(dist_own <= dist_best + 1e-6)


class TestInit:
    def test_density_is_quantiles(self):
        x = np.random.default_rng(4).permutation(np.arange(100.0))
        c = C.init_centroids(x, 4, init="density")
        np.testing.assert_allclose(c, [12.375, 37.125, 61.875, 86.625])
        y = np.random.default_rng(8).laplace(size=1001)
        np.testing.assert_allclose(
            C.init_centroids(y, 16, init="density"), np.quantile(y, (np.arange(16) + 0.5) / 16)
        )

    def test_linear(self):
        x = np.array([2.0, -1.0, 0.5, 5.0])
        np.testing.assert_allclose(C.init_centroids(x, 3, init="linear"), [-1.0, 2.0, 5.0])

    def test_random_distinct_input_values_and_deterministic(self):
        x = np.random.default_rng(6).normal(size=200)
        a = C.init_centroids(x, 10, init="random", seed=1)
        b = C.init_centroids(x, 10, init="random", seed=1)
        c = C.init_centroids(x, 10, init="random", seed=2)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert a.size == 10 and np.all(np.diff(a) > 0) and np.all(np.isin(a, x))

    def test_coinciding_quantiles_merged(self):
        x = np.array([0.0] * 90 + list(range(1, 11)), dtype=np.float64)
        c = C.init_centroids(x, 10, init="density")
        assert np.all(np.diff(c) > 0) and c.size < 10


class TestFewDistinct:
    def test_exact_values(self):
        x = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
        cl = C.kmeans_1d(x, 5)
        np.testing.assert_array_equal(cl.codebook, np.array([1, 2, 3], dtype=np.float32))
        np.testing.assert_array_equal(cl.codes, [2, 0, 2, 1, 0])
        assert cl.num_clusters == 3

    def test_distinct_equals_k(self):
        x = np.array([0.25, -0.5, 0.25, 0.75])
        cl = C.kmeans_1d(x, 3, init="linear")
        np.testing.assert_array_equal(cl.codebook, np.array([-0.5, 0.25, 0.75], dtype=np.float32))
        np.testing.assert_array_equal(C.quantize(x, cl), x.astype(np.float32))

    def test_single_value(self):
        cl = C.kmeans_1d(np.full(7, -0.125), 4)
        np.testing.assert_array_equal(cl.codebook, np.array([-0.125], dtype=np.float32))
        assert not cl.codes.any()

    def test_max_clusters(self):
        x = np.random.default_rng(0).normal(size=1000)
        cl = C.kmeans_1d(x, 65536)
        _check_valid(x, cl)
        np.testing.assert_array_equal(C.quantize(x, cl), x.astype(np.float32))

    def test_float32_rounding_merges(self):
        x = np.array([1.0, 1.0 + 1e-12, 2.0])
        cl = C.kmeans_1d(x, 3)
        _check_valid(x, cl)
        np.testing.assert_array_equal(cl.codebook, np.array([1.0, 2.0], dtype=np.float32))
        np.testing.assert_array_equal(cl.codes, [0, 0, 1])


class TestEmptyClusters:
    def test_outlier_with_linear_init(self):
        # linear init puts two centroids in the empty gap between the bulk and the outlier.
        rng = np.random.default_rng(9)
        x = np.concatenate([rng.normal(0, 1, 1000), [100.0]])
        cl = C.kmeans_1d(x, 4, init="linear")
        _check_valid(x, cl)
        assert cl.num_clusters == 4
        assert cl.codebook[-1] == np.float32(100.0)

    def test_heavy_ties_with_density_init(self):
        x = np.array([0.0] * 900 + list(range(1, 101)), dtype=np.float64)
        cl = C.kmeans_1d(x, 10)
        _check_valid(x, cl)
        assert cl.num_clusters == 10
        # The 900 zeros share the lowest cluster (which may also absorb a few small values).
        assert np.all(cl.codes[:900] == 0) and 0.0 <= cl.codebook[0] < 0.1

    @pytest.mark.parametrize("init", ["density", "linear", "random"])
    @pytest.mark.parametrize("k", [1, 2, 7, 33])
    def test_invariants_on_awkward_data(self, init, k):
        rng = np.random.default_rng(k)
        x = np.concatenate([np.round(rng.laplace(0, 1, 300), 1), [50.0, -40.0], np.zeros(50)])
        cl = C.kmeans_1d(x, k, init=init, seed=k)
        _check_valid(x, cl)
        assert cl.num_clusters == min(k, np.unique(x).size)


def test_deterministic_per_seed():
    x = np.random.default_rng(11).normal(size=3000)
    a = C.kmeans_1d(x, 12, init="random", seed=4)
    b = C.kmeans_1d(x, 12, init="random", seed=4)
    np.testing.assert_array_equal(a.codebook, b.codebook)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_input_shape_and_order():
    x = np.array([[0.9, -1.0], [1.1, -0.9]], dtype=np.float32)
    before = x.copy()
    cl = C.kmeans_1d(x, 2)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(cl.codes, [1, 0, 1, 0])  # row-major order
    q = C.quantize(x, cl)
    assert q.shape == (2, 2) and q.dtype == np.float32
    np.testing.assert_allclose(q, [[1.0, -0.95], [1.0, -0.95]], rtol=1e-6)


def test_max_iter_zero_uses_initial_assignment():
    x = np.array([0.0, 1.0, 2.0, 3.0, 30.0])
    # linear init: centroids 0, 15, 30 -> clusters {0,1,2,3}, {}, {30}; the empty
    # one cannot be re-seeded without an iteration.
    cl = C.kmeans_1d(x, 3, init="linear", max_iter=0)
    _check_valid(x, cl)
    np.testing.assert_allclose(cl.codebook, [1.5, 30.0], rtol=1e-6)
    # With iterations it is re-seeded at 0 (farthest from 1.5, lower end first),
    # then Lloyd settles on {0,1}, {2,3}, {30}.
    full = C.kmeans_1d(x, 3, init="linear")
    np.testing.assert_allclose(full.codebook, [0.5, 2.5, 30.0], rtol=1e-6)
    np.testing.assert_array_equal(full.codes, [0, 0, 1, 1, 2])


def test_two_million_values():
    rng = np.random.default_rng(12)
    x = rng.normal(0, 0.05, size=2_000_000).astype(np.float32)
    # Lloyd converges slowly near a fixed point; iterations are O(k log n), so
    # let it run to convergence.
    cl = C.kmeans_1d(x, 16, max_iter=1000)
    _check_valid(x, cl)
    assert cl.num_clusters == 16
    x64 = x.astype(np.float64)
    counts = np.bincount(cl.codes, minlength=16)
    np.testing.assert_allclose(cl.codebook, np.bincount(cl.codes, weights=x64) / counts, rtol=1e-5)
    # Converged: every value sits in the cell of its own centroid, up to the
    # float32 rounding of the codebook moving a cell boundary a hair.
    mids = (cl.codebook[:-1].astype(np.float64) + cl.codebook[1:]) / 2
    off = np.flatnonzero(np.searchsorted(mids, x64, side="left") != cl.codes)
    assert off.size < 20
    assert np.all(np.min(np.abs(x64[off, None] - mids[None, :]), axis=1) < 1e-6)
    # Symmetric data -> nearly symmetric codebook.
    np.testing.assert_allclose(cl.codebook, -cl.codebook[::-1], atol=2e-3)


def test_empty_input():
    cl = C.kmeans_1d(np.array([], dtype=np.float32), 8)
    assert cl.codebook.shape == (0,) and cl.codebook.dtype == np.float32
    assert cl.codes.shape == (0,) and cl.codes.dtype == np.uint16
    assert C.quantize(np.array([]), cl).shape == (0,)


class TestErrors:
    @pytest.mark.parametrize("k", [0, -1, 65537, 2.5])
    def test_bad_clusters(self, k):
        with pytest.raises(ValueError, match="clusters"):
            C.kmeans_1d(np.ones(3), k)

    def test_bad_init(self):
        with pytest.raises(ValueError, match="init"):
            C.kmeans_1d(np.arange(10.0), 3, init="kmeans++")

    def test_nan_inf(self):
        with pytest.raises(ValueError, match="NaN"):
            C.kmeans_1d(np.array([1.0, np.nan]), 2)
        with pytest.raises(ValueError, match="Inf"):
            C.kmeans_1d(np.array([1.0, np.inf]), 2)

    def test_bad_iter_tol(self):
        with pytest.raises(ValueError, match="max_iter"):
            C.kmeans_1d(np.arange(10.0), 3, max_iter=-1)
        with pytest.raises(ValueError, match="tol"):
            C.kmeans_1d(np.arange(10.0), 3, tol=-1.0)

    def test_quantize_size_mismatch(self):
        cl = C.kmeans_1d(np.arange(10.0), 3)
        with pytest.raises(ValueError, match="codes"):
            C.quantize(np.arange(9.0), cl)
