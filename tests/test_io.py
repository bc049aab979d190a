"""Tests for weightless/io.py: model files in and out."""

from __future__ import annotations

import io
import os
import struct
import sys
import zipfile

import numpy as np
import pytest
from conftest import missing, requires

from weightless.io import check_format, load_state, model_format, save_state, write_atomically


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.normal(size=(8, 5)).astype(np.float32),
        "fc1.bias": rng.normal(size=8).astype(np.float16),
        "steps": np.array(7, dtype=np.int64),  # a scalar
        "mask": rng.random((3, 4)) < 0.5,
        "empty": np.zeros((0, 3), dtype=np.float64),
        "u": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "file": np.arange(3, dtype=np.int8),  # would clash with np.savez's own parameter
        "a/b.c": np.array([np.nan, -0.0, np.inf], dtype=np.float64),
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def _no_temp_files(directory) -> None:
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


@pytest.mark.parametrize("ext", [".npz", pytest.param(".safetensors", marks=requires("safetensors"))])
def test_round_trip(tmp_path, ext):
    state = _state()
    path = tmp_path / f"model{ext}"
    save_state(state, path)
    back = load_state(path)
    _same(state, back)
    if ext == ".npz":
        assert list(back) == list(state)  # npz keeps the order; safetensors sorts
    _no_temp_files(tmp_path)


def test_npz_keeps_nan_payloads(tmp_path):
    weird = np.array([0x7FC00001, 0xFFF12345], dtype=np.uint32).view(np.float32)
    save_state({"w": weird}, tmp_path / "m.npz")
    assert load_state(tmp_path / "m.npz")["w"].tobytes() == weird.tobytes()


@requires("safetensors")
def test_non_contiguous_input(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T
    save_state({"t": a}, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(load_state(tmp_path / "m.safetensors")["t"], a)


def test_formats_by_extension(tmp_path):
    assert model_format("a.NPZ") == "npz"
    assert model_format("x/y.safetensors") == "safetensors"
    assert model_format("m.pt") == model_format("m.pth") == "pt"
    with pytest.raises(ValueError, match=r"m\.h5: unknown model format '\.h5'"):
        model_format("m.h5")
    assert model_format("model") == "folder"  # a path without an extension: a checkpoint folder
    (tmp_path / "model").write_bytes(b"")
    with pytest.raises(ValueError, match="no extension"):
        model_format(tmp_path / "model")  # an existing file without one is not
    with pytest.raises(ValueError, match="decompress it first"):
        model_format("m.wl")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz: no such file"):
        load_state(tmp_path / "nope.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load_state(tmp_path / "d.npz")


def test_corrupt_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match="not a valid .npz file"):
        load_state(path)
    save_state(_state(), path, overwrite=True)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"m\.npz: not a valid .npz file"):
        load_state(path)
    np.save(tmp_path / "single.npy", np.arange(3))
    os.replace(tmp_path / "single.npy", path)  # a .npy named .npz
    with pytest.raises(ValueError, match="not a zip archive"):
        load_state(path)


def test_npz_refuses_pickles_and_foreign_members(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, o=np.array([{}, 1], dtype=object))
    with pytest.raises(ValueError, match="not a valid .npz file"):
        load_state(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="'readme.txt' is not a numpy array"):
        load_state(path)


@requires("safetensors")
def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"garbage" * 5)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_state(path)


