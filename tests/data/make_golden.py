"""Writes the golden .wl files the C API test (tests/cpp/test_c_api.cpp) decodes.

    python3 tests/data/make_golden.py      # rewrites tests/data/*.wl and *.expected.bin
    python3 tests/data/make_golden.py chunked  # only chunked.wl (the others stay as they were)

Every file but v1_basic.wl is a version 3 container (docs/FORMAT.md, "The model container,
version 3"). structures.wl holds filters of the fuse layout (filter format version 2, asked
for by piece_keys / block_keys); the others the chunked layout (filter version 3).
outliers.wl holds a bloomier payload with an outliers section, built by hand here;
float16.wl small float tensors stored as IEEE half floats (compress's small_float16).
v1_basic.wl is basic.wl as written in container version 1, kept as it was: the Python package
must still read it (the C API refuses it as unsupported).

For each NAME.wl, NAME.expected.bin holds what `weightless.decompress` returns: every tensor in
file order, its elements in C order as little-endian bytes of its dtype, concatenated without
padding. The C++ test decodes each tensor with the C API and compares bytes, natively and on
AArch64 (under qemu): files written on one machine decode identically on another.
"""

import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from weightless import _core  # noqa: E402
from weightless.clustered import prune_and_cluster  # noqa: E402
from weightless.codec import EncodedLayer  # noqa: E402
from weightless.container import compress, decompress, open_container  # noqa: E402
from weightless.exact import encode_clustered as encode_exact  # noqa: E402
from weightless.filter import BloomierFilter  # noqa: E402


def expected_bytes(path: Path) -> bytes:
    out = []
    for a in decompress(path, threads=1).values():
        a = np.ascontiguousarray(a)
        out.append(a.tobytes() if a.dtype.itemsize == 2 and a.dtype.kind == "V" else  # bfloat16: no byte order
                   a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return b"".join(out)


def write_expected(path: Path) -> None:
    path.with_suffix(".expected.bin").write_bytes(expected_bytes(path))


def basic(rng: np.random.Generator) -> None:
    # An encoded float32 layer plus raw tensors of every dtype, a scalar, an empty tensor and a
    # name that needs JSON escapes (the writer emits raw UTF-8 and escapes control characters).
    state = {
        "fc1.weight": rng.normal(0, 0.1, size=(64, 48)).astype(np.float32),
        "fc1.bias": rng.normal(0, 0.1, size=48).astype(np.float32),
        "emb": rng.integers(-128, 128, size=(5, 7), dtype=np.int8),
        "idx": rng.integers(0, 2**16, size=10, dtype=np.uint16),
        "half": rng.normal(0, 3, size=(3, 4)).astype(np.float16),
        "mask": rng.integers(0, 2, size=9).astype(bool),
        "scalar": np.array(np.pi, dtype=np.float64),
        "i16": rng.integers(-2**15, 2**15, size=(2, 3), dtype=np.int16),
        "i32": rng.integers(-2**31, 2**31, size=5, dtype=np.int32),
        "i64": rng.integers(-2**63, 2**63, size=4, dtype=np.int64),
        "u8": rng.integers(0, 256, size=3, dtype=np.uint8),
        "u32": rng.integers(0, 2**32, size=3, dtype=np.uint32),
        "u64": rng.integers(0, 2**64, size=3, dtype=np.uint64),
        "empty": np.zeros((0, 3), dtype=np.float32),
        'na\u00efve "q" \\/\t\u2603\U0001F600': np.arange(3, dtype=np.float32),
    }
    path = HERE / "basic.wl"
    compress(state, path, layers=["fc1.weight"], sparsity=0.9, clusters=16, seed=1, codec="bloomier", overwrite=True)
    write_expected(path)


def dtypes(rng: np.random.Generator) -> None:
    # Encoded float16 (tiny weights: the centroids round to half subnormals) and float64 layers.
    state = {
        "tiny16": (rng.normal(0, 2e-5, size=(32, 40))).astype(np.float16),
        "wide16": (rng.normal(0, 2e4, size=(16, 20))).astype(np.float16),
        "f64": rng.normal(0, 1, size=(16, 40)),
    }
    path = HERE / "dtypes.wl"
    compress(state, path, layers=list(state), sparsity=0.8, clusters=8, seed=2, codec="bloomier", overwrite=True)
    write_expected(path)


def structures(rng: np.random.Generator) -> None:
    # Arity 4 and multi-piece filters (small piece_keys), a 4-D tensor, and a layer of many
    # blocks (small block_keys) whose rows 10..29 are empty.
    rows = rng.normal(0, 1, size=(100, 80)).astype(np.float32)
    rows[10:30] = 0
    state = {
        "a4.weight": rng.normal(0, 1, size=(40, 30)).astype(np.float32),
        "conv.weight": rng.normal(0, 1, size=(8, 4, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 1, size=8).astype(np.float32),
        "rows.weight": rows,
    }
    layers = {
        "a4.weight": {"arity": 4, "piece_keys": 50, "cell_bits": 10, "seed": 3},
        "conv.weight": {"arity": 3, "piece_keys": 12, "cell_bits": 7, "seed": 4},
        "rows.weight": {"arity": 3, "block_keys": 64, "cell_bits": 9, "seed": 5},
    }
    path = HERE / "structures.wl"
    compress(state, path, layers=layers, sparsity=0.85, clusters=16, codec="bloomier", overwrite=True)
    with open_container(path) as c:
        for name, options in layers.items():
            f = c.encoded_layer(name).filter
            assert f.arity == options["arity"] and (f.num_pieces > 1 or f.num_blocks > 10), (name, f)
    write_expected(path)


def bfloat16() -> None:
    # bfloat16 (ml_dtypes), raw and encoded: the encoded layer's centroids are rounded to
    # bfloat16 by the decoder (nearest even), the raw tensor holds specials bit for bit.
    import ml_dtypes

    rng = np.random.default_rng(20261201)
    bf16 = ml_dtypes.bfloat16
    state = {
        "w": rng.normal(0, 0.05, size=(24, 40)).astype(bf16),
        "specials": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3.0e38, -1.5], np.float32).astype(bf16),
    }
    path = HERE / "bfloat16.wl"
    compress(state, path, layers=["w"], sparsity=0.7, clusters=16, seed=6, codec="bloomier", overwrite=True)
    write_expected(path)


