"""Tests for weightless/prune.py (magnitude pruning)."""

from __future__ import annotations

import numpy as np
import pytest

from weightless import prune as P


def _reference_mask(w: np.ndarray, keep: int) -> np.ndarray:
    """Full-sort reference: largest |w| first, lower flat index first among ties, zeros never."""
    flat = np.abs(w.astype(np.float64).ravel())
    order = np.lexsort((np.arange(flat.size), -flat))  # last key is primary
    chosen = [i for i in order[:keep] if flat[i] != 0]
    mask = np.zeros(flat.size, dtype=bool)
    mask[chosen] = True
    return mask.reshape(w.shape)


class TestSparsity:
    def test_exact_count_and_largest_kept(self):
        rng = np.random.default_rng(1)
        w = rng.permutation(np.arange(1, 1001, dtype=np.float32)) * rng.choice([-1, 1], 1000)
        mask = P.prune_mask(w, sparsity=0.92)
        # (1 - 0.92) * 1000 is 79.99999999999999 in floating point: must keep 80.
        assert mask.sum() == 80
        assert np.all(np.abs(w[mask]) > 920)
        assert np.all(np.abs(w[~mask]) <= 920)

    def test_signs_use_magnitude(self):
        w = np.array([-5.0, 1.0, 3.0, -2.0])
        assert P.prune_mask(w, sparsity=0.5).tolist() == [True, False, True, False]

    def test_rounding_half_up(self):
        w = np.arange(1, 11, dtype=np.float64)
        assert P.prune_mask(w, sparsity=0.25).sum() == 8  # 7.5 -> 8
        assert P.prune_mask(w, sparsity=0.26).sum() == 7  # 7.4 -> 7
        assert P.prune_mask(w, sparsity=0.24).sum() == 8  # 7.6 -> 8

    def test_ties_broken_by_position(self):
        w = np.array([1.0, 2.0, -2.0, 2.0, 3.0])
        # keep 2: 3.0 for sure, then the first of the three |2|'s.
        assert P.prune_mask(w, sparsity=0.6).tolist() == [False, True, False, False, True]
        # keep 3: the first two |2|'s.
        assert P.prune_mask(w, sparsity=0.4).tolist() == [False, True, True, False, True]

    def test_ties_row_major_in_2d(self):
        w = np.ones((3, 4))
        mask = P.prune_mask(w, sparsity=0.5)
        assert mask.shape == (3, 4)
        assert np.flatnonzero(mask).tolist() == [0, 1, 2, 3, 4, 5]

    def test_zeros_never_kept(self):
        w = np.array([0.0, 0.0, 0.0, 1.0, -2.0])
        assert P.prune_mask(w, sparsity=0.0).tolist() == [False, False, False, True, True]
        assert P.prune_mask(w, sparsity=0.2).sum() == 2  # asks for 4, only 2 nonzero
        assert P.prune_mask(w, sparsity=0.8).tolist() == [False, False, False, False, True]

    def test_extremes(self):
        w = np.arange(-6.0, 6.0).reshape(3, 4)
        assert not P.prune_mask(w, sparsity=1.0).any()
        assert np.array_equal(P.prune_mask(w, sparsity=0.0), w != 0)

    @pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.92, 0.999])
    def test_matches_full_sort_reference(self, sparsity):
        rng = np.random.default_rng(7)
        # Coarse rounding creates many ties; some exact zeros too.
        w = np.round(rng.normal(size=(37, 53)), 1).astype(np.float32)
        keep = int(np.floor((1 - sparsity) * w.size + 0.5))
        np.testing.assert_array_equal(P.prune_mask(w, sparsity=sparsity), _reference_mask(w, keep))

    def test_integer_weights(self):
        w = np.array([-128, 5, 0, 127, -3], dtype=np.int8)
        assert P.prune_mask(w, sparsity=0.6).tolist() == [True, False, False, True, False]


class TestThreshold:
    def test_strictly_greater(self):
        w = np.array([-0.5, 0.5, 0.6, -0.7, 0.1])
        assert P.prune_mask(w, threshold=0.5).tolist() == [False, False, True, True, False]

    def test_zero_threshold_keeps_nonzero(self):
        w = np.array([0.0, -1e-30, 1e-30, 0.0])
        assert P.prune_mask(w, threshold=0.0).tolist() == [False, True, True, False]

    def test_huge_threshold_keeps_nothing(self):
        assert not P.prune_mask(np.ones(4), threshold=np.inf).any()


def test_default_keeps_nonzero():
    w = np.array([[0.0, 1.0], [-2.0, 0.0]])
    assert P.prune_mask(w).tolist() == [[False, True], [True, False]]


class TestPrune:
    def test_copy_and_values(self):
        w = np.array([[0.3, -0.1], [0.05, -0.9]], dtype=np.float32)
        before = w.copy()
        out = P.prune(w, sparsity=0.5)
        np.testing.assert_array_equal(w, before)  # input untouched
        assert out is not w and out.dtype == np.float32 and out.shape == w.shape
        np.testing.assert_array_equal(out, np.array([[0.3, 0.0], [0.0, -0.9]], dtype=np.float32))

    def test_threshold(self):
        w = np.array([1.0, -2.0, 0.5])
        np.testing.assert_array_equal(P.prune(w, threshold=0.9), [1.0, -2.0, 0.0])

    def test_mask_input_untouched(self):
        w = np.array([3.0, 1.0, 2.0])
        P.prune_mask(w, sparsity=0.5)
        np.testing.assert_array_equal(w, [3.0, 1.0, 2.0])


class TestErrors:
    def test_both_given(self):
        with pytest.raises(ValueError, match="not both"):
            P.prune_mask(np.ones(3), sparsity=0.5, threshold=0.1)

    @pytest.mark.parametrize("s", [-0.1, 1.1, float("nan")])
    def test_bad_sparsity(self, s):
        with pytest.raises(ValueError, match="sparsity"):
            P.prune_mask(np.ones(3), sparsity=s)

    @pytest.mark.parametrize("t", [-1.0, float("nan")])
    def test_bad_threshold(self, t):
        with pytest.raises(ValueError, match="threshold"):
            P.prune_mask(np.ones(3), threshold=t)

    def test_nan_weights(self):
        with pytest.raises(ValueError, match="NaN"):
            P.prune_mask(np.array([1.0, np.nan]), sparsity=0.5)
        with pytest.raises(ValueError, match="NaN"):
            P.prune(np.array([1.0, np.nan]))

    def test_inf_weights(self):
        with pytest.raises(ValueError, match="Inf"):
            P.prune_mask(np.array([1.0, -np.inf]), threshold=0.5)

    def test_non_numeric(self):
        with pytest.raises(TypeError):
            P.prune_mask(np.array(["a", "b"]))
