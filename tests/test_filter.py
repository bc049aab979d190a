"""BloomierFilter: exact read-back, false-positive rate, space, determinism, format, errors."""

import functools
import math
import pickle

import numpy as np
import pytest

import weightless
from weightless import BloomierFilter

VALUE_CELL_BITS = [(1, 2), (4, 8), (4, 9), (5, 12), (8, 16), (16, 32)]
SIZES = [0, 1, 2, 3, 17, 1000, 11500, 11511, 100000, 1000000]
LAYOUTS = ["chunked", "fuse"]


@functools.lru_cache(maxsize=4)
def _random_keys(n, seed):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**64, size=n + n // 8 + 8, dtype=np.uint64, endpoint=False)
    keys = rng.permutation(np.unique(keys))[:n]
    keys.flags.writeable = False
    return keys


def make_keys(n, kind, seed=0):
    if kind == "random":
        return _random_keys(n, seed).copy()
    # An arithmetic sequence, as the positions of a regularly pruned layer.
    return np.arange(n, dtype=np.uint64) * np.uint64(7) + np.uint64(3)


def make_values(n, value_bits, seed=0):
    return np.random.default_rng(seed + 1).integers(0, 2**value_bits, size=n, dtype=np.uint32)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("value_bits,cell_bits", VALUE_CELL_BITS)