@requires("safetensors", "ml_dtypes")
def test_safetensors_bfloat16_is_read_as_ml_dtypes_bfloat16(tmp_path):
    header = b'{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
    path = tmp_path / "bf.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2H", 0x3F80, 0xC0A0))  # 1.0, -5.0
    w = load_state(path)["w"]
    assert w.dtype.name == "bfloat16" and w.astype(np.float32).tolist() == [1.0, -5.0]
    save_state({"w": w}, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes()[-4:] == path.read_bytes()[-4:]
    with pytest.raises(ValueError, match="'w' is bfloat16, which .npz cannot hold"):
        save_state({"w": w}, tmp_path / "bf.npz")
    assert not (tmp_path / "bf.npz").exists()


def test_no_overwrite_without_asking(tmp_path):
    path = tmp_path / "m.npz"
    save_state({"a": np.zeros(2)}, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        save_state({"b": np.ones(2)}, path)
    assert path.read_bytes() == before
    save_state({"b": np.ones(2)}, path, overwrite=True)
    assert list(load_state(path)) == ["b"]
    _no_temp_files(tmp_path)


def test_failed_write_leaves_nothing(tmp_path):
    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out.npz", boom)
    assert os.listdir(tmp_path) == []
    # Writing refuses object arrays too (they would need pickle to read back).
    with pytest.raises(ValueError, match="'o' cannot be stored in .npz: Object arrays"):
        save_state({"o": np.array([{}], dtype=object)}, tmp_path / "o.npz")
    assert os.listdir(tmp_path) == []


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_state({"a": np.zeros(1)}, tmp_path / "no" / "m.npz")


def test_bad_state(tmp_path):
    with pytest.raises(ValueError, match="names must be strings"):
        save_state({1: np.zeros(1)}, tmp_path / "m.npz")
    with pytest.raises(TypeError, match="mapping"):
        save_state([np.zeros(1)], tmp_path / "m.npz")


def test_pt_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    path = tmp_path / "m.pt"
    path.write_bytes(b"not really")
    with pytest.raises(ImportError, match=r"reading \.pt files needs PyTorch: pip install torch"):
        load_state(path)
    with pytest.raises(ImportError, match=r"writing \.pt files needs PyTorch: pip install torch"):
        save_state({"a": np.zeros(2)}, tmp_path / "o.pth")
    with pytest.raises(ImportError, match="needs PyTorch"):
        check_format(tmp_path / "o.pt", writing=True)
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_pt_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    state = {k: v for k, v in _state().items() if k != "u"}  # torch's uint32 support varies
    path = tmp_path / "m.pt"
    save_state(state, path)
    back = load_state(path)
    assert list(back) == list(state)
    _same(state, back)
    # A checkpoint with a "state_dict" key, as training scripts write it.
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2, 2)}}, tmp_path / "ckpt.pth")
    np.testing.assert_array_equal(load_state(tmp_path / "ckpt.pth")["w"], np.ones((2, 2), np.float32))
    if not missing("ml_dtypes"):  # bfloat16: the same bits, as ml_dtypes' type, and back
        bits = torch.tensor([1.0, -2.5, float("inf")], dtype=torch.bfloat16)
        torch.save({"w": bits}, tmp_path / "bf.pt")
        w = load_state(tmp_path / "bf.pt")["w"]
        assert w.dtype.name == "bfloat16" and w.view(np.int16).tolist() == bits.view(torch.int16).tolist()
        save_state({"w": w}, tmp_path / "bf2.pt")
        assert torch.equal(torch.load(tmp_path / "bf2.pt")["w"], bits)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a loadable PyTorch file"):
        load_state(tmp_path / "junk.pt")


# --------------------------------------------------------------------------- damaged .npz (issue 10)
# Each of these escaped load_state as another exception than ValueError (named in the test).


def _npz_bytes(npy: bytes = b"", compression: int = zipfile.ZIP_STORED) -> bytes:
    """An .npz with one member, w.npy: `npy` if given, else a float32 array [0, 1, 2]."""
    if not npy:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.arange(3, dtype=np.float32))
        npy = buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        z.writestr("w.npy", npy)
    return out.getvalue()


def _central(data: bytes) -> int:
    return data.index(b"PK\x01\x02")


def _or_u16(data: bytes, at: int, bits: int) -> bytes:
    (value,) = struct.unpack_from("<H", data, at)
    return data[:at] + struct.pack("<H", value | bits) + data[at + 2 :]


def _xor_u16(data: bytes, at: int, bits: int) -> bytes:
    (value,) = struct.unpack_from("<H", data, at)
    return data[:at] + struct.pack("<H", value ^ bits) + data[at + 2 :]


