"""Tests for weightless/baselines.py (Deep Compression and CSR+zstd storage estimates)."""

from __future__ import annotations

import importlib
import importlib.util
import math

import numpy as np
import pytest

from weightless import baselines as B


def _decode_stream(idx: np.ndarray, val: np.ndarray, num_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of relative_index_stream: positions and codes of the real entries."""
    at = np.cumsum(idx + 1) - 1
    real = val != num_clusters
    return at[real], val[real]


class TestHuffman:
    def test_textbook_example(self):
        # CLRS 16.3: a..f with these frequencies -> lengths 1,3,3,3,4,4, 224 bits.
        freqs = np.array([45, 13, 12, 16, 9, 5])
        np.testing.assert_array_equal(B.huffman_code_lengths(freqs), [1, 3, 3, 3, 4, 4])

    def test_single_symbol_costs_one_bit(self):
        assert B.huffman_bits(np.full(10, 7), 16) == 10
        lengths = B.huffman_code_lengths(np.array([0, 0, 5, 0]))
        np.testing.assert_array_equal(lengths, [0, 0, 1, 0])

    def test_empty_stream(self):
        assert B.huffman_bits(np.array([], dtype=np.int64), 4) == 0

    def test_two_symbols(self):
        assert B.huffman_bits(np.array([0, 0, 0, 1]), 2) == 4

    def test_kraft_and_entropy_bounds(self):
        rng = np.random.default_rng(0)
        for _ in range(20):
            freqs = rng.integers(0, 1000, size=rng.integers(2, 300))
            freqs[rng.integers(0, freqs.size, 2)] += 1  # at least one used symbol
            lengths = B.huffman_code_lengths(freqs)
            used = freqs > 0
            assert np.all((lengths > 0) == used)
            if used.sum() > 1:
                # A full prefix code: Kraft sum exactly 1.
                assert math.isclose(np.sum(2.0 ** -lengths[used]), 1.0)
                p = freqs[used] / freqs.sum()
                entropy = -np.sum(p * np.log2(p))
                avg = np.dot(p, lengths[used])
                assert entropy - 1e-9 <= avg < entropy + 1


class TestRelativeIndex:
    def test_hand_example_with_filler(self):
        # 1x40 matrix, index_bits=4: a stored entry skips at most 15 zeros, so
        # consecutive entries are at most 16 apart.
        # position  2: 2 zeros skipped              -> (2, code 1)
        # position  3: 0 zeros                      -> (0, code 0)
        # position 30: 26 zeros > 15 -> filler at 3 + 16 = 19 (15, zero), then 10 -> (10, code 2)
        # position 39: 8 zeros                      -> (8, code 1)
        positions = np.array([2, 3, 30, 39])
        codes = np.array([1, 0, 2, 1])
        idx, val = B.relative_index_stream(positions, codes, 3, index_bits=4)
        assert idx.tolist() == [2, 0, 15, 10, 8]
        assert val.tolist() == [1, 0, 3, 2, 1]  # 3 = the "zero" symbol (num_clusters)

        dc = B.deep_compression_nbytes(positions, codes, 3, (1, 40), index_bits=4)
        assert dc["entries"] == 5 and dc["fillers"] == 1
        # Index stream: 5 distinct symbols once each -> lengths 2,2,2,3,3 = 12 bits.
        assert dc["index_bits_huffman"] == 12
        # Value stream: frequencies {1:2, 0:1, 2:1, 3:1} -> optimal total 10 bits.
        assert dc["value_bits_huffman"] == 10
        assert dc["codebook_bytes"] == 12
        assert dc["huffman_tables_bytes"] == 16 + 4
        assert dc["total"] == 2 + 2 + 12 + 20
        # Fixed width: 5 entries * (4 index bits + ceil(log2(4)) = 2 value bits) = 30 bits -> 4 bytes.
        assert dc["total_no_huffman"] == 4 + 12

    def test_filler_chain_and_boundaries(self):
        idx, val = B.relative_index_stream(np.array([0, 39]), np.array([0, 0]), 1, index_bits=4)
        # 38 zeros: fillers at 16 and 32, then 6 zeros to 39.
        assert idx.tolist() == [0, 15, 15, 6] and val.tolist() == [0, 1, 1, 0]
        # Exactly 15 zeros fit, 16 need a filler.
        assert B.relative_index_stream(np.array([0, 16]), np.array([0, 0]), 1, index_bits=4)[0].tolist() == [0, 15]
        assert B.relative_index_stream(np.array([0, 17]), np.array([0, 0]), 1, index_bits=4)[0].tolist() == [0, 15, 0]
        # The first entry counts from the start of the matrix.
        assert B.relative_index_stream(np.array([16]), np.array([0]), 1, index_bits=4)[0].tolist() == [15, 0]

    @pytest.mark.parametrize("index_bits", [4, 5, 8])
    def test_stream_decodes_back(self, index_bits):
        rng = np.random.default_rng(index_bits)
        size = 20000
        positions = np.sort(rng.choice(size, 700, replace=False))
        codes = rng.integers(0, 16, 700)
        idx, val = B.relative_index_stream(positions, codes, 16, index_bits=index_bits)
        assert idx.max() < 2**index_bits
        pos2, codes2 = _decode_stream(idx, val, 16)
        np.testing.assert_array_equal(pos2, positions)
        np.testing.assert_array_equal(codes2, codes)
        dc = B.deep_compression_nbytes(positions, codes, 16, (100, 200), index_bits=index_bits)
        gaps = np.diff(positions, prepend=-1) - 1
        assert dc["fillers"] == int(np.sum(gaps // 2**index_bits))
        assert dc["entries"] == 700 + dc["fillers"]

    def test_empty(self):
        dc = B.deep_compression_nbytes(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 4, (10, 10))
        assert dc["entries"] == 0 and dc["index_bits_huffman"] == 0
        assert dc["total"] == 16 + 32 + 5


class TestCsrZstd:
    def test_round_trip(self):
        zstandard = pytest.importorskip("zstandard")
        rng = np.random.default_rng(3)
        shape = (50, 70)
        positions = np.sort(rng.choice(50 * 70, 300, replace=False))
        codes = rng.integers(0, 16, 300)
        codebook = np.linspace(-1, 1, 16, dtype=np.float32)
        blob, raw_len = B.csr_zstd_blob(positions, codes, 16, shape, codebook=codebook)
        raw = zstandard.ZstdDecompressor().decompress(blob)
        assert len(raw) == raw_len == 51 * 4 + 300 * 2 + 300 + 16 * 4
        indptr = np.frombuffer(raw, "<i4", 51, 0)
        indices = np.frombuffer(raw, "<u2", 300, 51 * 4)
        codes2 = np.frombuffer(raw, "u1", 300, 51 * 4 + 600)
        codebook2 = np.frombuffer(raw, "<f4", 16, 51 * 4 + 900)
        rows = np.repeat(np.arange(50), np.diff(indptr))
        np.testing.assert_array_equal(rows * 70 + indices, positions)
        np.testing.assert_array_equal(codes2, codes)
        np.testing.assert_array_equal(codebook2, codebook)
        assert indptr[0] == 0 and indptr[-1] == 300

        sizes = B.csr_zstd_nbytes(positions, codes, 16, shape, codebook=codebook)
        assert sizes["compressed"] == sizes["total"] == len(blob)
        assert sizes["raw"] == raw_len
        without = B.csr_zstd_nbytes(positions, codes, 16, shape)
        assert without["total"] == without["compressed"] + 64 and without["raw"] == raw_len

    def test_wide_dtypes(self):
        arrays = B.csr_arrays(np.array([5, 70000]), np.array([0, 299]), 300, (2, 70000))
        assert arrays["indices"].dtype == np.int32 and arrays["indices"].tolist() == [5, 0]
        assert arrays["codes"].dtype == np.uint16
        assert arrays["indptr"].tolist() == [0, 1, 2]
        narrow = B.csr_arrays(np.array([1]), np.array([255]), 256, (3, 65536))
        assert narrow["indices"].dtype == np.uint16 and narrow["codes"].dtype == np.uint8


def test_dense():
    assert B.dense_float32_nbytes((784, 300)) == 940800


class TestValidation:
    def test_unsorted(self):
        with pytest.raises(ValueError, match="increasing"):
            B.deep_compression_nbytes(np.array([3, 1]), np.array([0, 0]), 2, (1, 5))

    def test_duplicate(self):
        with pytest.raises(ValueError, match="increasing"):
            B.csr_arrays(np.array([1, 1]), np.array([0, 0]), 2, (1, 5))

    def test_out_of_range(self):
        with pytest.raises(ValueError, match="lie in"):
            B.deep_compression_nbytes(np.array([0, 5]), np.array([0, 0]), 2, (1, 5))

    def test_bad_code(self):
        with pytest.raises(ValueError, match="codes"):
            B.deep_compression_nbytes(np.array([0, 1]), np.array([0, 2]), 2, (1, 5))

    def test_length_mismatch(self):
        with pytest.raises(ValueError, match="differ"):
            B.deep_compression_nbytes(np.array([0, 1]), np.array([0]), 2, (1, 5))

    def test_index_bits(self):
        with pytest.raises(ValueError, match="index_bits"):
            B.deep_compression_nbytes(np.array([0]), np.array([0]), 1, (1, 5), index_bits=0)


def test_lenet300_fc0_plausible():
    """784x300 at 8% density, 16 clusters: the paper quotes ~40x for Deep Compression."""
    from weightless import cluster, prune
    rng = np.random.default_rng(0)
    shape = (784, 300)
    w = rng.normal(0, 0.05, size=shape).astype(np.float32)
    mask = prune.prune_mask(w, sparsity=0.92)
    positions = np.flatnonzero(mask)
    assert positions.size == 18816
    cl = cluster.kmeans_1d(w.ravel()[positions], 16)
    dense = B.dense_float32_nbytes(shape)
    dc = B.deep_compression_nbytes(positions, cl.codes, 16, shape, index_bits=5)
    factor = dense / dc["total"]
    print(f"\nDC (5-bit, Huffman): {dc['total']} B = {factor:.1f}x; "
          f"no Huffman: {dc['total_no_huffman']} B = {dense / dc['total_no_huffman']:.1f}x")
    assert 10 < factor < 80
    assert dc["total"] < dc["total_no_huffman"]
    if importlib.util.find_spec("zstandard") is not None:
        z = B.csr_zstd_nbytes(positions, cl.codes, 16, shape, codebook=cl.codebook)
        print(f"CSR+zstd-19: {z['total']} B = {dense / z['total']:.1f}x (raw {z['raw']} B)")
        assert 5 < dense / z["total"] < 80
        assert z["total"] < z["raw"]
