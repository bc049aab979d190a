"""The bad-input matrix (docs/HARDENING.md): each hostile or broken input through every entry point
that can meet it -- the Python API, the `weightless` CLI and `wl-decode` (the C API).

Every case must end in a clear error: ValueError (or the OSError the case names) with its cause
in Python; exit status 1 and one line on stderr from the CLI and wl-decode; never a traceback, a
crash or a hang; and the directory holding the files is left exactly as it was (no partial or
temporary output). Cases already tested elsewhere byte by byte (every truncation and every
flipped byte of a small file through the API: tests/test_container.py; the filter's own bytes:
tests/test_filter.py; the C API's hand-built containers: tests/cpp/test_c_api.cpp) are covered
here at their boundaries, through the entry points those tests do not reach.

wl-decode comes from the shared C++ build of the test session (or from $WL_DECODE).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import missing, requires
from wl_v3 import DTYPES, build, parse, put_varint, varint

from weightless.cli import main as cli_main
from weightless.codec import EncodedLayer
from weightless.container import compress, decompress, open_container
from weightless.filter import BloomierFilter
from weightless.io import load_state, save_state

ROOT = Path(__file__).resolve().parents[1]

MODEL = {
    "fc.weight": np.random.default_rng(0).normal(size=(24, 16)).astype(np.float32),
    "fc.bias": np.random.default_rng(1).normal(size=16).astype(np.float32),
    "h.weight": np.random.default_rng(2).normal(size=(8, 16)).astype(np.float16),
    "flags": np.array([True, False, True]),
    "step": np.array(7, dtype=np.int64),
}
ENCODED = ["fc.weight", "h.weight"]
OPTIONS = dict(sparsity=0.7, clusters=8, cell_bits=8, seed=1, threads=1, codec="bloomier")  # the filter's format


# --------------------------------------------------------------------------- wl-decode


@pytest.fixture(scope="session")
def wl_decode(request: pytest.FixtureRequest) -> str:
    """The wl-decode binary: $WL_DECODE, else the session's shared C++ build (conftest.cpp_build)."""
    if os.environ.get("WL_DECODE"):
        return os.environ["WL_DECODE"]
    return str(request.getfixturevalue("cpp_build") / "wl-decode")


# --------------------------------------------------------------------------- building bad files


def _good_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good-src.wl"
    if not path.exists():
        compress(MODEL, path, layers=ENCODED, **OPTIONS)
    return path.read_bytes()


def _split(data: bytes) -> tuple[dict, list[bytes]]:
    """The directory (as {"tensors": records, "metadata": bytes}) and the payloads of a
    well-formed version 3 .wl file (docs/FORMAT.md)."""
    records, _, metadata = parse(data)
    blobs = [data[r["offset"] : r["offset"] + r.pop("length")] for r in records]
    return {"tensors": records, "metadata": metadata}, blobs


def _join(header: dict, blobs: list[bytes], fix_crcs: bool = True) -> bytes:
    """A container around these payloads with consistent lengths (unless a record gives its own)
    and (optionally) CRCs; a dtype name the format does not know gets the id 200."""
    records = []
    for e, blob in zip(header["tensors"], blobs):
        if fix_crcs:
            e["crc32"] = zlib.crc32(blob)
        dtype = e["dtype"] if e["dtype"] in DTYPES else 200
        records.append({**e, "dtype": dtype, "length": e.get("length", len(blob))})
    return build(records, b"".join(blobs), header["metadata"])


def _filter_span(blob: bytes) -> tuple[int, int]:
    """Where the filter lies in a bloomier payload: varint clusters, varint false positives,
    codebook, varint filter length, filter."""
    k, at = varint(blob, 0)
    _, at = varint(blob, at)
    flen, at = varint(blob, at + 4 * k)
    return at, at + flen


def _edit_layer(data: bytes, name: str, edit: Callable[[bytes], bytes]) -> bytes:
    """Edits a payload; the directory's CRC-32 of it is fixed, so only the codec's checks can reject it."""
    header, blobs = _split(data)
    i = [e["name"] for e in header["tensors"]].index(name)
    blobs[i] = edit(blobs[i])
    return _join(header, blobs)