# (edit of the archive, the message; what escaped before)
DAMAGED_ZIPS = {
    # NotImplementedError("That compression method is not supported"): stored (0) -> 2.
    "method flipped": (lambda d: _xor_u16(d, _central(d) + 10, 0x02), "uses compression method 2"),
    # NotImplementedError, same: deflated (8) -> deflate64 (9).
    "deflate64": (lambda d: _xor_u16(d, _central(d) + 10, 0x01), "uses compression method 9"),
    # a bzip2 member (deflated 8 -> 12) would expand without the ratio bound of deflate.
    "bzip2": (lambda d: _xor_u16(d, _central(d) + 10, 0x04), "uses compression method 12"),
    # RuntimeError("File 'w.npy' is encrypted, password required for extraction").
    "encrypted": (lambda d: _or_u16(d, _central(d) + 8, 0x01), "member 'w.npy' is encrypted"),
    # NotImplementedError("strong encryption (flag bit 6)").
    "strong encryption": (lambda d: _or_u16(d, _central(d) + 8, 0x40), "member 'w.npy' is encrypted"),
    # NotImplementedError("compressed patched data (flag bit 5)").
    "patched data": (lambda d: _or_u16(d, _central(d) + 8, 0x20), "compressed patched data"),
    # NotImplementedError("zip file version 14.8"), from ZipFile(): the version needed to extract.
    "version needed": (lambda d: _xor_u16(d, _central(d) + 6, 0x80), r"zip file version 14\.8"),
}


@pytest.mark.parametrize("which", list(DAMAGED_ZIPS))
def test_damaged_zip_members_are_refused(tmp_path, which):
    edit, message = DAMAGED_ZIPS[which]
    deflated = which in ("deflate64", "bzip2")
    path = tmp_path / "bad.npz"
    path.write_bytes(edit(_npz_bytes(compression=zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED)))
    with pytest.raises(ValueError, match=rf"bad\.npz: not a valid \.npz file \(.*{message}"):
        load_state(path)


