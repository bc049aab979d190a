"""Outliers stored exactly apart from the filter (weightless.codec: encode_clustered(outliers=...),
choose_outliers, split_outliers; docs/FALSE_POSITIVES.md)."""

from __future__ import annotations

import numpy as np
import pytest

from weightless.clustered import prune_and_cluster
from weightless.codec import (
    DEFAULT_FP_RATE,
    EncodedLayer,
    choose_cell_bits,
    choose_outliers,
    encode_clustered,
    encode_layer,
    split_outliers,
    value_bits_for,
)
from weightless.filter import BloomierFilter
from weightless.quality import measure


def _heavy(shape: tuple[int, int] = (256, 300), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.laplace(scale=0.02, size=shape)
    idx = rng.choice(w.size, size=w.size // 300, replace=False)
    w.reshape(-1)[idx] = np.exp(rng.uniform(np.log(0.3), np.log(15.0), idx.size)) * rng.choice([-1, 1], idx.size)
    return w.astype(np.float32)


def _gaussian(shape: tuple[int, int] = (256, 300), seed: int = 1) -> np.ndarray:
    return (0.02 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _plain(clustered, cell_bits: int | None = None, seed: int = 0) -> EncodedLayer:
    """The filter of every kept weight, built as encode_clustered did before outliers."""
    k = len(clustered.codebook)
    t = cell_bits if cell_bits is not None else choose_cell_bits(k, DEFAULT_FP_RATE)
    f = BloomierFilter(clustered.positions.astype(np.uint64), clustered.codes, value_bits=value_bits_for(k),
                       cell_bits=t, seed=seed, arity=4)
    return EncodedLayer(clustered.shape, clustered.codebook, f, f.count_decoded(clustered.size, k) - clustered.kept)


def test_split_outliers_partitions_the_clustered_tensor() -> None:
    c = prune_and_cluster(_heavy(), sparsity=0.92, clusters=16)
    rest, out = split_outliers(c, 3)
    assert len(out.codebook) == 3 and len(rest.codebook) == 13
    assert np.all(np.diff(rest.codebook) > 0) and np.all(np.diff(out.codebook) > 0)
    big = np.sort(np.abs(c.codebook))[-3:]
    assert np.array_equal(np.sort(np.abs(out.codebook)), big)
    assert np.array_equal(rest.dense() + out.dense(), c.dense())
    assert np.intersect1d(rest.positions, out.positions).size == 0 and rest.kept + out.kept == c.kept


@pytest.mark.parametrize("option", ["auto", 1, 5])
def test_decode_with_outliers_equals_clustered_at_kept_positions(option: object) -> None:
    w = _heavy()
    c = prune_and_cluster(w, sparsity=0.92, clusters=16)
    layer = encode_clustered(c, cell_bits=8, outliers=option)  # type: ignore[arg-type]
    assert layer.outliers is not None
    if option != "auto":
        assert len(layer.outliers.codebook) == option
    decoded = layer.decode()
    assert np.array_equal(decoded.reshape(-1)[c.positions], c.values())
    measure(w, decoded, c)  # raises if any kept position differs
    for dtype in (np.float64, np.float16):  # the chunked path overlays too
        assert np.array_equal(layer.decode(dtype=dtype).reshape(-1)[c.positions], c.values().astype(dtype))
    out = np.full(layer.shape, 7.0, np.float32)
    assert np.array_equal(layer.decode(out=out), decoded)
    # false positives: what is nonzero outside the kept positions
    zeros = np.ones(c.size, bool)
    zeros[c.positions] = False
    assert layer.false_positives == np.count_nonzero(decoded.reshape(-1)[zeros])


def test_false_positives_bounded_by_the_largest_filter_centroid() -> None:
    w = _heavy()
    c = prune_and_cluster(w, sparsity=0.92, clusters=16)
    before = encode_clustered(c, cell_bits=8, outliers=None)
    after = encode_clustered(c, cell_bits=8, outliers="auto")
    assert after.outliers is not None
    zeros = np.ones(c.size, bool)
    zeros[c.positions] = False
    spurious_before = before.decode().reshape(-1)[zeros]
    spurious_after = after.decode().reshape(-1)[zeros]
    limit = np.abs(after.codebook).max()
    assert np.abs(spurious_after).max() <= limit < np.abs(c.codebook).max()
    assert np.abs(spurious_before).max() > limit  # without outliers, large centroids were hit
    assert not np.isin(spurious_after[spurious_after != 0], after.outliers.codebook).any()
    q_before, q_after = measure(w, before.decode(), c), measure(w, after.decode(), c)
    assert q_after.relative_error_clustered < q_before.relative_error_clustered / 5


def test_off_switch_gives_the_plain_filter_bytes() -> None:
    for w in (_heavy(), _gaussian()):
        c = prune_and_cluster(w, sparsity=0.92, clusters=16)
        for cell_bits in (None, 8):
            off = encode_clustered(c, cell_bits=cell_bits, outliers=None)
            assert off.outliers is None
            assert off.to_bytes() == _plain(c, cell_bits).to_bytes()
            assert off.nbytes == _plain(c, cell_bits).nbytes
        assert encode_layer(w, sparsity=0.92, clusters=16, cell_bits=8, outliers=None).to_bytes() == off.to_bytes()


def test_auto_leaves_a_gaussian_layer_alone() -> None:
    w = _gaussian()
    c = prune_and_cluster(w, sparsity=0.92, clusters=16)
    assert choose_outliers(c, cell_bits=8) == 0
    auto = encode_layer(w, sparsity=0.92, clusters=16, cell_bits=8)  # "auto" is the default
    assert auto.outliers is None
    assert auto.to_bytes() == encode_layer(w, sparsity=0.92, clusters=16, cell_bits=8, outliers=None).to_bytes()


def test_auto_choice() -> None:
    c = prune_and_cluster(_heavy(), sparsity=0.92, clusters=16)
    m = choose_outliers(c, cell_bits=8)
    assert 0 < m < 16
    # with t = 24 the false positives' error is below the policy's floor: outliers move only
    # where they take fewer bytes than their filter cells (24.8 bits a key)
    assert encode_clustered(c, cell_bits=24).nbytes <= encode_clustered(c, cell_bits=24, outliers=None).nbytes
    assert choose_outliers(c, cell_bits=8, max_fraction=0.0) == 0
    layer = encode_clustered(c, cell_bits=8)
    assert layer.outliers is not None and len(layer.outliers.codebook) == m
    assert layer.outliers.kept <= 0.25 * c.kept
    assert layer.nbytes == encode_clustered(c, cell_bits=8, outliers=m).nbytes
    # without cell_bits, t is chosen for the clusters left in the filter
    free = encode_clustered(c)
    assert free.outliers is not None
    assert free.cell_bits == choose_cell_bits(len(free.codebook), DEFAULT_FP_RATE)


def test_outlier_layers_refuse_the_v1_layer_bytes_and_bad_options() -> None:
    c = prune_and_cluster(_heavy(), sparsity=0.92, clusters=16)
    layer = encode_clustered(c, cell_bits=8, outliers=2)
    with pytest.raises(ValueError, match="outliers"):
        layer.to_bytes()
    assert "outliers=" in repr(layer)
    for bad in ("some", -1, 16, 2.5, True):
        with pytest.raises(ValueError, match="outliers"):
            encode_clustered(c, cell_bits=8, outliers=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        EncodedLayer((3, 3), layer.codebook, layer.filter, 0, layer.outliers)