def _edit_filter(data: bytes, name: str, edit: Callable[[bytes], bytes]) -> bytes:
    """Edits the filter inside a bloomier payload; the payload's filter length and every CRC
    outside the filter are fixed, so only the filter's own checks can reject it."""

    def on_layer(blob: bytes) -> bytes:
        a, b = _filter_span(blob)
        f = edit(blob[a:b])
        k, at = varint(blob, 0)
        _, at = varint(blob, at)
        return blob[: at + 4 * k] + put_varint(len(f)) + f + blob[b:]

    return _edit_layer(data, name, on_layer)


def _fix_filter_crc(f: bytes) -> bytes:
    return f[:-4] + struct.pack("<I", zlib.crc32(f[:-4]))


def _edit_header(data: bytes, edit: Callable[[dict], None]) -> bytes:
    header, blobs = _split(data)
    edit(header)
    return _join(header, blobs, fix_crcs=False)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x08]) + data[at + 1 :]


def _set_u16(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<H", value) + data[at + 2 :]


def _huge_layer(shape: tuple[int, ...]) -> bytes:
    """An all-zero bloomier payload (the shape is the directory's): its filter is a few bytes
    whatever the shape."""
    empty = BloomierFilter(np.zeros(0, np.uint64), np.zeros(0, np.uint32), value_bits=1, cell_bits=8)
    return EncodedLayer((0,), np.zeros(1, np.float32), empty, 0).to_payload()


def _with_huge_layer(data: bytes, shape: tuple[int, ...]) -> bytes:
    header, blobs = _split(data)
    i = [e["name"] for e in header["tensors"]].index("fc.weight")
    blobs[i] = _huge_layer(shape)
    header["tensors"][i].update(shape=list(shape))
    header["metadata"] = b""  # the recorded statistics were of the original layer
    return _join(header, blobs)


# --------------------------------------------------------------------------- running the readers


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(directory.iterdir())}


def _cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


def _assert_cli_failed(code: int, err: str, command: str, message: str) -> None:
    assert code == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"weightless {command}: error: "), err
    assert message is None or re.search(message, lines[0]), (message, err)


def _run(argv: list[str], env: dict | None = None, preexec=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, preexec_fn=preexec)


def _assert_tool_failed(done: subprocess.CompletedProcess, prefix: str, message: str | None) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and "Sanitizer" not in done.stderr, done.stderr
    assert lines[0].startswith(prefix), done.stderr
    assert message is None or re.search(message, lines[0]), (message, done.stderr)


def _reject_everywhere(tmp_path: Path, capsys, wl_decode: str, data: bytes, py: str, c: str | None,
                       header_level: bool, env: dict | None = None, tensor: str = "fc.weight") -> None:
    """The .wl bytes are refused by the API, `weightless decompress` (and `inspect` when the
    problem is in the header), and wl-decode --all, each with the expected message."""
    work = tmp_path / "work"
    work.mkdir()
    bad = work / "bad.wl"
    bad.write_bytes(data)
    before = _snapshot(work)
    with pytest.raises(ValueError, match=py):
        decompress(bad)
    if header_level:
        with pytest.raises(ValueError, match=py):
            open_container(bad)
    _assert_cli_failed(*_cli(capsys, "decompress", bad, "-o", work / "out.npz"), "decompress", py)
    code, err = _cli(capsys, "inspect", bad)
    if header_level:
        _assert_cli_failed(code, err, "inspect", py)
    else:
        assert code == 0, err  # the header alone is fine: inspect reads nothing else
    _assert_tool_failed(_run([wl_decode, bad, "--all"], env), "wl-decode: ", c)
    _assert_tool_failed(_run([wl_decode, bad, "--tensor", tensor, "-o", work / "o.npy"], env), "wl-decode: ", c)
    assert _snapshot(work) == before


# --------------------------------------------------------------------------- truncation


