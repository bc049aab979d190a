"""Tests for weightless/container.py: the whole-model .wl file."""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import zlib

import numpy as np
import pytest
from conftest import missing, requires
from wl_v3 import build, parse, put_varint, varint

from weightless import __version__, _core, container
from weightless.cluster import kmeans_1d
from weightless.codec import EncodedLayer, encode_layer
from weightless.container import (
    DEFAULT_MIN_ELEMENTS,
    RAW_DTYPES,
    CompressionReport,
    decompress,
    open_container,
)
from weightless.dtypes import numpy_dtype
from weightless.filter import BloomierFilter
from weightless.io import save_state
from weightless.prune import prune_mask

# These tests are of the container and of its filter entries, so every encoded layer is the
# filter's; the codec choice has its own tests (tests/test_codecs.py).
compress = functools.partial(container.compress, codec="bloomier")

OPTIONS = dict(sparsity=0.9, clusters=16, cell_bits=8, seed=3)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _model() -> dict[str, np.ndarray]:
    rng = _rng()
    return {
        "fc1.weight": rng.normal(size=(256, 256)).astype(np.float32),
        "fc1.bias": rng.normal(size=256).astype(np.float32),
        "conv.weight": rng.normal(size=(16, 8, 3, 3)).astype(np.float64),
        "half.weight": rng.normal(size=(32, 64)).astype(np.float16),
        "steps": np.array(1000, dtype=np.int64),
    }


def _small_model() -> dict[str, np.ndarray]:
    rng = _rng(1)
    return {
        "w": rng.normal(size=(4, 8)).astype(np.float32),
        "b": np.array([1.5, np.nan], dtype=np.float32),
        "n": np.arange(3, dtype=np.int16),
    }