def _npy(header: str, version: bytes = b"\x01\x00", data: bytes = bytes(12)) -> bytes:
    """A .npy stream with this header text (padded as numpy pads it) over `data`."""
    text = header.encode("utf-8" if version == b"\x03\x00" else "latin1")
    fmt = "<H" if version == b"\x01\x00" else "<I"
    pad = -(6 + 2 + struct.calcsize(fmt) + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY" + version + struct.pack(fmt, len(text)) + text + data


GOOD_HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"


def test_npy_version_3_members_are_read(tmp_path):
    # AttributeError: np.lib.format._read_array_header no longer exists in numpy 2.
    path = tmp_path / "v3.npz"
    path.write_bytes(_npz_bytes(_npy(GOOD_HEADER, b"\x03\x00", np.arange(3, dtype=np.float32).tobytes())))
    np.testing.assert_array_equal(load_state(path)["w"], np.arange(3, dtype=np.float32))
    buf = io.BytesIO()  # as numpy writes it
    np.lib.format.write_array(buf, np.arange(6, dtype=">i2").reshape(2, 3).T, version=(3, 0))
    path.write_bytes(_npz_bytes(buf.getvalue()))
    np.testing.assert_array_equal(load_state(path)["w"], np.arange(6, dtype=">i2").reshape(2, 3).T)


# (header text, .npy version, message; what escaped before)
BAD_NPY_HEADERS = {
    # tokenize.TokenError, from numpy's fallback parser for Python 2 headers.
    "unterminated string": ("{'descr': '<f4", b"\x01\x00", r"EOF in multi-line statement|Cannot parse header"),
    "unbalanced": ("{'descr': (((", b"\x01\x00", r"EOF in multi-line statement|Cannot parse header"),
    # IndexError from descr_to_dtype.
    "empty descr tuple": (GOOD_HEADER.replace("'<f4'", "()"), b"\x01\x00", "IndexError"),
    # AttributeError (version 3.0), then SyntaxError or IndexError from the header.
    "3.0 syntax error": ("{'descr': '<f4", b"\x03\x00", "SyntaxError"),
    "3.0 empty descr tuple": (GOOD_HEADER.replace("'<f4'", "()"), b"\x03\x00", "IndexError"),
    "3.0 missing key": ("{'descr': '<f4', 'shape': (3,)}", b"\x03\x00", "not a dictionary with the keys"),
    "3.0 bad shape": (GOOD_HEADER.replace("(3,)", "(3.0,)"), b"\x03\x00", "shape is not valid"),
    "3.0 not UTF-8": (GOOD_HEADER, b"\x03\x00", "UnicodeDecodeError"),  # descr made b"\xff\xfe\xfd" below
    # AttributeError: any version but 1.0 and 2.0 went to the missing private reader.
    "version 4.0": (GOOD_HEADER, b"\x04\x00", r"unsupported \.npy format version 4\.0"),
    "version 1.1": (GOOD_HEADER, b"\x01\x01", r"unsupported \.npy format version 1\.1"),
}


@pytest.mark.parametrize("which", list(BAD_NPY_HEADERS))
def test_malformed_npy_headers_are_refused(tmp_path, which):
    header, version, message = BAD_NPY_HEADERS[which]
    if which == "3.0 not UTF-8":
        npy = _npy(GOOD_HEADER, version).replace(b"<f4", b"\xff\xfe\xfd")
    else:
        npy = _npy(header, version)
    path = tmp_path / "bad.npz"
    path.write_bytes(_npz_bytes(npy))
    with pytest.raises(ValueError, match=rf"bad\.npz: not a valid \.npz file \(member 'w\.npy': .*({message})"):
        load_state(path)


def test_npy_version_3_header_length_is_bounded(tmp_path):
    npy = b"\x93NUMPY\x03\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{}"
    path = tmp_path / "bad.npz"
    path.write_bytes(_npz_bytes(npy))
    with pytest.raises(ValueError, match="header of 4294967280 bytes is larger than the limit"):
        load_state(path)


def test_memory_errors_are_not_swallowed(tmp_path, monkeypatch):
    # safe_open and torch.load are wrapped in `except Exception`, of which MemoryError is one.
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    pytest.importorskip("safetensors")
    import safetensors

    save_state({"w": np.ones(3, np.float32)}, tmp_path / "m.safetensors")
    monkeypatch.setattr(safetensors, "safe_open", out_of_memory)
    with pytest.raises(MemoryError):
        load_state(tmp_path / "m.safetensors")
    torch = pytest.importorskip("torch")
    save_state({"w": np.ones(3, np.float32)}, tmp_path / "m.pt")
    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(MemoryError):
        load_state(tmp_path / "m.pt")


def test_pt_output_is_reproducible(tmp_path):
    # torch.save given a path names the archive's directory after it: the random temporary name.
    pytest.importorskip("torch")
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_state(state, tmp_path / "a.pt")
    save_state(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.pt") as z:
        assert all(name.startswith("archive/") for name in z.namelist())


def test_pt_record_sizes_are_checked_before_torch_allocates_them(tmp_path):
    # torch.load allocated the 4 GB that a flipped central-directory size of data.pkl declared
    # (then failed to read it: "file read failed ... internal miniz error").
    pytest.importorskip("torch")
    save_state({"w": np.ones(4, np.float32)}, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    central = data.index(b"PK\x01\x02")
    assert data[central + 46 : central + 46 + 16] == b"archive/data.pkl"
    bad = data[: central + 24] + struct.pack("<I", 0xFFFFFFFF) + data[central + 28 :]
    (tmp_path / "bad.pt").write_bytes(bad)
    message = r"bad\.pt: not a loadable PyTorch file \(record 'archive/data\.pkl' declares 4294967295 bytes"
    with pytest.raises(ValueError, match=message):
        load_state(tmp_path / "bad.pt")


def test_pt_record_marked_as_a_directory_is_refused(tmp_path):
    # torch.load read such a record without filling its buffer: the "version" it parsed was
    # uninitialized memory, so the same file was refused with a different message each time
    # (utf-8 decoding of garbage) or, when the garbage happened to parse, accepted.
    pytest.importorskip("torch")
    save_state({"w": np.ones(4, np.float32)}, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    at = data.rindex(b"PK\x01\x02", 0, data.rindex(b"archive/version"))
    assert data[at + 46 : at + 61] == b"archive/version"
    bad = data[: at + 38] + bytes([data[at + 38] | 0x10]) + data[at + 39 :]
    (tmp_path / "bad.pt").write_bytes(bad)
    for _ in range(3):
        with pytest.raises(ValueError, match=r"bad\.pt: not a loadable PyTorch file \(record 'archive/version' is "
                                             r"marked as a directory\)"):
            load_state(tmp_path / "bad.pt")