def exact() -> None:
    # The exact codec (kind "exact"): float32, float16 and bfloat16 tensors, an all-zero one and a
    # dense one; decoded in the C API by csrc/codecs/exact.cpp.
    import ml_dtypes

    rng = np.random.default_rng(20261202)
    state = {
        "fc.weight": rng.normal(0, 0.1, size=(48, 40)).astype(np.float32),
        "half.weight": rng.normal(0, 1, size=(20, 30)).astype(np.float16),
        "brain.weight": rng.normal(0, 0.05, size=(16, 24)).astype(ml_dtypes.bfloat16),
        "zero.weight": np.zeros((8, 8), np.float32),
        "dense.weight": rng.normal(0, 1, size=(12, 12)).astype(np.float32),
    }
    layers = {"fc.weight": {}, "half.weight": {}, "brain.weight": {}, "zero.weight": {},
              "dense.weight": {"sparsity": 0.0}}
    path = HERE / "exact.wl"
    compress(state, path, layers=layers, sparsity=0.85, clusters=16, codec="exact", overwrite=True)
    with open_container(path) as c:
        assert all(e.kind == "exact" for e in c.tensors), c.tensors
    write_expected(path)


def chunked(rng: np.random.Generator) -> None:
    # Format version 3: layers of several chunks (more than 1024 kept weights), arity 4 and 3,
    # a layer whose rows 50..149 are empty (chunk boundaries inside and around them), t = 5..13.
    rows = rng.normal(0, 1, size=(300, 64)).astype(np.float32)
    rows[50:150] = 0
    state = {
        "big.weight": rng.normal(0, 1, size=(120, 100)).astype(np.float32),
        "a3.weight": rng.normal(0, 1, size=(64, 80)).astype(np.float32),
        "rows.weight": rows,
        "small.weight": rng.normal(0, 1, size=(7, 9)).astype(np.float32),
    }
    layers = {
        "big.weight": {"arity": 4, "cell_bits": 13, "seed": 6},
        "a3.weight": {"arity": 3, "cell_bits": 7, "seed": 7},
        "rows.weight": {"arity": 4, "cell_bits": 9, "seed": 8},
        "small.weight": {"arity": 4, "cell_bits": 5, "seed": 9, "clusters": 4},
    }
    path = HERE / "chunked.wl"
    compress(state, path, layers=layers, sparsity=0.75, clusters=16, codec="bloomier", overwrite=True)
    with open_container(path) as c:
        for name, options in layers.items():
            f = c.encoded_layer(name).filter
            assert f.layout == "chunked" and f.arity == options["arity"], (name, f)
        assert c.encoded_layer("big.weight").filter.num_pieces > 2
    write_expected(path)