def _no_temp_files(directory) -> None:
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def _expected_kept(w: np.ndarray, options: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mask of kept weights, their clustered values and the codebook, computed independently."""
    mask = prune_mask(w, sparsity=options.get("sparsity"), threshold=options.get("threshold"))
    clustering = kmeans_1d(w.reshape(-1)[mask.reshape(-1)], options.get("clusters", 16), init="density",
                           seed=options.get("seed", 0))
    return mask, clustering.codebook[clustering.codes], clustering.codebook


# --------------------------------------------------------------------------- round trips


def test_encoded_layers_decode_to_pruned_clustered_weights(tmp_path):
    state = _model()
    report = compress(state, tmp_path / "m.wl", **OPTIONS)
    back = decompress(tmp_path / "m.wl")
    assert [e.name for e in report.encoded] == ["fc1.weight", "conv.weight", "half.weight"]
    for e in report.encoded:
        w, got = state[e.name], back[e.name]
        assert got.dtype == w.dtype and got.shape == w.shape
        mask, kept_values, codebook = _expected_kept(w, OPTIONS)
        # Every kept weight reads back as its centroid (cast to the tensor's dtype).
        np.testing.assert_array_equal(got[mask], kept_values.astype(w.dtype))
        # Elsewhere zero, except at the false positives, which are centroids too.
        spurious = got[~mask][got[~mask] != 0]
        assert spurious.size == e.false_positives
        assert np.isin(spurious, codebook.astype(w.dtype)).all()
        assert e.kept == int(mask.sum()) and e.cell_bits == 8 and e.clusters == len(codebook)
        # The file holds exactly what encode_layer gives (the encoding is deterministic).
        np.testing.assert_array_equal(got, encode_layer(w, **OPTIONS).decode().astype(w.dtype))


def test_false_positive_count_matches_the_rate(tmp_path):
    # A zero weight reads a random t-bit word; it is spurious when the word is one of k codes.
    w = _rng(2).normal(size=(512, 256)).astype(np.float32)
    report = compress({"w": w}, tmp_path / "m.wl", sparsity=0.92, clusters=16, cell_bits=9)
    e = report.tensors[0]
    zeros = w.size - e.kept
    p = e.clusters / 2**e.cell_bits
    mean, sigma = zeros * p, math.sqrt(zeros * p * (1 - p))
    assert abs(e.false_positives - mean) <= 6 * sigma
    assert np.count_nonzero(decompress(tmp_path / "m.wl")["w"]) == e.kept + e.false_positives


def test_raw_tensors_are_bit_identical(tmp_path):
    payload_nans = np.array([0x7FC00001, 0xFFBADBAD, 0x7F800001, 0], dtype=np.uint32).view(np.float32)
    half_nans = np.array([0x7E01, 0xFC00], np.uint16).view(np.float16)
    state = {"nan_payloads": payload_nans.reshape(2, 2), "f16_nan": half_nans}
    for i, name in enumerate(RAW_DTYPES):
        if name == "bfloat16" and missing("ml_dtypes"):
            continue  # tests/test_bfloat16.py covers it where ml_dtypes is installed
        dtype = numpy_dtype(name)
        if name == "bfloat16":
            values = np.array([3.0e38, -0.0, np.inf, -np.inf, np.nan, 1e-40], dtype=np.float32).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            values = np.array([info.min, info.max, 0, 1, info.max - 1, info.min + 1], dtype=dtype)
        elif dtype.kind == "b":
            values = np.array([True, False, True, True, False, False])
        elif name != "bfloat16":
            values = np.array([np.finfo(dtype).max, -0.0, np.inf, -np.inf, np.nan, 1e-40], dtype=dtype)
        state[f"t.{name}"] = values.reshape((2, 3) if i % 2 else (6,))
    state["scalar"] = np.array(2.5, dtype=np.float64)
    state["empty"] = np.zeros((0, 7), dtype=np.int32)
    state["big_endian"] = np.arange(5, dtype=">i4")
    compress(state, tmp_path / "m.wl", layers=[])
    back = decompress(tmp_path / "m.wl")
    assert list(back) == list(state)
    for name, a in state.items():
        b = back[name]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=") and b.flags.writeable, name
        assert b.tobytes() == a.astype(a.dtype.newbyteorder("=")).tobytes(), name


def test_input_state_is_not_modified(tmp_path):
    state = _model()
    copies = {k: v.copy() for k, v in state.items()}
    compress(state, tmp_path / "m.wl", **OPTIONS)
    assert list(state) == list(copies)
    for k in state:
        assert state[k].tobytes() == copies[k].tobytes()


@requires("safetensors", "tqdm")
def test_from_a_model_file(tmp_path):
    state = _small_model()
    save_state(state, tmp_path / "m.safetensors")
    before = (tmp_path / "m.safetensors").read_bytes()
    report = compress(tmp_path / "m.safetensors", tmp_path / "m.wl", layers=["w"], progress=True)
    assert (tmp_path / "m.safetensors").read_bytes() == before
    assert report.compressed_bytes == os.path.getsize(tmp_path / "m.wl")
    assert set(decompress(tmp_path / "m.wl")) == set(state)


def test_report_totals(tmp_path):
    state = _model()
    report = compress(state, tmp_path / "m.wl", **OPTIONS)
    assert isinstance(report, CompressionReport)
    assert report.original_bytes == sum(a.nbytes for a in state.values())
    assert report.compressed_bytes == os.path.getsize(tmp_path / "m.wl")
    assert report.ratio == report.original_bytes / report.compressed_bytes
    assert [e.name for e in report.tensors] == list(state)
    raw = [e for e in report.tensors if e.kind == "raw"]
    assert all(e.kept is None and e.false_positives is None for e in raw)
    assert all(e.nbytes == state[e.name].nbytes for e in raw)


def test_default_layer_choice(tmp_path):
    f = np.ones
    state = {
        "at_limit": f((64, DEFAULT_MIN_ELEMENTS // 64), np.float64),
        "below_limit": f((1, DEFAULT_MIN_ELEMENTS - 1), np.float32),
        "vector": f(4 * DEFAULT_MIN_ELEMENTS, np.float32),
        "ints": f((64, 64), np.int32),
        "half": f((32, 32, 2), np.float16),
    }
    report = compress(state, tmp_path / "m.wl")
    assert [e.name for e in report.encoded] == ["at_limit", "half"]
    with open_container(tmp_path / "m.wl") as c:
        assert c.metadata["layers"] is None


def test_empty_all_zero_and_tiny_layers(tmp_path):
    state = {
        "empty": np.zeros((0, 5), np.float32),
        "zeros": np.zeros((40, 40), np.float32),
        "one": np.array([[-0.25]], np.float32),
        "row": np.array([[3.0, 0.0, -1.0]], np.float64),
    }
    report = compress(state, tmp_path / "m.wl", layers=list(state))
    assert len(report.encoded) == 4
    back = decompress(tmp_path / "m.wl")
    assert back["empty"].shape == (0, 5)
    np.testing.assert_array_equal(back["zeros"], state["zeros"])
    assert report.tensors[1].kept == 0 and report.tensors[1].false_positives == 0
    np.testing.assert_array_equal(back["one"], state["one"])  # one kept weight, its own centroid
    np.testing.assert_array_equal(back["row"], state["row"])  # two distinct values, two exact centroids


def test_empty_model(tmp_path):
    report = compress({}, tmp_path / "m.wl")
    assert report.tensors == [] and decompress(tmp_path / "m.wl") == {}


def test_per_layer_options(tmp_path):
    state = _model()
    compress(state, tmp_path / "m.wl", layers={"fc1.weight": {"sparsity": 0.5}, "conv.weight": {}}, **OPTIONS)
    with open_container(tmp_path / "m.wl") as c:
        entries = {e.name: e for e in c.tensors}
        assert entries["fc1.weight"].options["sparsity"] == 0.5
        assert entries["conv.weight"].options["sparsity"] == 0.9
        assert entries["fc1.weight"].kept == state["fc1.weight"].size // 2
        assert entries["half.weight"].kind == "raw"
        options = {"codec": "bloomier", "max_error": 0.5, **OPTIONS}
        assert c.metadata == {"weightless_version": __version__, "options": options,
                              "layers": ["fc1.weight", "conv.weight"]}


# --------------------------------------------------------------------------- bad input


def test_unknown_and_unsuitable_layer_names(tmp_path):
    state = _small_model()
    with pytest.raises(ValueError, match=r"no tensor named 'x'; the model has: 'w', 'b', 'n'"):
        compress(state, tmp_path / "m.wl", layers=["w", "x"])
    with pytest.raises(ValueError, match="'n' has dtype int16; only floating"):
        compress(state, tmp_path / "m.wl", layers=["n"])
    with pytest.raises(ValueError, match="named twice"):
        compress(state, tmp_path / "m.wl", layers=["w", "w"])
    with pytest.raises(TypeError, match="not a string"):
        compress(state, tmp_path / "m.wl", layers="w")
    with pytest.raises(TypeError, match="unknown layer option"):
        compress(state, tmp_path / "m.wl", sparsty=0.5)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_in_an_encoded_layer(tmp_path, bad):
    state = _model()
    state["fc1.weight"] = state["fc1.weight"].copy()
    state["fc1.weight"][3, 7] = bad
    with pytest.raises(ValueError, match="tensor 'fc1.weight': weights contain (NaN|Inf)"):
        compress(state, tmp_path / "m.wl")
    assert os.listdir(tmp_path) == []
    compress(state, tmp_path / "m.wl", layers=["conv.weight"])  # stored raw, NaN and all
    assert decompress(tmp_path / "m.wl")["fc1.weight"].tobytes() == state["fc1.weight"].tobytes()


@pytest.mark.parametrize("value", [np.zeros(2, np.complex64), np.array(["a"]), np.zeros(2, "datetime64[s]"),
                                   np.zeros(2, dtype=[("x", "f4")])])
def test_unsupported_dtypes(tmp_path, value):
    with pytest.raises(ValueError, match=r"tensor 'odd' has dtype .* which a \.wl file cannot store"):
        compress({"w": np.ones(2), "odd": value}, tmp_path / "m.wl")


def test_existing_output(tmp_path):
    path = tmp_path / "m.wl"
    compress(_small_model(), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        compress({"x": np.ones(3)}, path)
    assert path.read_bytes() == before
    compress({"x": np.ones(3)}, path, overwrite=True)
    assert list(decompress(path)) == ["x"]
    save_state(_small_model(), tmp_path / "in.npz")
    with pytest.raises(ValueError, match="would replace the input"):
        compress(tmp_path / "in.npz", tmp_path / "in.npz", overwrite=True)
    _no_temp_files(tmp_path)


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        decompress(tmp_path / "nope.wl")
    with pytest.raises(ValueError, match="is a directory"):
        decompress(tmp_path)
    save_state(_small_model(), tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"malformed \.wl file: not a weightless model file"):
        decompress(tmp_path / "m.npz")
    (tmp_path / "r.wl").write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match=r"malformed \.wl file"):
        decompress(tmp_path / "r.wl")


def test_every_truncation_is_rejected(tmp_path):
    path = tmp_path / "m.wl"
    compress(_small_model(), path, layers=["w"])
    data = path.read_bytes()
    cut = tmp_path / "cut.wl"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(ValueError, match=r"malformed \.wl file"):
            decompress(cut)


def test_every_flipped_byte_is_rejected(tmp_path):
    path = tmp_path / "m.wl"
    compress(_small_model(), path, layers=["w"])
    data = path.read_bytes()
    bad = tmp_path / "bad.wl"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=r"malformed \.wl file"):
            decompress(bad)


# --------------------------------------------------------------------------- the layout, independently

def test_layout_follows_the_spec(tmp_path):
    state = _model()
    compress(state, tmp_path / "m.wl", **OPTIONS)
    data = (tmp_path / "m.wl").read_bytes()
    records, _, metadata = parse(data)
    info = json.loads(metadata)
    back = decompress(tmp_path / "m.wl")
    for r in records:
        payload = data[r["offset"] : r["offset"] + r["length"]]
        assert zlib.crc32(payload) == r["crc32"]
        if r["codec"] == 0:
            a = np.frombuffer(payload, dtype=np.dtype(r["dtype"]).newbyteorder("<")).reshape(r["shape"])
        else:
            # bloomier: varint clusters, varint false positives, codebook, varint filter length, filter.
            assert r["codec"] == 1
            k, at = varint(payload, 0)
            fps, at = varint(payload, at)
            assert fps == info["tensors"][r["name"]]["false_positives"]
            codebook = np.frombuffer(payload, "<f4", k, at)
            flen, at = varint(payload, at + 4 * k)
            assert at + flen == len(payload)  # no outliers section
            f = BloomierFilter.from_bytes(payload[at:])
            values = f.lookup_range(0, math.prod(r["shape"]))
            flat = np.where((values >= 0) & (values < k), codebook[np.clip(values, 0, k - 1)], np.float32(0))
            a = flat.reshape(r["shape"]).astype(r["dtype"])
        assert a.tobytes() == back[r["name"]].tobytes()


def _mutated(tmp_path, mutate, model=None) -> bytes:
    compress(model or _small_model(), tmp_path / "m.wl", layers=["w"], overwrite=True)
    records, area, metadata = parse((tmp_path / "m.wl").read_bytes())
    area = bytearray(area)
    mutate(records, area)
    return build(records, bytes(area), metadata)


def _set(index, key, value):
    def mutate(records, area):
        records[index][key] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set(1, "name", "w"), "'w' appears twice"),
        (_set(1, "name", "\ud800"), "not valid UTF-8"),
        (_set(1, "name", "a\0b"), "not valid UTF-8"),
        (_set(1, "length", 4), "4 bytes for 2 float32"),
        (_set(2, "length", 10**6), "extends past the payload area"),
        (_set(1, "dtype", 13), "unknown dtype id 13"),
        (_set(0, "dtype", "int32"), "bloomier needs a floating dtype, not int32"),
        (_set(1, "codec", 9), "unknown codec id 9"),
        (_set(1, "shape", [2**40, 2**40, 2**40]), "shape too large"),
        (_set(1, "shape", [1] * 65), "more than 64 dimensions"),
        (lambda r, a: r.append(r[2] | {"name": "extra"}), "extends past"),
        (lambda r, a: a.extend(bytes(8)), "the payload area has"),
    ],
)
def test_inconsistent_directories_are_rejected(tmp_path, mutate, message):
    (tmp_path / "bad.wl").write_bytes(_mutated(tmp_path, mutate))
    with pytest.raises(ValueError, match=r"malformed \.wl file: .*" + message):
        decompress(tmp_path / "bad.wl")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set(0, "shape", [2, 2]), "more kept weights or false positives than positions"),
        (_set(1, "crc32", 12345), "tensor 'b': checksum mismatch"),
    ],
)
def test_payloads_are_checked_against_the_directory(tmp_path, mutate, message):
    (tmp_path / "bad.wl").write_bytes(_mutated(tmp_path, mutate))
    with open_container(tmp_path / "bad.wl") as c:  # the directory alone is consistent
        with pytest.raises(ValueError, match=r"malformed \.wl file: .*" + message):
            c.read_all()


def test_metadata_statistics_are_checked_against_the_payload(tmp_path):
    compress(_small_model(), tmp_path / "m.wl", layers=["w"])
    records, area, metadata = parse((tmp_path / "m.wl").read_bytes())
    info = json.loads(metadata)
    info["tensors"]["w"]["kept"] += 1
    (tmp_path / "bad.wl").write_bytes(build(records, area, json.dumps(info).encode()))
    with open_container(tmp_path / "bad.wl") as c:
        with pytest.raises(ValueError, match="does not match its recorded statistics"):
            c.encoded_layer("w")


def test_booleans_must_be_zero_or_one(tmp_path):
    model = {"w": np.ones((2, 2), np.float32), "flags": np.array([True, False])}

    def mutate(records, area):
        r = records[1]
        area[r["offset"] - 8] = 2
        r["crc32"] = zlib.crc32(area[r["offset"] - 8 : r["offset"] - 8 + r["length"]])

    (tmp_path / "bad.wl").write_bytes(_mutated(tmp_path, mutate, model))
    with pytest.raises(ValueError, match="boolean bytes other than 0 and 1"):
        decompress(tmp_path / "bad.wl")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d[:4] + struct.pack("<H", 4) + d[6:], "unsupported .wl version 4"),
        (lambda d: d[:6] + b"\x01\x00" + d[8:], "unknown flags"),
        (lambda d: d[:-16] + struct.pack("<I", 2**31) + d[-12:], "truncated"),
        (lambda d: d[:-4] + b"XXXX", "no trailer"),
        (lambda d: d[:-8] + bytes([d[-8] ^ 1]) + d[-7:], "checksum mismatch in the directory"),
        (lambda d: d[:20], "truncated|no trailer"),
    ],
)
def test_bad_preambles_and_trailers(tmp_path, edit, message):
    compress(_small_model(), tmp_path / "m.wl")
    (tmp_path / "bad.wl").write_bytes(edit((tmp_path / "m.wl").read_bytes()))
    with pytest.raises(ValueError, match=r"malformed \.wl file: .*(" + message + ")"):
        decompress(tmp_path / "bad.wl")


@pytest.mark.parametrize("text, message", [(b"[1, 2]", "bad metadata"), (b"\xff\xfe", "bad metadata"),
                                           (b"{", "bad metadata"), (b'{"tensors": {"w": 3}}', "not a JSON object")])
def test_bad_metadata(tmp_path, text, message):
    compress(_small_model(), tmp_path / "m.wl", layers=["w"])
    records, area, _ = parse((tmp_path / "m.wl").read_bytes())
    (tmp_path / "bad.wl").write_bytes(build(records, area, text))
    with pytest.raises(ValueError, match=r"malformed \.wl file: .*" + message):
        open_container(tmp_path / "bad.wl")


def test_without_metadata_statistics_come_from_the_payloads(tmp_path):
    compress(_small_model(), tmp_path / "a.wl", layers=["w"])
    compress(_small_model(), tmp_path / "b.wl", layers=["w"], metadata=False)
    with open_container(tmp_path / "a.wl") as a, open_container(tmp_path / "b.wl") as b:
        assert b.metadata == {} and a.metadata["weightless_version"] == __version__
        ea, eb = a.entry("w"), b.entry("w")
        assert (ea.kept, ea.clusters, ea.cell_bits, ea.false_positives) == (eb.kept, eb.clusters, eb.cell_bits,
                                                                            eb.false_positives)
        assert eb.relative_error is None and ea.relative_error is not None
        for name in a.names:
            assert a.read(name).tobytes() == b.read(name).tobytes()


@requires("ml_dtypes")  # for the bfloat16 tensor among them
def test_float16_storage_of_small_tensors(tmp_path):
    import ml_dtypes

    state = {"w": _rng(5).normal(size=(40, 40)).astype(np.float32), "b": _rng(6).normal(size=7).astype(np.float32),
             "d": _rng(7).normal(size=5), "bf": np.array([1.5, -2.25, 3e38], np.float32).astype(ml_dtypes.bfloat16),
             "big": np.array([1.0, 1e6], np.float32), "i": np.arange(3), "large": np.ones(100, np.float32)}
    report = compress(state, tmp_path / "m.wl", layers=["w"], small_float16=10, **OPTIONS)
    kinds = {e.name: e.kind for e in report.tensors}
    # bf's 3e38 and big's 1e6 overflow float16: they stay raw, as do integers and larger tensors.
    assert kinds == {"w": "encoded", "b": "float16", "d": "float16", "bf": "raw", "big": "raw", "i": "raw",
                     "large": "raw"}
    back = decompress(tmp_path / "m.wl")
    for name in ("b", "d"):
        assert back[name].dtype == state[name].dtype
        np.testing.assert_array_equal(back[name], state[name].astype(np.float16).astype(state[name].dtype))
    assert 0 < report.tensors[1].relative_error < 2**-11
    with open_container(tmp_path / "m.wl") as c:
        assert c.entry("b").nbytes == 14 and c.entry("b").kind == "float16"


def test_legacy_v1_file_still_reads():
    here = os.path.join(os.path.dirname(__file__), "data")
    with open_container(os.path.join(here, "v1_basic.wl")) as c:
        assert c.version == 1 and c.entry("fc1.weight").kind == "encoded"
        got = b"".join(np.ascontiguousarray(a).tobytes() for a in c.read_all(threads=1).values())
    with open(os.path.join(here, "v1_basic.expected.bin"), "rb") as f:
        assert got == f.read()


@pytest.mark.parametrize(
    "text, message",
    [
        (b'{"tensors": [], "x": NaN}', "NaN is not a valid JSON number"),
        (b'{"tensors": [], "tensors": []}', "duplicate key"),
        (b"[1, 2]", "no tensor list"),
        (b"\xff\xfe", "bad header"),
        (b"{", "bad header"),
    ],
)
def test_bad_json_in_legacy_v1_files(tmp_path, text, message):
    text += b" " * (-(16 + len(text)) % 8)
    body = struct.pack("<4sHHQ", b"WLMF", 1, 0, len(text)) + text
    (tmp_path / "bad.wl").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(ValueError, match=r"malformed \.wl file: .*" + message):
        decompress(tmp_path / "bad.wl")


# --------------------------------------------------------------------------- Container


def test_container_reads_on_demand(tmp_path):
    state = _model()
    compress(state, tmp_path / "m.wl", **OPTIONS)
    full = decompress(tmp_path / "m.wl")
    with open_container(tmp_path / "m.wl") as c:
        assert c.names == list(state)
        assert c.metadata["weightless_version"] == __version__
        assert c.nbytes == os.path.getsize(tmp_path / "m.wl")
        layer = c.encoded_layer("fc1.weight")
        assert isinstance(layer, EncodedLayer)
        assert (layer.kept, layer.cell_bits) == (c.entry("fc1.weight").kept, 8)
        assert c.read("steps").tobytes() == state["steps"].tobytes()
        np.testing.assert_array_equal(c.read("half.weight"), full["half.weight"])
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            c.read("nope")
        with pytest.raises(ValueError, match="stored raw"):
            c.encoded_layer("fc1.bias")
        assert "3 encoded" in repr(c)
    with pytest.raises(ValueError, match="closed"):
        c.read("steps")


def _lenet5(rng: np.random.Generator) -> dict[str, np.ndarray]:
    state = {}
    for name, shape in [("conv1", (20, 1, 5, 5)), ("conv2", (50, 20, 5, 5)), ("fc1", (500, 800)), ("fc2", (10, 500))]:
        state[f"{name}.weight"] = rng.normal(0, 0.1, size=shape).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, size=shape[0]).astype(np.float32)
    return state


def test_lenet5_container_overhead_is_at_most_250_bytes(tmp_path):
    # Everything but the payloads (preamble, directory, trailer) for LeNet-5's 8 tensors, pruned
    # and clustered (issue 12: at most 250 bytes; version 1 took about 2 kB).
    state = _lenet5(_rng(12))
    for metadata in (False, True):
        report = container.compress(state, tmp_path / f"m{metadata}.wl", sparsity=0.92, clusters=16,
                                    metadata=metadata)
        overhead = report.compressed_bytes - sum(e.nbytes for e in report.tensors)
        if not metadata:
            assert overhead <= 250, overhead
        else:
            assert overhead > 250  # the JSON metadata: errors, baselines, candidates per tensor
    assert len(report.tensors) == 8 and {e.kind for e in report.tensors} >= {"raw"}


def test_outliers_overlay_agrees_between_python_and_the_core():
    # outliers.wl (tests/data/make_golden.py): bloomier payloads with an outliers section. The
    # Python decode (EncodedLayer.decode) and the C++ reader's agree, and the outliers change
    # what the filter alone decodes.
    with open_container(os.path.join(os.path.dirname(__file__), "data", "outliers.wl")) as c:
        assert c.metadata == {}
        for e in c.tensors[:2]:
            layer = c.encoded_layer(e.name)
            assert layer.outliers is not None and layer.outliers.kept > 0
            core = c.read(e.name, threads=1)
            assert layer.decode(1, dtype=e.dtype).tobytes() == core.tobytes()
            out = np.empty(e.shape, np.float32)
            np.testing.assert_array_equal(layer.decode(1, out=out).astype(e.dtype), core)
            positions, codes = layer.outliers.sparse()
            flat = core.reshape(-1).astype(np.float32)
            np.testing.assert_array_equal(flat[positions.astype(np.int64)],
                                          layer.outliers.codebook[codes].astype(e.dtype).astype(np.float32))
            alone = layer.filter.decode_weights(layer.size, layer.codebook, threads=1)
            assert not np.array_equal(alone.astype(e.dtype), core.reshape(-1))
            assert layer.nbytes == e.nbytes == len(layer.to_payload())


# ------------------------------------------------------------ headless exact payloads (v3)


def _wlex_from_headless(headless: bytes, shape: list[int]) -> bytes:
    """The exact codec payload a v3 reader rebuilds (docs/FORMAT.md, "Headless exact payload")."""
    body = b"WLEX" + headless[:1] + bytes([len(shape)]) + headless[1:3] + b"".join(map(put_varint, shape))
    body += headless[3:]
    return body + struct.pack("<I", zlib.crc32(body))


def _split_bloomier(payload: bytes) -> bytes:
    """The outliers section of a bloomier payload (docs/FORMAT.md, "Bloomier payload")."""
    clusters, at = varint(payload, 0)
    _, at = varint(payload, at)
    filter_len, at = varint(payload, at + 4 * clusters)
    return payload[at + filter_len :]


@pytest.mark.parametrize("golden", ["exact.wl", "outliers.wl"])
def test_exact_payloads_are_headless_as_the_spec_says(golden):
    # Each exact payload, and each outliers section, is the exact codec's payload without magic,
    # ndim, shape and CRC-32; rebuilt as the spec says it is what exact_layer() / outliers hold,
    # and the savings are 9 bytes plus the shape's varints.
    path = os.path.join(os.path.dirname(__file__), "data", golden)
    with open(path, "rb") as f:
        data = f.read()
    records, area, _ = parse(data)
    seen = 0
    with open_container(path) as c:
        for r in records:
            payload = area[r["offset"] - 8 : r["offset"] - 8 + r["length"]]
            if r["codec"] == 2:
                full, headless = c.exact_layer(r["name"]).to_bytes(), payload
            elif r["codec"] == 1 and _split_bloomier(payload):
                outliers = c.encoded_layer(r["name"]).outliers
                assert outliers is not None
                full, headless = outliers.to_bytes(), _split_bloomier(payload)
                assert c.encoded_layer(r["name"]).nbytes == r["length"]
            else:
                continue
            seen += 1
            assert full[:4] == b"WLEX" and headless[:1] != b"W"
            assert _wlex_from_headless(headless, r["shape"]) == full
            assert len(full) - len(headless) == 9 + sum(len(put_varint(d)) for d in r["shape"])
    assert seen >= 3


def _exact_file(tmp_path, payload: bytes, shape: list[int], name: str = "w") -> str:
    path = str(tmp_path / "e.wl")
    with open(path, "wb") as f:
        f.write(build([{"name": name, "dtype": "float32", "codec": 2, "shape": shape, "length": len(payload),
                         "crc32": zlib.crc32(payload)}], payload))
    return path


def test_malformed_headless_exact_payloads_are_refused_naming_the_tensor(tmp_path):
    from weightless.exact import encode_exact

    w = _rng(5).normal(size=(6, 7)).astype(np.float32)
    layer = encode_exact(w, sparsity=0.5, clusters=4)
    headless = layer.to_payload()
    assert len(headless) == layer.payload_nbytes == layer.nbytes - 11
    path = _exact_file(tmp_path, headless, [6, 7])
    np.testing.assert_array_equal(decompress(path)["w"], layer.decode())
    with open_container(path) as c:
        assert c.exact_layer("w").to_bytes() == layer.to_bytes()
    cases = [
        (headless, [2, 3], "21 kept weights for 6 positions"),  # n > the tensor's size
        (headless + b"\0", [6, 7], "1 bytes after the code stream"),
        (headless[:-1], [6, 7], "truncated"),
        (layer.to_bytes(), [6, 7], "exact codec version 87"),  # a full WLEX payload is not headless
        (b"", [6, 7], "truncated"),
        (headless, [1] * 33, "at most 32 dimensions"),
    ]
    for payload, shape, message in cases:
        path = _exact_file(tmp_path, payload, shape, name="fc\n1")
        reader = _core.ModelReader(path)  # opens: the directory is well-formed
        with pytest.raises(ValueError, match=r"malformed \.wl file: tensor 'fc\\x0a1': .*" + message):
            reader.decode(0, np.empty(4 * math.prod(shape), np.uint8), 1)  # the C++ reader, as the C API
        with pytest.raises(ValueError, match=r"malformed \.wl file: tensor 'fc\\n1': .*" + message):
            open_container(path)  # without metadata, the statistics come from the payload