@pytest.mark.parametrize("kind", ["random", "arithmetic"])
def test_every_stored_key_reads_back(value_bits, cell_bits, kind, layout):
    for n in SIZES:
        keys = make_keys(n, kind, seed=n)
        values = make_values(n, value_bits, seed=n)
        f = BloomierFilter(keys, values, value_bits=value_bits, cell_bits=cell_bits, seed=n, layout=layout)
        assert f.layout == layout
        assert len(f) == n
        got = f.lookup(keys)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, values.astype(np.int64), err_msg=f"n={n}")
        # The raw word of a stored key is its value with the top cell_bits - value_bits bits zero.
        np.testing.assert_array_equal(f.raw(keys), values, err_msg=f"n={n}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("arity", [3, 4])
def test_construction_succeeds_for_every_small_size(arity, layout):
    sizes = list(range(0, 2001)) + list(range(2001, 20001, 97)) + [20000]
    for n in sizes:
        keys = make_keys(n, "random", seed=n)
        values = make_values(n, 4, seed=n)
        f = BloomierFilter(keys, values, value_bits=4, cell_bits=8, arity=arity, layout=layout)
        assert np.array_equal(f.lookup(keys), values), f"n={n}"


def test_construction_succeeds_for_every_n_up_to_20000():
    # The default layout, every n from 0 to 20000 (the keys of size n + 1 extend those of size n).
    keys, values = make_keys(20_000, "random", seed=12), make_values(20_000, 4, seed=12)
    for n in range(0, 20_001):
        f = BloomierFilter(keys[:n], values[:n], value_bits=4, cell_bits=8, threads=1)
        assert np.array_equal(f.raw(keys[:n]), values[:n]), f"n={n}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("value_bits,cell_bits", [(1, 2), (4, 8), (4, 9), (5, 12), (8, 16), (16, 32)])
def test_false_positive_rate_matches_two_to_the_r_minus_t(value_bits, cell_bits, layout):
    n, absent = 200_000, 2_000_000
    keys = make_keys(n + absent, "random", seed=99)
    f = BloomierFilter(keys[:n], make_values(n, value_bits), value_bits=value_bits, cell_bits=cell_bits,
                       layout=layout)
    got = f.lookup(keys[n:])
    p = 2.0 ** (value_bits - cell_bits)
    false_positives = int(np.count_nonzero(got >= 0))
    mean, sigma = absent * p, math.sqrt(absent * p * (1 - p))
    assert abs(false_positives - mean) <= 6 * sigma + 1, (false_positives, mean, sigma)
    # A false positive still returns a value that fits in value_bits.
    assert got.max() < 2**value_bits


@pytest.mark.parametrize("layout", LAYOUTS)
def test_false_positive_rate_over_positions_of_a_layer(layout):
    # Positions 0..N of a matrix, 8% kept: the decoder's access pattern.
    rng = np.random.default_rng(5)
    size = 784 * 300
    keys = np.flatnonzero(rng.random(size) < 0.08).astype(np.uint64)
    f = BloomierFilter(keys, make_values(len(keys), 4), value_bits=4, cell_bits=9, layout=layout)
    decoded = f.lookup_range(0, size)
    np.testing.assert_array_equal(decoded, f.lookup(np.arange(size, dtype=np.uint64)))
    absent = np.ones(size, dtype=bool)
    absent[keys.astype(np.int64)] = False
    fp = np.count_nonzero(decoded[absent] >= 0)
    p, m = 2.0**-5, absent.sum()
    assert abs(fp - m * p) <= 6 * math.sqrt(m * p * (1 - p)), fp


EMPTY_BYTES = len(BloomierFilter(np.array([], dtype=np.uint64), [], value_bits=4, cell_bits=8).to_bytes())


def space_bound(n):
    """The issue's bound on cells per key of the default layout at n keys."""
    return 1.04 if n >= 10_000 else 1.05 if n >= 1000 else 1.10


def test_fuse_only_options_choose_the_fuse_layout():
    keys, values = make_keys(5000, "random"), make_values(5000, 4)
    assert BloomierFilter(keys, values, value_bits=4, cell_bits=8).layout == "chunked"
    assert BloomierFilter(keys, values, value_bits=4, cell_bits=8, piece_keys=1000).layout == "fuse"
    assert BloomierFilter(keys, values, value_bits=4, cell_bits=8, block_keys=64).layout == "fuse"


def test_empty_filter_is_at_most_32_bytes():
    assert EMPTY_BYTES <= 32
    for t in (1, 8, 32):
        assert BloomierFilter(np.array([], dtype=np.uint64), [], value_bits=1, cell_bits=t).nbytes == EMPTY_BYTES


@pytest.mark.parametrize("cell_bits", [4, 8, 12, 16])
@pytest.mark.parametrize("kind", ["random", "arithmetic"])
def test_space_of_the_default_layout(cell_bits, kind):
    # Everything that grows with n counts: cells, chunk boundaries and seeds, padding.
    sizes = [100, 101, 250, 999, 1000, 1025, 2000, 3000, 5000, 10_000, 50_000, 100_000, 1_000_000, 4_000_000]
    for n in sizes:
        keys = make_keys(n, kind, seed=n)
        f = BloomierFilter(keys, make_values(n, min(cell_bits, 4)), value_bits=min(cell_bits, 4), cell_bits=cell_bits)
        factor = (f.nbytes - EMPTY_BYTES) * 8 / (n * cell_bits)
        assert factor <= space_bound(n), (n, factor)


@pytest.mark.parametrize("cell_bits", [8, 12, 16])
def test_space_at_one_million_keys_fuse(cell_bits):
    n = 1_000_000
    keys = make_keys(n, "random", seed=1)
    f = BloomierFilter(keys, make_values(n, 4), value_bits=4, cell_bits=cell_bits, arity=3, layout="fuse")
    factor = f.nbytes * 8 / (n * cell_bits)
    assert factor <= 1.13, factor
    # Cells are bit-packed at exactly cell_bits: the file is the cells plus a small header, a
    # directory entry per piece and 4 bytes per block (well under 0.1% of the file).
    assert f.nbytes - math.ceil(f.num_cells * cell_bits / 8) < 100 + 32 * f.num_pieces + 4 * f.num_blocks
    assert 4 * f.num_blocks < 0.001 * f.nbytes


@pytest.mark.parametrize("layout", LAYOUTS)
def test_four_wise_is_smaller(layout):
    n = 1_000_000
    keys = make_keys(n, "arithmetic")
    values = make_values(n, 4)
    f3 = BloomierFilter(keys, values, value_bits=4, cell_bits=8, arity=3, layout=layout)
    f4 = BloomierFilter(keys, values, value_bits=4, cell_bits=8, arity=4, layout=layout)
    assert f4.arity == 4 and f4.nbytes < f3.nbytes
    assert np.array_equal(f4.lookup(keys), values)


def test_chunked_is_deterministic_and_thread_independent():
    keys = make_keys(300_000, "random", seed=3)
    values = make_values(300_000, 5)
    kwargs = dict(value_bits=5, cell_bits=11)
    reference = BloomierFilter(keys, values, seed=7, threads=1, **kwargs).to_bytes()
    for threads in (2, 3, 5):
        assert BloomierFilter(keys, values, seed=7, threads=threads, **kwargs).to_bytes() == reference
    assert BloomierFilter(keys, values, seed=8, **kwargs).to_bytes() != reference
    # The chunks follow the keys' order, whatever the input order.
    order = np.argsort(keys)
    assert BloomierFilter(keys[order], values[order], seed=7, **kwargs).to_bytes() == reference


def test_deterministic_and_thread_independent():
    keys = make_keys(300_000, "random", seed=3)
    values = make_values(300_000, 5)
    kwargs = dict(value_bits=5, cell_bits=11, piece_keys=40_000, layout="fuse")
    reference = BloomierFilter(keys, values, seed=7, threads=1, **kwargs).to_bytes()
    assert BloomierFilter(keys, values, seed=7, threads=2, **kwargs).to_bytes() == reference
    assert BloomierFilter(keys, values, seed=7, threads=5, **kwargs).to_bytes() == reference
    assert BloomierFilter(keys, values, seed=8, **kwargs).to_bytes() != reference
    # One piece: the threads share the work inside it.
    one = BloomierFilter(keys, values, value_bits=5, cell_bits=11, threads=1, layout="fuse")
    assert one.num_pieces == 1
    fuse = BloomierFilter(keys, values, value_bits=5, cell_bits=11, threads=2, layout="fuse")
    assert fuse.to_bytes() == one.to_bytes()


def test_sorted_and_shuffled_keys_read_back_alike():
    keys = make_keys(50_000, "random", seed=4)
    values = make_values(50_000, 6)
    order = np.argsort(keys)
    a = BloomierFilter(keys, values, value_bits=6, cell_bits=10, piece_keys=8000, layout="fuse")
    b = BloomierFilter(keys[order], values[order], value_bits=6, cell_bits=10, piece_keys=8000, layout="fuse")
    probe = make_keys(100_000, "random", seed=44)
    assert np.array_equal(a.lookup(keys), values) and np.array_equal(b.lookup(keys), values)
    assert a.num_pieces > 1 and b.num_pieces > 1
    # Different piece boundaries, same contract: absent keys are mostly rejected by both.
    assert np.mean(a.lookup(probe) >= 0) < 0.1 and np.mean(b.lookup(probe) >= 0) < 0.1


@pytest.mark.parametrize("layout,arity,options", [("chunked", 4, dict(chunk_keys=300)), ("chunked", 3, {}),
                                                  ("fuse", 3, dict(piece_keys=3000))])
def test_round_trip_and_pickle(layout, arity, options):
    keys = make_keys(20_000, "arithmetic")
    values = make_values(20_000, 5)
    f = BloomierFilter(keys, values, value_bits=5, cell_bits=12, arity=arity, layout=layout, **options)
    data = f.to_bytes()
    assert isinstance(data, bytes) and len(data) == f.nbytes
    for form in (data, bytearray(data), memoryview(data), np.frombuffer(data, dtype=np.uint8)):
        g = BloomierFilter.from_bytes(form)
        assert g.to_bytes() == data
    g = BloomierFilter.from_bytes(data)
    assert (g.value_bits, g.cell_bits, g.arity, len(g), g.num_cells) == (5, 12, arity, 20_000, f.num_cells)
    assert g.layout == layout and g.num_pieces == f.num_pieces
    probe = np.arange(0, 200_000, dtype=np.uint64)
    assert np.array_equal(g.lookup(probe), f.lookup(probe))
    h = pickle.loads(pickle.dumps(f))
    assert h.to_bytes() == data
    assert "BloomierFilter(keys=20000" in repr(f)


def test_header_is_what_format_md_says():
    f = BloomierFilter(np.array([1, 2, 3], dtype=np.uint64), np.array([0, 1, 2]), value_bits=2, cell_bits=5, seed=9)
    data = f.to_bytes()
    assert data[:4] == b"WLBF"
    assert int.from_bytes(data[4:6], "little") == weightless.FORMAT_VERSION == 3
    assert (data[6], data[7], data[8]) == (4, 2, 5)
    assert (data[9], data[10]) == (0, 0)  # one chunk: no boundaries
    assert int.from_bytes(data[12:14], "little") == 1024
    assert int.from_bytes(data[14:20], "little") == 3
    assert int.from_bytes(data[20:28], "little") == 9
    assert f.num_pieces == 1
    import zlib

    assert int.from_bytes(data[-4:], "little") == zlib.crc32(data[:-4])


def test_fuse_header_is_what_format_md_says():
    f = BloomierFilter(np.array([1, 2, 3], dtype=np.uint64), np.array([0, 1, 2]), value_bits=2, cell_bits=5, seed=9,
                       arity=3, layout="fuse")
    data = f.to_bytes()
    assert data[:4] == b"WLBF"
    assert int.from_bytes(data[4:6], "little") == 2
    assert (data[6], data[7], data[8]) == (3, 2, 5)
    assert int.from_bytes(data[12:16], "little") == f.num_pieces == 1
    assert int.from_bytes(data[16:24], "little") == 3
    assert int.from_bytes(data[24:32], "little") == 9
    assert data[32 + 25] == 63 and int.from_bytes(data[32 + 28 : 32 + 32], "little") == f.num_blocks == 1
    import zlib

    assert int.from_bytes(data[-4:], "little") == zlib.crc32(data[:-4])


@pytest.mark.parametrize("layout,options", [("chunked", dict(chunk_keys=500)), ("fuse", dict(piece_keys=2000))])
def test_flipped_bits_and_truncation_are_rejected(layout, options):
    f = BloomierFilter(make_keys(5000, "random"), make_values(5000, 4), value_bits=4, cell_bits=7, layout=layout,
                       **options)
    data = f.to_bytes()
    rng = np.random.default_rng(0)
    bits = list(range(0, 8 * 32 * 4)) + list(rng.integers(0, 8 * len(data), size=300))  # header, directory, cells
    for bit in bits:
        corrupted = bytearray(data)
        corrupted[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ValueError, match="malformed weightless filter"):
            BloomierFilter.from_bytes(bytes(corrupted))
    for length in list(range(0, 200)) + list(rng.integers(200, len(data), size=200)):
        with pytest.raises(ValueError, match="malformed weightless filter"):
            BloomierFilter.from_bytes(data[:length])
    with pytest.raises(ValueError, match="trailing bytes"):
        BloomierFilter.from_bytes(data + b"\0")
    with pytest.raises(ValueError, match="bad magic"):
        BloomierFilter.from_bytes(b"PK\x03\x04" + data[4:])


def test_absurd_sizes_are_refused_before_allocating():
    # A header claiming 2^32 - 1 pieces in a 40-byte buffer.
    header = bytearray(b"WLBF" + (1).to_bytes(2, "little") + bytes([3, 4, 8, 0, 0, 0]))
    header += (2**32 - 1).to_bytes(4, "little") + (10**15).to_bytes(8, "little") + bytes(8)
    with pytest.raises(ValueError, match="does not fit"):
        BloomierFilter.from_bytes(bytes(header) + bytes(8))
    # Version 3: 2^48 - 1 keys in a 40-byte buffer.
    header = bytearray(b"WLBF" + (3).to_bytes(2, "little") + bytes([4, 4, 8, 0, 0, 0]))
    header += (1).to_bytes(2, "little") + (2**48 - 1).to_bytes(6, "little") + bytes(8)
    with pytest.raises(ValueError, match="do not fit"):
        BloomierFilter.from_bytes(bytes(header) + bytes(12))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(keys=[1, 2, 2], values=[0, 1, 2]), "duplicate key 2"),
        (dict(keys=[5, 9, 5, 7], values=[0, 1, 2, 3]), "duplicate key 5"),
        (dict(keys=[1, 2, 3], values=[0, 16, 2]), "values must be < 16"),
        (dict(keys=[1, 2, 3], values=[0, 1]), "differ in length"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], cell_bits=3), r"cell_bits must be in \[value_bits, 32\]"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], cell_bits=33), r"cell_bits must be in"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], value_bits=0, cell_bits=4), r"value_bits must be in \[1, 16\]"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], value_bits=17, cell_bits=20), r"value_bits must be in"),
        (dict(keys=[-1, 2, 3], values=[0, 1, 2]), "keys must be non-negative"),
        (dict(keys=[1, 2, 3], values=[0, -1, 2]), "values must be non-negative"),
        (dict(keys=[[1, 2, 3]], values=[0, 1, 2]), "1-D"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], arity=5), "arity must be 3 or 4"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], threads=0), "threads must be at least 1"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], block_keys=63, layout="fuse"), "block_keys must be at least 64"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], block_keys=64, layout="chunked"), "apply to layout='fuse'"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], piece_keys=64, layout="chunked"), "apply to layout='fuse'"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], chunk_keys=64, layout="fuse"), "applies to layout='chunked'"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], chunk_keys=0), r"chunk_keys must be in \[1, 32768\]"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], chunk_keys=32769), r"chunk_keys must be in"),
        (dict(keys=[1, 2, 3], values=[0, 1, 2], layout="ribbon"), "layout must be"),
    ],
)
def test_bad_input_raises_value_error(kwargs, match):
    options = dict(value_bits=4, cell_bits=8)
    options.update(kwargs)
    keys, values = options.pop("keys"), options.pop("values")
    with pytest.raises(ValueError, match=match):
        BloomierFilter(np.array(keys), np.array(values), **options)


