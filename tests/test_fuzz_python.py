"""Property-based fuzzing of the Python entry points with hypothesis (fast; the long fuzzing of the
C++ parser and decoders is libFuzzer's, tests/fuzz and docs/HARDENING.md).

Valid files are mutated (bytes flipped, overwritten, inserted, deleted, the file truncated or
extended), with and without their checksums repaired so the mutation reaches the checks behind
them. Every reader must either accept the input or raise ValueError: no other exception, no
crash, no hang, no allocation sized by a corrupted field.

The budget and the randomness come from the hypothesis profile (tests/conftest.py):
derandomized in CI. Each failure a run has found is kept below as an @example.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from conftest import missing, require_module

require_module("hypothesis")

from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from weightless.codec import EncodedLayer, encode_layer  # noqa: E402
from weightless.container import compress, decompress, open_container  # noqa: E402
from weightless.filter import BloomierFilter  # noqa: E402
from weightless.io import load_state, save_state  # noqa: E402

_rng = np.random.default_rng(5)
_W = _rng.normal(size=(12, 10)).astype(np.float32)
LAYER = encode_layer(_W, sparsity=0.6, clusters=4, cell_bits=6, seed=1, threads=1).to_bytes()
FILTER = BloomierFilter(np.arange(0, 90, 3, dtype=np.uint64), _rng.integers(0, 8, 30), value_bits=3, cell_bits=7,
                        piece_keys=12, threads=1).to_bytes()


# A mutation: (kind, position as a fraction of the length, byte value, length).
mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]),
                     st.floats(0, 1, exclude_max=True), st.integers(0, 255), st.integers(1, 16))


def mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for kind, where, value, n in mutations:
        at = int(where * len(b)) if b else 0
        if kind == "flip" and b:
            b[at] ^= 1 << (value % 8)
        elif kind == "set" and b:
            b[at : at + n] = bytes([value]) * len(b[at : at + n])
        elif kind == "insert":
            b[at:at] = bytes([value]) * n
        elif kind == "delete":
            del b[at : at + n]
        elif kind == "truncate":
            del b[at:]
        elif kind == "extend":
            b += bytes([value]) * n
    return bytes(b)


def fix_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4])) if len(data) >= 4 else data


@given(st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_filter_from_bytes(mutations, repair):
    data = mutate(FILTER, mutations)
    data = fix_crc(data) if repair else data
    try:
        f = BloomierFilter.from_bytes(data)
    except ValueError as e:
        assert "malformed weightless filter" in str(e)
        return
    assert f.to_bytes() == data  # accepted means exact
    values = f.lookup_range(0, 200)
    assert values.min() >= -1 and values.max() < 2**f.value_bits


@given(st.lists(mutation, min_size=1, max_size=4), st.sampled_from(["none", "layer", "both"]))
def test_encoded_layer_from_bytes(mutations, repair):
    data = mutate(LAYER, mutations)
    if repair == "both" and len(data) >= 28:  # the filter's CRC too, where the header places it
        ndim, k, flen = data[6], struct.unpack_from("<I", data, 8)[0], struct.unpack_from("<Q", data, 20)[0]
        at = 28 + 8 * ndim + 4 * k
        if at + flen <= len(data) - 4 and flen >= 4:
            data = data[:at] + fix_crc(data[at : at + flen]) + data[at + flen :]
    data = fix_crc(data) if repair != "none" else data
    try:
        layer = EncodedLayer.from_bytes(data)
    except ValueError as e:
        assert "malformed" in str(e)
        return
    if layer.size <= 1 << 20:
        out = layer.decode(threads=1)
        assert out.shape == layer.shape
        assert np.isin(out[out != 0], layer.codebook).all()
        np.testing.assert_array_equal(layer.decode(threads=1, dtype=np.float64), out.astype(np.float64))
    else:  # a mutated shape: too large to decode here, but consistent
        assert layer.kept + layer.false_positives <= layer.size


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.wl"
    state = {"w": _W, "h": _rng.normal(size=(6, 5)).astype(np.float16), "b": np.array([True, False]),
             "s": np.array(3, np.int32)}
    compress(state, path, layers=["w", "h"], sparsity=0.5, clusters=4, threads=1)
    return path.read_bytes()


@given(st.lists(mutation, min_size=1, max_size=3), st.booleans())
def test_container(model_file, tmp_path_factory, mutations, repair):
    data = mutate(model_file, mutations)
    data = fix_crc(data) if repair else data
    path = tmp_path_factory.mktemp("c") / "bad.wl"
    path.write_bytes(data)
    try:
        state = decompress(path, threads=1)
    except ValueError as e:
        assert str(path) in str(e)
        return
    assert set(state) <= {"w", "h", "b", "s"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
entry_keys = st.sampled_from(["name", "kind", "dtype", "shape", "offset", "length", "crc32", "options", "kept",
                              "clusters", "cell_bits", "false_positives"])


@given(st.lists(st.dictionaries(entry_keys, json_values, max_size=12), max_size=3), st.binary(max_size=64))
def test_container_header(tmp_path_factory, entries, area):
    # Arbitrary JSON where the header's tensor list goes, over an arbitrary data area.
    text = json.dumps({"tensors": entries}).encode()
    text += b" " * (-(16 + len(text)) % 8)
    area += bytes(-len(area) % 8)
    body = struct.pack("<4sHHQ", b"WLMF", 1, 0, len(text)) + text + area
    path = tmp_path_factory.mktemp("h") / "h.wl"
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    try:
        with open_container(path) as c:
            c.read_all(threads=1)
    except ValueError:
        pass


MODEL_EXTENSIONS = [".npz"] + ([] if missing("safetensors") else [".safetensors"])


@given(st.lists(mutation, min_size=1, max_size=3), st.sampled_from(MODEL_EXTENSIONS))
@example([("flip", 0.78125, 0, 1)], ".npz")  # the central directory's encryption flag: RuntimeError
@example([("flip", 0.78515625, 0, 1)], ".npz")  # its compression method: NotImplementedError
def test_model_files(tmp_path_factory, mutations, ext):
    d = tmp_path_factory.mktemp("m")
    save_state({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.int64)}, d / f"m{ext}")
    (d / f"bad{ext}").write_bytes(mutate((d / f"m{ext}").read_bytes(), mutations))
    try:
        state = load_state(d / f"bad{ext}")
    except ValueError as e:
        assert "bad" in str(e)
        return
    assert all(isinstance(v, np.ndarray) for v in state.values())
