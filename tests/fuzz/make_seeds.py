"""Writes the seed corpora of the fuzz harnesses (tests/fuzz/seeds/NAME) with the Python package.

    python3 tests/fuzz/make_seeds.py        # rewrites tests/fuzz/seeds/{filter,container,layer,exact}
    python3 tests/fuzz/make_seeds.py filter # only the filter seeds

Small valid inputs that between them reach every branch of the formats: filters with 0, 1 and
many pieces, arity 3 and 4, t from 1 to 32, keys far from 0; layers of every rank used, every
encoded dtype, all-zero and empty layers, an outliers section; containers (version 3) with raw
tensors of every dtype, a scalar, an empty tensor, non-ASCII names, every codec (bloomier with
and without outliers, exact, float16), with and without metadata; the filter seeds cover both
layouts (version 3 chunks, version 2 pieces). Rerun it when the format changes
(docs/HARDENING.md); the seeds of an older version a reader still meets stay, renamed v1-NAME,
v2-NAME etc. by hand.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from weightless.codec import encode_layer  # noqa: E402
from weightless.container import compress  # noqa: E402
from weightless.filter import BloomierFilter  # noqa: E402


def filters(rng: np.random.Generator) -> dict[str, bytes]:
    out = {}

    def add(name, keys, r, t, **kw):
        keys = np.asarray(keys, dtype=np.uint64)
        values = rng.integers(0, 2**r, size=len(keys))
        out[name] = BloomierFilter(keys, values, value_bits=r, cell_bits=t, seed=7, threads=1, **kw).to_bytes()

    add("empty", [], 4, 8)
    add("one_key", [5], 1, 1)
    add("small_r4_t8", rng.choice(300, 40, replace=False), 4, 8)
    add("arity4_t12", rng.choice(500, 60, replace=False), 4, 12, arity=4)
    add("t32", rng.choice(200, 20, replace=False), 16, 32)
    add("t16_r3", rng.choice(1000, 50, replace=False), 3, 16)
    add("pieces", np.sort(rng.choice(2000, 90, replace=False)), 2, 5, piece_keys=20)
    add("far_keys", [0, 2**40, 2**40 + 3, 2**63, 2**64 - 2], 2, 9, piece_keys=2)
    # The chunked layout (version 3, the default above): many chunks, retried chunks, arity 3,
    # boundaries across the whole key space.
    add("chunks", np.sort(rng.choice(3000, 200, replace=False)), 3, 6, chunk_keys=16)
    add("chunks_arity3_t1", rng.choice(400, 60, replace=False), 1, 1, arity=3, chunk_keys=7)
    add("chunks_far_keys", [0, 2**40, 2**40 + 3, 2**63, 2**64 - 2], 2, 9, chunk_keys=2)
    add("chunks_one_each", rng.choice(2**20, 12, replace=False), 2, 4, chunk_keys=1)
    return out


def layers(rng: np.random.Generator) -> dict[str, bytes]:
    # selector byte (bits 0-1 dtype: float32, float16, float64, bfloat16; bit 4: 1-D), the
    # shape's two bytes, then the bloomier payload.
    from weightless.exact import encode_exact

    out = {}

    def add(name, w, selector, outliers=None, **kw):
        layer = encode_layer(w, threads=1, **kw)
        layer.outliers = outliers
        rows, cols = (w.size // 256, w.size % 256) if selector & 16 else (w.shape[0], w.size // max(w.shape[0], 1))
        out[name] = bytes([selector, rows, cols]) + layer.to_payload()

    add("f32_2d", rng.normal(size=(20, 16)).astype(np.float32), 0, sparsity=0.8, clusters=8, cell_bits=6)
    add("f16_2d", rng.normal(size=(12, 9)).astype(np.float32), 1, sparsity=0.7, clusters=4)
    add("f64_1d", rng.normal(size=64), 2 | 16, sparsity=0.5, clusters=2, arity=4)
    add("bf16", rng.normal(size=(10, 10)).astype(np.float32), 3, sparsity=0.5, clusters=4)
    add("zeros", np.zeros((30, 30), np.float32), 0)
    add("empty", np.zeros((0, 7), np.float32), 0)
    add("pieces", rng.normal(size=(40, 10)).astype(np.float32), 4 + 2, sparsity=0.6, clusters=16,
        cell_bits=10, piece_keys=30)
    heavy = rng.standard_t(2, size=(16, 16)).astype(np.float32)
    add("outliers", heavy, 0, encode_exact(heavy, sparsity=0.97, clusters=2), sparsity=0.8, clusters=4)
    return out


def containers(rng: np.random.Generator) -> dict[str, bytes]:
    models = {
        "mixed": ({
            "fc.weight": rng.normal(size=(12, 10)).astype(np.float32),
            "fc.bias": rng.normal(size=10).astype(np.float32),
            "mask": np.array([True, False, True]),
            "step": np.array(7, dtype=np.int64),
            "empty": np.zeros((0, 2), np.float32),
            "tab\t\u00e9": np.arange(3, dtype=np.uint16),
        }, {"layers": ["fc.weight"], "sparsity": 0.7, "clusters": 4}),
        "dtypes": ({
            "h": rng.normal(size=(6, 8)).astype(np.float16),
            "d": rng.normal(size=(5, 9)),
            **{d: np.arange(2).astype(d) for d in ("int8", "int16", "int32", "uint8", "uint32", "uint64")},
        }, {"layers": ["h", "d"], "sparsity": 0.5, "clusters": 4, "cell_bits": 7}),
        "pieces": ({"p": rng.normal(size=(20, 20)).astype(np.float32)},
                   {"layers": {"p": {"piece_keys": 40, "arity": 4}}, "sparsity": 0.6, "clusters": 8}),
        "no_tensors": ({}, {}),
        # The exact codec's tensors (kind "exact"), decoded by csrc/codecs/exact.cpp.
        "exact": ({"e": rng.normal(size=(16, 12)).astype(np.float32), "h": rng.normal(size=(6, 8)).astype(np.float16),
                   "z": np.zeros((4, 4), np.float32)},
                  {"layers": ["e", "h", "z"], "sparsity": 0.6, "clusters": 8, "codec": "exact"}),
        # float16 storage of small float tensors, and a file without metadata.
        "float16": ({"w": rng.normal(size=(8, 8)).astype(np.float32), "b": rng.normal(size=8).astype(np.float32),
                     "d": rng.normal(size=3)},
                    {"layers": ["w"], "sparsity": 0.5, "clusters": 4, "small_float16": 16, "metadata": False}),
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (state, options) in models.items():
            path = Path(tmp) / f"{name}.wl"
            compress(state, path, threads=1, **{"codec": "bloomier", **options})  # the filter, unless named
            out[name] = path.read_bytes()
    out["outliers"] = (HERE.parents[0] / "data" / "outliers.wl").read_bytes()  # a bloomier payload with outliers
    return out


def exact_payloads(rng: np.random.Generator) -> dict[str, bytes]:
    from weightless.exact import encode_exact

    out = {}
    for name, w, options in [
        ("sparse", rng.normal(size=(30, 40)), {"sparsity": 0.95, "clusters": 4}),
        ("half", rng.normal(size=(20, 20)), {"sparsity": 0.5, "clusters": 16}),
        ("dense", rng.normal(size=(9, 13)), {"sparsity": 0.0, "clusters": 8}),
        ("empty", np.zeros((5, 5)), {}),
        ("vector", rng.normal(size=300), {"sparsity": 0.8, "clusters": 2}),
    ]:
        out[name] = encode_exact(w.astype(np.float32), **options).to_bytes()
    return out


def write(directory: Path, seeds: dict[str, bytes]) -> None:
    # Seeds of older format versions (named v1-*, ...) are kept: readers still accept them.
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if not old.name.startswith("v"):
            old.unlink()
    for name, data in seeds.items():
        (directory / name).write_bytes(data)


def main() -> None:
    only = set(sys.argv[1:]) or {"filter", "layer", "container", "exact"}
    rng = np.random.default_rng(2024)
    f = filters(rng)
    if "filter" in only:
        write(HERE / "seeds" / "filter", f)
    lay = layers(rng)
    if "layer" in only:
        write(HERE / "seeds" / "layer", lay)
    c = containers(rng)
    if "container" in only:
        write(HERE / "seeds" / "container", c)
    if "exact" in only:
        write(HERE / "seeds" / "exact", exact_payloads(rng))
    for d in sorted((HERE / "seeds").iterdir()):
        sizes = [p.stat().st_size for p in d.iterdir()]
        print(f"{d.name}: {len(sizes)} seeds, largest {max(sizes)} bytes")


if __name__ == "__main__":
    main()