def test_blocks_change_the_layout_not_the_answers():
    # Positions of a layer with empty stretches: one block per piece, or blocks of ~64 keys.
    rng = np.random.default_rng(5)
    keys = np.flatnonzero((rng.random(400_000) < 0.05) & (np.arange(400_000) // 20_000 % 3 != 1)).astype(np.uint64)
    values = make_values(len(keys), 4)
    one = BloomierFilter(keys, values, value_bits=4, cell_bits=9, block_keys=2**20, layout="fuse")
    many = BloomierFilter(keys, values, value_bits=4, cell_bits=9, block_keys=64, layout="fuse")
    assert one.num_blocks == 1 and many.num_blocks > 100
    assert np.array_equal(many.lookup(keys), values) and np.array_equal(one.lookup(keys), values)
    # Same space (4 bytes per block aside), and the absent positions read false positives at
    # the same rate, 2^(r - t) = 1/32.
    assert abs((many.nbytes - 4 * many.num_blocks) - one.nbytes) < 0.01 * one.nbytes
    absent = np.setdiff1d(np.arange(400_000, dtype=np.uint64), keys)
    p, m = 2.0**-5, len(absent)
    for f in (one, many):
        fp = np.count_nonzero(f.lookup(absent) >= 0)
        assert abs(fp - m * p) <= 6 * math.sqrt(m * p * (1 - p)), fp


@pytest.mark.parametrize("layout,options", [("chunked", {}), ("fuse", dict(block_keys=256))])
def test_decode_weights_into_a_new_or_given_buffer(layout, options):
    keys = np.flatnonzero(np.random.default_rng(3).random(200_003) < 0.06).astype(np.uint64)
    f = BloomierFilter(keys, make_values(len(keys), 3), value_bits=3, cell_bits=8, layout=layout, **options)
    book = np.linspace(-1, 1, 6, dtype=np.float32)  # 6 of the 8 values name a cluster
    codes = f.lookup_range(0, 200_003)
    expected = np.where((codes >= 0) & (codes < 6), book[np.clip(codes, 0, 5)], 0).astype(np.float32)
    assert f.decode_weights(200_003, book, threads=1).tobytes() == expected.tobytes()
    out = np.full(200_003, 7.0, dtype=np.float32)
    assert f.decode_weights(200_003, book, threads=2, out=out) is out
    assert out.tobytes() == expected.tobytes()
    assert f.count_decoded(200_003, 6) == np.count_nonzero((codes >= 0) & (codes < 6))
    for bad, match in [(np.zeros(200_003, np.float64), "float32"), (np.zeros(200_002, np.float32), "elements"),
                       (np.zeros(400_006, np.float32)[::2], "contiguous"), ([0.0] * 200_003, "numpy array")]:
        with pytest.raises(ValueError, match=match):
            f.decode_weights(200_003, book, out=bad)
    frozen = np.zeros(200_003, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        f.decode_weights(200_003, book, out=frozen)


@pytest.mark.parametrize("layout,options", [("chunked", {}), ("fuse", dict(piece_keys=50_000))])
def test_duplicates_far_apart_in_a_large_unsorted_input(layout, options):
    keys = make_keys(300_000, "random", seed=8)
    keys[250_000] = keys[17]
    with pytest.raises(ValueError, match="duplicate key"):
        BloomierFilter(keys, make_values(300_000, 4), value_bits=4, cell_bits=8, layout=layout, **options)


def test_non_integer_arrays_are_type_errors():
    with pytest.raises(TypeError, match="unsigned integers"):
        BloomierFilter(np.array([1.0, 2.0]), np.array([0, 1]), value_bits=4, cell_bits=8)
    with pytest.raises(TypeError, match="unsigned integers"):
        BloomierFilter(np.array([1, 2]), np.array([True, False]), value_bits=4, cell_bits=8)
    with pytest.raises(TypeError, match="from_bytes expects bytes"):
        BloomierFilter.from_bytes("WLBF")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_filter_reads_random_words(layout):
    # No keys, no cells: every key reads its hash mask alone, still a false positive at 2^(r - t).
    f = BloomierFilter(np.array([], dtype=np.uint64), [], value_bits=4, cell_bits=12, layout=layout)
    assert len(f) == 0 and f.num_cells == 0
    got = f.lookup_range(0, 100_000)
    p = 2.0**-8
    assert abs(np.count_nonzero(got >= 0) - 100_000 * p) <= 6 * math.sqrt(100_000 * p * (1 - p))
    assert BloomierFilter.from_bytes(f.to_bytes()).to_bytes() == f.to_bytes()