def _container_boundaries(data: bytes) -> list[int]:
    """Every boundary of the container's layout: preamble fields, each payload, the directory,
    the metadata and the trailer's fields."""
    header, blobs = _split(data)
    dir_len, meta_len = struct.unpack_from("<II", data, len(data) - 16)
    end = len(data) - 16
    cuts = {0, 3, 4, 6, 8, end - meta_len - dir_len, end - meta_len - dir_len // 2, end - meta_len, end - meta_len // 2,
            end, end + 4, end + 8, end + 12, len(data) - 1}
    at = 8
    for blob in blobs:
        cuts |= {at + len(blob) // 2}
        at += len(blob)
    return sorted(cuts)


@pytest.mark.parametrize("cut", range(24))
def test_truncated_file_at_each_boundary(tmp_path, capsys, wl_decode, cut):
    data = _good_bytes(tmp_path)
    cuts = _container_boundaries(data)
    assert len(cuts) <= 24
    n = cuts[min(cut, len(cuts) - 1)]
    _reject_everywhere(tmp_path, capsys, wl_decode, data[:n], r"malformed \.wl file", r"malformed \.wl file",
                       header_level=True)


# Bloomier payload boundaries: clusters, false positives, codebook, filter length, filter
# (docs/FORMAT.md, "Bloomier payload").
LAYER_CUTS = ["0", "1", "2", "codebook_mid", "codebook_end", "filter_start", "filter_mid", "filter_end_minus_1"]


@pytest.mark.parametrize("cut", LAYER_CUTS)
def test_truncated_layer_at_each_boundary(tmp_path, capsys, wl_decode, cut):
    def truncate(blob: bytes) -> bytes:
        a, b = _filter_span(blob)
        n = {"codebook_mid": (2 + a) // 2, "codebook_end": a - 1, "filter_start": a, "filter_mid": (a + b) // 2,
             "filter_end_minus_1": b - 1}.get(cut)
        return blob[: int(cut) if n is None else n]

    data = _edit_layer(_good_bytes(tmp_path), "fc.weight", truncate)
    message = r"tensor 'fc\.weight': (truncated|malformed weightless filter)"
    _reject_everywhere(tmp_path, capsys, wl_decode, data, message, message, header_level=False)


FILTER_CUTS = [0, 4, 6, 8, 12, 16, 24, 32, "directory_mid", "directory_end", "cells_mid", "inside_crc"]


@pytest.mark.parametrize("cut", FILTER_CUTS)
def test_truncated_filter_at_each_boundary(tmp_path, capsys, wl_decode, cut):
    def truncate(f: bytes) -> bytes:
        pieces = struct.unpack_from("<I", f, 12)[0]
        n = {"directory_mid": 32 + 16 * pieces, "directory_end": 32 + 32 * pieces,
             "cells_mid": (32 + 32 * pieces + len(f) - 4) // 2, "inside_crc": len(f) - 2}.get(cut, cut)
        return _fix_filter_crc(f[:n] + b"\0\0\0\0") if n >= 32 else f[:n]

    data = _edit_filter(_good_bytes(tmp_path), "fc.weight", truncate)
    _reject_everywhere(tmp_path, capsys, wl_decode, data, r"tensor 'fc\.weight': malformed weightless filter",
                       r"tensor 'fc\.weight': malformed weightless filter", header_level=False)


# --------------------------------------------------------------------------- flipped bits


FLIPS = {
    # where -> (edit of the good bytes, Python message, C message, problem in the directory)
    "directory": (lambda d: _flip(d, _directory_at(d) + 3), "checksum mismatch in the directory",
                  "checksum mismatch in the directory", True),
    "metadata": (lambda d: _flip(d, len(d) - 30), "checksum mismatch in the directory",
                 "checksum mismatch in the directory", True),
    "trailer crc": (lambda d: _flip(d, len(d) - 7), "checksum mismatch", "checksum mismatch", True),
    "raw payload": (lambda d: _flip(d, _blob_at(d, "fc.bias")), "tensor 'fc.bias': checksum mismatch",
                    "tensor 'fc.bias': checksum mismatch", False),
    "bloomier payload": (lambda d: _flip(d, _blob_at(d, "fc.weight", 40)), "tensor 'fc.weight': checksum mismatch",
                         "tensor 'fc.weight': checksum mismatch", False),
    "filter, the payload's crc fixed": (
        lambda d: _edit_layer(d, "fc.weight", lambda b: _flip(b, _filter_span(b)[0] + 40)),
        "malformed weightless filter: checksum mismatch", "malformed weightless filter: checksum mismatch", False),
}


def _directory_at(data: bytes) -> int:
    dir_len, meta_len = struct.unpack_from("<II", data, len(data) - 16)
    return len(data) - 16 - meta_len - dir_len


def _blob_at(data: bytes, name: str, extra: int = 0) -> int:
    header, blobs = _split(data)
    i = [e["name"] for e in header["tensors"]].index(name)
    return 8 + sum(len(b) for b in blobs[:i]) + extra


@pytest.mark.parametrize("where", list(FLIPS))
def test_flipped_bits_are_caught_by_a_checksum(tmp_path, capsys, wl_decode, where):
    edit, py, c, header_level = FLIPS[where]
    _reject_everywhere(tmp_path, capsys, wl_decode, edit(_good_bytes(tmp_path)), py, c, header_level,
                       tensor="fc.bias" if "raw" in where else "fc.weight")


# --------------------------------------------------------------------------- magic and version


MAGIC_VERSION = {
    "container magic": (lambda d: b"WLMX" + d[4:], "not a weightless model file", "bad magic", True),
    "container version": (lambda d: _set_u16(d, 4, 2), "unsupported .wl version 2", "unsupported .wl version 2",
                          True),
    "container flags": (lambda d: _set_u16(d, 6, 1), "unknown flags", "unknown flags", True),
    "trailer magic": (lambda d: d[:-4] + b"WLMX", "no trailer", "no trailer", True),
    "filter magic": (lambda d: _edit_filter(d, "fc.weight", lambda f: _fix_filter_crc(b"WLBX" + f[4:])),
                     r"bad magic \(not a weightless filter\)", r"bad magic \(not a weightless filter\)", False),
    "filter version": (lambda d: _edit_filter(d, "fc.weight", lambda f: _fix_filter_crc(_set_u16(f, 4, 9))),
                       "unsupported format version 9", "unsupported format version 9", False),
}


@pytest.mark.parametrize("which", list(MAGIC_VERSION))
def test_wrong_magic_and_version(tmp_path, capsys, wl_decode, which):
    edit, py, c, header_level = MAGIC_VERSION[which]
    _reject_everywhere(tmp_path, capsys, wl_decode, edit(_good_bytes(tmp_path)), py, c, header_level)


# --------------------------------------------------------------------------- huge dimensions


def test_huge_declared_shape_is_refused_before_allocating(tmp_path, capsys, wl_decode):
    # 2^42 positions, 16 TiB of float32, in a blob of a hundred bytes: refused by the size check,
    # not by the allocator (or the OOM killer).
    data = _with_huge_layer(_good_bytes(tmp_path), (2**21, 2**21))
    assert len(data) < 4096
    _reject_everywhere(tmp_path, capsys, wl_decode, data, r"the 5 tensors: decoding needs 17,592,186,044,747 "
                       r"bytes, more than the limit", r"tensor 'fc\.weight': decoding needs 17592186044416 bytes",
                       header_level=False)
    with open_container(tmp_path / "work" / "bad.wl") as c:
        layer = c.encoded_layer("fc.weight")  # parsing it allocates nothing sized by the shape
        with pytest.raises(ValueError, match=r"shape \(2097152, 2097152\): decoding needs"):
            layer.decode()
        with pytest.raises(ValueError, match="decoding needs"):
            c.read("fc.weight")


def test_shape_whose_size_overflows_64_bits(tmp_path, capsys, wl_decode):
    data = _with_huge_layer(_good_bytes(tmp_path), (2**40, 2**40))
    _reject_everywhere(tmp_path, capsys, wl_decode, data, "shape too large", "shape too large", header_level=True)


def test_the_decode_limit_can_be_lowered(tmp_path, capsys, wl_decode, monkeypatch):
    # WEIGHTLESS_MAX_DECODE_BYTES: fc.weight decodes to 24 * 16 * 4 = 1536 bytes.
    monkeypatch.setenv("WEIGHTLESS_MAX_DECODE_BYTES", "1000")
    env = {"WEIGHTLESS_MAX_DECODE_BYTES": "1000"}
    _reject_everywhere(tmp_path, capsys, wl_decode, _good_bytes(tmp_path), "more than the limit of 1,000",
                       "needs 1536 bytes, more than the limit of 1000", header_level=False, env=env)
    monkeypatch.setenv("WEIGHTLESS_MAX_DECODE_BYTES", "lots")
    with pytest.raises(ValueError, match="WEIGHTLESS_MAX_DECODE_BYTES must be a number of bytes"):
        decompress(tmp_path / "work" / "bad.wl")
    done = _run([wl_decode, tmp_path / "work" / "bad.wl", "--all"], {"WEIGHTLESS_MAX_DECODE_BYTES": "lots"})
    _assert_tool_failed(done, "wl-decode: ", "WEIGHTLESS_MAX_DECODE_BYTES must be a number")


def test_raw_tensor_with_a_huge_shape(tmp_path, capsys, wl_decode):
    data = _edit_header(_good_bytes(tmp_path), lambda h: h["tensors"][1].update(shape=[2**60]))
    _reject_everywhere(tmp_path, capsys, wl_decode, data,
                       r"malformed \.wl file: tensor 'fc\.bias': (\d+ bytes for \d+ float32|shape too large)",
                       r"tensor 'fc\.bias': (\d+ bytes for \d+ float32|shape too large)", header_level=True)


def test_npz_member_with_a_huge_shape(tmp_path, capsys):
    # A valid zip whose .npy header claims 2^60 elements over 64 bytes of data.
    path = tmp_path / "m.npz"
    header = np.lib.format.header_data_from_array_1_0(np.ones((4, 4), np.float32))
    header["shape"] = (2**40, 2**20)
    with zipfile.ZipFile(path, "w") as z, z.open("w.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(np.ones(16, np.float32).tobytes())
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError,
                       match=r"member 'w\.npy': shape \(1099511627776, 1048576\) of float32 does not match"):
        load_state(path)
    _assert_cli_failed(*_cli(capsys, "compress", path, "-o", tmp_path / "m.wl"), "compress", "does not match")
    assert _snapshot(tmp_path) == before


def _flip_central(data: bytes, field: int, bits: int) -> bytes:
    """The zip's first central-directory entry with `bits` flipped in the 16-bit field at `field`."""
    at = data.index(b"PK\x01\x02") + field
    (value,) = struct.unpack_from("<H", data, at)
    return data[:at] + struct.pack("<H", value ^ bits) + data[at + 2 :]


# One flipped bit in an .npz's zip headers made zipfile raise NotImplementedError or RuntimeError,
# which escaped `compress` and the CLI as a traceback (issue 10); and a .npy header that numpy's
# parser chokes on escaped as tokenize.TokenError.
DAMAGED_NPZ = {
    # (edit of the good .npz, regex of the message)
    "compression method": (lambda d: _flip_central(d, 10, 0x02), "uses compression method 2"),
    "encryption flag": (lambda d: _flip_central(d, 8, 0x01), r"member 'fc\.weight\.npy' is encrypted"),
    "strong encryption flag": (lambda d: _flip_central(d, 8, 0x40), r"member 'fc\.weight\.npy' is encrypted"),
    "version needed": (lambda d: _flip_central(d, 6, 0x80), "zip file version"),
    # Rezipped, so that the zip's CRC is right and only the .npy header is wrong.
    ".npy version 3.0": (lambda d: _edit_npy(d, lambda b: b[:6] + b"\x03\x00" + b[8:]),
                         r"member 'fc.weight.npy': ValueError: header of \d+ bytes is larger than the limit"),
    ".npy header unbalanced": (lambda d: _edit_npy(d, lambda b: b.replace(b"'<f4'", b"(((( ", 1)),
                               r"member 'fc\.weight\.npy': TokenError: .*EOF in multi-line statement"),
}


def _edit_npy(data: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """The .npz with its member fc.weight.npy edited, in a consistent zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, content in members.items():
            z.writestr(name, edit(content) if name == "fc.weight.npy" else content)
    return out.getvalue()


@pytest.mark.parametrize("which", list(DAMAGED_NPZ))
def test_damaged_npz_is_one_line_error(tmp_path, capsys, which):
    edit, message = DAMAGED_NPZ[which]
    save_state(MODEL, tmp_path / "good.npz")
    path = tmp_path / "bad.npz"
    path.write_bytes(edit((tmp_path / "good.npz").read_bytes()))
    (tmp_path / "good.npz").unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a valid .npz file (") + ".*" + message):
        compress(path, tmp_path / "m.wl", **OPTIONS)
    _assert_cli_failed(*_cli(capsys, "compress", path, "-o", tmp_path / "m.wl"), "compress",
                       re.escape(str(path)) + ".*" + message)
    done = _run([sys.executable, "-m", "weightless.cli", "compress", path, "-o", tmp_path / "m.wl"],
                {"PYTHONPATH": str(ROOT)})
    _assert_tool_failed(done, "weightless compress: error: ", message)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- zero-sized tensors


@pytest.mark.parametrize("ext", [".npz", pytest.param(".safetensors", marks=requires("safetensors"))])
def test_zero_sized_tensors_round_trip_everywhere(tmp_path, capsys, wl_decode, ext):
    state = {"e": np.zeros((0, 64), np.float32), "z": np.zeros((3, 0, 2), np.int16), "w": np.ones((40, 30), np.float32)}
    save_state(state, tmp_path / f"in{ext}")
    assert _cli(capsys, "compress", tmp_path / f"in{ext}", "-o", tmp_path / "m.wl", "--layers", "e", "w",
                "--codec", "bloomier")[0] == 0
    with open_container(tmp_path / "m.wl") as c:
        assert c.entry("e").kind == "encoded" and c.entry("z").kind == "raw"
    assert _cli(capsys, "decompress", tmp_path / "m.wl", "-o", tmp_path / "out.npz")[0] == 0
    back = load_state(tmp_path / "out.npz")
    assert back["e"].shape == (0, 64) and back["z"].shape == (3, 0, 2)
    done = _run([wl_decode, tmp_path / "m.wl", "--tensor", "e", "-o", tmp_path / "e.npy"])
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "e.npy").shape == (0, 64)


# --------------------------------------------------------------------------- NaN / Inf weights


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("via", ["api", "npz", pytest.param("cli-safetensors", marks=requires("safetensors"))])
def test_non_finite_weights_are_refused(tmp_path, capsys, bad, via):
    w = MODEL["fc.weight"].copy()
    w[5, 3] = bad
    state = {**MODEL, "fc.weight": w}
    message = r"tensor 'fc\.weight': weights contain (NaN|Inf)"
    if via == "api":
        with pytest.raises(ValueError, match=message):
            compress(state, tmp_path / "m.wl", layers=ENCODED)
    else:
        src = tmp_path / ("m.npz" if via == "npz" else "m.safetensors")
        save_state(state, src)
        before = _snapshot(tmp_path)
        if via == "npz":
            with pytest.raises(ValueError, match=message):
                compress(src, tmp_path / "m.wl", layers=ENCODED)
        else:
            _assert_cli_failed(*_cli(capsys, "compress", src, "-o", tmp_path / "m.wl", "--layers", *ENCODED),
                               "compress", message)
        assert _snapshot(tmp_path) == before
    assert not (tmp_path / "m.wl").exists()


def test_non_finite_codebook_in_a_file(tmp_path, capsys, wl_decode):
    def nan_codebook(blob: bytes) -> bytes:
        _, at = varint(blob, varint(blob, 0)[1])  # past clusters and false positives
        return blob[:at] + struct.pack("<f", float("nan")) + blob[at + 4 :]

    data = _edit_layer(_good_bytes(tmp_path), "fc.weight", nan_codebook)
    _reject_everywhere(tmp_path, capsys, wl_decode, data, "the codebook is not finite", "the codebook is not finite",
                       header_level=False)


# --------------------------------------------------------------------------- unsupported dtypes


def _npz_with(tmp_path: Path, value) -> Path:
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, a in {"w": MODEL["fc.weight"], "odd": value}.items():
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.asarray(a), allow_pickle=True)
    return path


UNSUPPORTED = {
    "complex64 in npz": (lambda p: _npz_with(p, np.zeros(3, np.complex64)), "'odd' has dtype complex64, which a"),
    "strings in npz": (lambda p: _npz_with(p, np.array(["ab"])), "'odd' has dtype <U2, which a"),
    "objects in npz": (lambda p: _npz_with(p, np.array([{}], dtype=object)), "holds Python objects"),
}


@pytest.mark.parametrize("which", list(UNSUPPORTED))
def test_unsupported_dtypes_in_model_files(tmp_path, capsys, which):
    make, message = UNSUPPORTED[which]
    src = make(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=message):
        compress(src, tmp_path / "m.wl")
    _assert_cli_failed(*_cli(capsys, "compress", src, "-o", tmp_path / "m.wl"), "compress", message)
    assert _snapshot(tmp_path) == before


def test_unsupported_dtype_in_a_wl_header(tmp_path, capsys, wl_decode):
    data = _edit_header(_good_bytes(tmp_path), lambda h: h["tensors"][1].update(dtype="complex64"))
    _reject_everywhere(tmp_path, capsys, wl_decode, data, "unknown dtype id 200", "unknown dtype id 200",
                       header_level=True)


def test_integer_layer_cannot_be_encoded(tmp_path, capsys):
    save_state(MODEL, tmp_path / "m.npz")
    _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "m.npz", "-o", tmp_path / "m.wl", "--layers", "step"),
                       "compress", "only floating tensors")
    assert not (tmp_path / "m.wl").exists()


# --------------------------------------------------------------------------- duplicate names


def test_duplicate_names_in_a_wl_file(tmp_path, capsys, wl_decode):
    data = _edit_header(_good_bytes(tmp_path), lambda h: h["tensors"][3].update(name="fc.bias"))
    _reject_everywhere(tmp_path, capsys, wl_decode, data, "tensor 'fc.bias' appears twice",
                       "tensor 'fc.bias' appears twice", header_level=True)


def test_invalid_metadata_in_a_wl_file(tmp_path, capsys, wl_decode):
    # The C side skips the metadata (after its CRC), so wl-decode decodes such a file; Python,
    # which reads the metadata, refuses it.
    header, blobs = _split(_good_bytes(tmp_path))
    header["metadata"] = header["metadata"].replace(b'"options"', b'"options":1,"options"', 1)[:-1]
    bad = tmp_path / "bad.wl"
    bad.write_bytes(_join(header, blobs, fix_crcs=False))
    with pytest.raises(ValueError, match="bad metadata"):
        decompress(bad)
    _assert_cli_failed(*_cli(capsys, "inspect", bad), "inspect", "bad metadata")
    assert _run([wl_decode, bad, "--all"]).returncode == 0


@requires("safetensors")
def test_duplicate_names_in_model_files(tmp_path, capsys):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        for value in (np.ones(3), np.zeros(3)):
            with z.open("w.npy", "w") as f:
                np.lib.format.write_array(f, value)
    header = (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
              b'"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
    st = tmp_path / "m.safetensors"
    st.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    before = _snapshot(tmp_path)
    for src, message in ((path, "tensor 'w' appears twice"), (st, "not a valid safetensors file")):
        with pytest.raises(ValueError, match=message):
            load_state(src)
        _assert_cli_failed(*_cli(capsys, "compress", src, "-o", tmp_path / "m.wl"), "compress", message)
    with pytest.raises(ValueError, match="named twice"):
        compress(MODEL, tmp_path / "m.wl", layers=["fc.weight", "fc.weight"])
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- directories


def test_paths_that_are_directories(tmp_path, capsys, wl_decode):
    good = tmp_path / "m.wl"
    compress(MODEL, good, layers=ENCODED, **OPTIONS)
    save_state(MODEL, tmp_path / "m.npz")
    (tmp_path / "d.npz").mkdir()
    (tmp_path / "d.wl").mkdir()
    (tmp_path / "d.npy").mkdir()
    before = _snapshot(tmp_path)
    # Inputs.
    with pytest.raises(ValueError, match="is a directory"):
        compress(tmp_path / "d.npz", tmp_path / "x.wl")
    with pytest.raises(ValueError, match="is a directory"):
        decompress(tmp_path / "d.wl")
    _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "d.npz", "-o", tmp_path / "x.wl"), "compress",
                       "is a directory")
    _assert_cli_failed(*_cli(capsys, "decompress", tmp_path / "d.wl", "-o", tmp_path / "x.npz"), "decompress",
                       "is a directory")
    _assert_cli_failed(*_cli(capsys, "inspect", tmp_path / "d.wl"), "inspect", "is a directory")
    _assert_tool_failed(_run([wl_decode, tmp_path / "d.wl"]), "wl-decode: ", "is a directory")
    # Outputs.
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is a directory"):
            compress(tmp_path / "m.npz", tmp_path / "d.wl", overwrite=overwrite)
        with pytest.raises(ValueError, match="is a directory"):
            save_state(MODEL, tmp_path / "d.npz", overwrite=overwrite)
    _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "m.npz", "-o", tmp_path / "d.wl", "--force"), "compress",
                       "is a directory")
    _assert_cli_failed(*_cli(capsys, "decompress", good, "-o", tmp_path / "d.npz", "--force"), "decompress",
                       "is a directory")
    _assert_tool_failed(_run([wl_decode, good, "--tensor", "fc.weight", "-o", tmp_path / "d.npy"]), "wl-decode: ",
                        "is a directory")
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- unwritable outputs


def _file_size_limit(limit: int):
    def preexec():  # a full disk: writes past `limit` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_unwritable_outputs(tmp_path, capsys, wl_decode):
    good = tmp_path / "m.wl"
    compress(MODEL, good, layers=ENCODED, **OPTIONS)
    save_state(MODEL, tmp_path / "m.npz")
    (tmp_path / "file").write_bytes(b"not a directory")
    before = _snapshot(tmp_path)
    # A missing directory, and a "directory" that is a file.
    for parent, message in ((tmp_path / "missing", "does not exist"), (tmp_path / "file", "is not a directory")):
        with pytest.raises(OSError, match=message):
            compress(tmp_path / "m.npz", parent / "x.wl")
        _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "m.npz", "-o", parent / "x.wl"), "compress", message)
        _assert_cli_failed(*_cli(capsys, "decompress", good, "-o", parent / "x.npz"), "decompress", message)
        _assert_tool_failed(_run([wl_decode, good, "--tensor", "fc.weight", "-o", parent / "x.npy"]), "wl-decode: ",
                            "cannot create a file in")
    # A full disk, in the middle of writing: nothing is left behind, not even temporary files.
    cli = [sys.executable, "-m", "weightless.cli"]
    env = {"PYTHONPATH": str(ROOT)}
    for argv in (cli + ["compress", tmp_path / "m.npz", "-o", tmp_path / "x.wl", "--threads", "1"],
                 cli + ["decompress", good, "-o", tmp_path / "x.npz"],
                 *([] if missing("safetensors") else [cli + ["decompress", good, "-o", tmp_path / "x.safetensors"]])):
        done = _run(argv, env, preexec=_file_size_limit(600))
        _assert_tool_failed(done, f"weightless {argv[3]}: error: ", "File too large|cannot write")
    done = _run([wl_decode, good, "--tensor", "fc.weight", "-o", tmp_path / "x.npy"], preexec=_file_size_limit(600))
    _assert_tool_failed(done, "wl-decode: ", "write failed: File too large")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "m.npz", "-o", ro / "x.wl"), "compress",
                           "Permission denied")
        _assert_tool_failed(_run([wl_decode, good, "--tensor", "fc.weight", "-o", ro / "x.npy"]), "wl-decode: ",
                            "Permission denied")
        ro.rmdir()
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------- output == input


def test_output_equal_to_input(tmp_path, capsys, wl_decode):
    good = tmp_path / "m.wl"
    compress(MODEL, good, layers=ENCODED, **OPTIONS)
    save_state(MODEL, tmp_path / "m.npz")
    os.link(good, tmp_path / "link.npy")  # the same file under another name
    os.link(tmp_path / "m.npz", tmp_path / "link.wl")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match="would replace the input"):
        compress(tmp_path / "m.npz", tmp_path / "link.wl", overwrite=True)
    _assert_cli_failed(*_cli(capsys, "compress", tmp_path / "m.npz", "-o", tmp_path / "link.wl", "--force"),
                       "compress", "is the input file")
    _assert_cli_failed(*_cli(capsys, "decompress", good, "-o", good, "--force"), "decompress", "is the input file")
    for out in (good, tmp_path / "link.npy"):
        _assert_tool_failed(_run([wl_decode, good, "--tensor", "fc.weight", "-o", out]), "wl-decode: ",
                            "is the input file")
    assert _snapshot(tmp_path) == before
    decompress(good)  # still intact