def outliers() -> None:
    # A bloomier payload with an outliers section (docs/FORMAT.md, "Bloomier payload"): the
    # largest-magnitude tenth of the kept weights is stored exactly, with its own codebook, and
    # left out of the filter, so a false positive reads only the small centroids. Built by hand
    # (the encoder's policy lives in weightless.codec.encode_clustered); written with the C++
    # writer directly. float32 and float16 layers, and one whose outliers section is empty.
    rng = np.random.default_rng(20261203)
    path = HERE / "outliers.wl"
    tmp = path.with_suffix(".tmp")
    writer = _core.ModelWriter(str(tmp))
    layers = [("heavy.weight", "float32", (40, 50), 0.1), ("half.weight", "float16", (30, 20), 0.1),
              ("none.weight", "float32", (16, 16), 0.0)]
    for name, dtype, shape, share in layers:
        w = rng.standard_t(2, size=shape).astype(np.float32)
        c = prune_and_cluster(w, sparsity=0.8, clusters=8, seed=1)
        magnitude = np.abs(c.codebook[c.codes])
        big = magnitude >= np.quantile(magnitude, 1 - share) if share else np.zeros(c.kept, bool)
        small = ~big
        book = c.codebook.copy()
        f = BloomierFilter(c.positions[small].astype(np.uint64), c.codes[small], value_bits=3, cell_bits=7, seed=2,
                           threads=1)
        out_codes = c.codes[big]
        used = np.unique(out_codes)
        exact = encode_exact(c.positions[big], np.searchsorted(used, out_codes), shape,
                             book[used] if big.any() else np.zeros(0, np.float32))
        fp = f.count_decoded(c.size, len(book), threads=1) - int(small.sum())
        layer = EncodedLayer(shape, book, f, fp, exact)
        writer.append(name, dtype, 1, list(shape), layer.to_payload())
    writer.append("bias", "float32", 0, [3], np.arange(3, dtype="<f4").tobytes())
    writer.finish(b"")
    os.replace(tmp, path)
    with open_container(path) as c:
        layer = c.encoded_layer("heavy.weight")
        assert layer.outliers is not None and layer.outliers.kept > 0, layer
        assert c.encoded_layer("none.weight").outliers is not None
    write_expected(path)


def float16() -> None:
    # Small float tensors stored as IEEE half floats (codec float16): float32, float64 and
    # bfloat16 biases, a subnormal and a rounding tie, beside an encoded layer and a raw tensor
    # too large for the option.
    import ml_dtypes

    rng = np.random.default_rng(20261204)
    state = {
        "fc.weight": rng.normal(0, 0.1, size=(32, 40)).astype(np.float32),
        "fc.bias": rng.normal(0, 0.1, size=40).astype(np.float32),
        "f64.bias": np.array([1e-7, 2049.0, -0.0, 65504.0, np.inf, np.nan]),
        "brain.bias": rng.normal(0, 1, size=9).astype(ml_dtypes.bfloat16),
        "large.bias": rng.normal(0, 1, size=100).astype(np.float32),
    }
    path = HERE / "float16.wl"
    compress(state, path, layers=["fc.weight"], sparsity=0.8, clusters=16, seed=3, codec="bloomier",
             small_float16=64, overwrite=True)
    with open_container(path) as c:
        assert [e.kind for e in c.tensors] == ["encoded", "float16", "float16", "float16", "raw"], c.tensors
    write_expected(path)


def main(names) -> None:
    names = set(names)
    if not names or names & {"basic", "dtypes", "structures"}:  # one random stream: written together
        rng = np.random.default_rng(20261129)
        basic(rng)
        dtypes(rng)
        structures(rng)
    if not names or "chunked" in names:
        chunked(np.random.default_rng(20261201))
    if not names or "bfloat16" in names:
        bfloat16()
    if not names or "exact" in names:
        exact()
    if not names or "outliers" in names:
        outliers()
    if not names or "float16" in names:
        float16()
    # v1_basic.wl (and its .expected.bin) is basic.wl as written in format version 1, kept as it
    # was: the Python package must still decode it.
    for p in sorted(HERE.glob("*.wl")):
        print(f"{p.name}: {p.stat().st_size} bytes, expected {p.with_suffix('.expected.bin').stat().st_size} bytes")


if __name__ == "__main__":
    os.chdir(HERE)
    main(sys.argv[1:])
