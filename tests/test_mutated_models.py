"""A mutation test of the model files `compress` reads (.npz, .safetensors, .pt), like the bad-input
matrix of .wl files (tests/test_bad_inputs.py) and docs/HARDENING.md.

For each format a small valid model file is made, and from it a fixed (seeded) set of mutants:
truncations at every structural boundary and at random points; single bit flips in every byte of
every header (zip local and central headers, the end records, the .npy headers, the safetensors
header and the .pt pickle) and in a sample of the data; huge values written into the length,
shape and offset fields (zip sizes and offsets, the .npy header's shape and length, the
safetensors header length and JSON offsets and shapes). All mutants run in ONE subprocess under a
bounded address space (RLIMIT_AS, so an allocation sized by a corrupted field fails instead of
swapping) with a per-mutant alarm (a hang fails) and an overall timeout (a crash fails too).

Each mutant is read twice (the two reads must agree: a reader of uninitialized memory would not)
and must either be read and compressed (and the .wl decompress to what was read), or be
refused with ValueError: by `load_state` with a message naming the file; by `compress` with a
message naming the file or, for a problem in a tensor's contents that io.py cannot see (NaN/Inf
weights, a dtype or rank a .wl file cannot store), naming the tensor. Nothing else may escape.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

# A 1 GiB address space suffices to import torch (about 640 MB of it, measured) and compress
# these models; 2 GiB leaves room, and is far below what a corrupted size field asks for.
ADDRESS_SPACE = 2 << 30
PER_MUTANT_SECONDS = 10
SEED = 10

# compress's content checks, which name the tensor but not the file (weightless/container.py).
CONTENT_REFUSALS = re.compile(r"^tensor '.*'(: weights contain (NaN|Inf)| has dtype .*, which a \.wl file cannot"
                              r"| has \d+ dimensions)")


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return {"w": rng.normal(size=(32, 32)).astype(np.float32),  # encoded (DEFAULT_MIN_ELEMENTS)
            "b": rng.normal(size=5).astype(np.float16), "n": np.arange(3, dtype=np.int64)}


# --------------------------------------------------------------------------- mutations


def _flip(data: bytes, at: int, bit: int) -> bytes:
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


def _put(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt) :]


HUGE = {"<H": (0xFFFF, 0x8000), "<I": (0xFFFFFFFF, 0x80000000, 0x7FFFFFFF),
        "<Q": (2**64 - 1, 2**63, 2**62, 2**32)}


def _huge(data: bytes, fields: list[tuple[str, int, str]]) -> list[tuple[str, bytes]]:
    """`data` with each (name, offset, struct format) field set to each of its huge values."""
    return [(f"huge {name}={v:#x}", _put(data, at, fmt, v)) for name, at, fmt in fields for v in HUGE[fmt]]


def _flips(data: bytes, headers: list[range], data_samples: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """A bit flip in every header byte (the bit varying with the position), and in a sample of the rest."""
    in_headers = sorted({i for r in headers for i in r if i < len(data)})
    rest = sorted(set(range(len(data))) - set(in_headers))
    out = [(f"flip bit {(i * 3) % 8} of byte {i} (header)", _flip(data, i, (i * 3) % 8)) for i in in_headers]
    for i in sorted(rng.sample(rest, min(data_samples, len(rest)))):
        bit = rng.randrange(8)
        out.append((f"flip bit {bit} of byte {i}", _flip(data, i, bit)))
    return out


def _truncations(data: bytes, boundaries: set[int], random_cuts: int, rng: random.Random) -> list[tuple[str, bytes]]:
    cuts = {c + d for c in boundaries for d in (-1, 0, 1)} | {rng.randrange(len(data)) for _ in range(random_cuts)}
    return [(f"truncated to {n} bytes", data[:n]) for n in sorted(cuts) if 0 <= n < len(data)]


def _zip_layout(data: bytes) -> tuple[set[int], list[range], list[tuple[str, int, str]]]:
    """A zip archive's structural boundaries, header byte ranges and size/offset fields (APPNOTE)."""
    boundaries, headers, fields = {0, len(data)}, [], []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos, start_dir = zf.infolist(), zf.start_dir
    for k, info in enumerate(infos):
        at = info.header_offset
        n, e = struct.unpack_from("<HH", data, at + 26)
        body = at + 30 + n + e
        headers.append(range(at, body))
        boundaries |= {at, at + 14, at + 26, at + 30, at + 30 + n, body, body + info.compress_size // 2,
                       body + info.compress_size}
        if info.filename.endswith(".npy"):
            boundaries |= {body + 8, body + 10, body + 64}  # the .npy magic, header length, header
            headers.append(range(body, body + 128))
        fields += [(f"local#{k}.{f}", at + o, fmt) for f, o, fmt in
                   (("csize", 18, "<I"), ("usize", 22, "<I"), ("namelen", 26, "<H"), ("extralen", 28, "<H"))]
        fields += _zip64_extra(data, at + 30 + n, e, f"local#{k}", ("usize", "csize"))
    at = start_dir
    for k in range(len(infos)):
        n, e, c = struct.unpack_from("<HHH", data, at + 28)
        headers.append(range(at, at + 46 + n + e + c))
        boundaries |= {at, at + 20, at + 28, at + 42, at + 46, at + 46 + n + e + c}
        fields += [(f"central#{k}.{f}", at + o, fmt) for f, o, fmt in
                   (("csize", 20, "<I"), ("usize", 24, "<I"), ("namelen", 28, "<H"), ("extralen", 30, "<H"),
                    ("commentlen", 32, "<H"), ("offset", 42, "<I"))]
        fields += _zip64_extra(data, at + 46 + n, e, f"central#{k}", ("usize", "csize", "offset"))
        at += 46 + n + e + c
    z64 = data.rfind(b"PK\x06\x06")
    if z64 >= 0:
        headers.append(range(z64, z64 + 56 + 20))
        boundaries |= {z64, z64 + 56, z64 + 76}
        fields += [(f"eocd64.{f}", z64 + o, "<Q") for f, o in (("size", 4), ("entries", 32), ("cdsize", 40),
                                                                ("cdoffset", 48))]
        fields.append(("locator.offset", z64 + 56 + 8, "<Q"))
    eocd = data.rfind(b"PK\x05\x06")
    headers.append(range(eocd, len(data)))
    boundaries |= {eocd, eocd + 12, eocd + 16, eocd + 20}
    fields += [(f"eocd.{f}", eocd + o, fmt) for f, o, fmt in
               (("entries", 10, "<H"), ("cdsize", 12, "<I"), ("cdoffset", 16, "<I"), ("commentlen", 20, "<H"))]
    return boundaries, headers, fields


def _zip64_extra(data: bytes, at: int, length: int, where: str, names: tuple[str, ...]) -> list[tuple[str, int, str]]:
    end, out = at + length, []
    while at + 4 <= end:
        tag, size = struct.unpack_from("<HH", data, at)
        if tag == 1:
            out += [(f"{where}.zip64.{name}", at + 4 + 8 * i, "<Q") for i, name in enumerate(names)
                    if 8 * (i + 1) <= size]
        at += 4 + size
    return out


def _zip_mutants(data: bytes, rng: random.Random, data_samples: int) -> list[tuple[str, bytes]]:
    boundaries, headers, fields = _zip_layout(data)
    return (_truncations(data, boundaries, 12, rng) + _flips(data, headers, data_samples, rng) + _huge(data, fields))


def _npy_mutants(good: Path) -> list[tuple[str, bytes]]:
    """Huge and broken .npy headers in an otherwise consistent archive (the zip's CRCs are right,
    so only the .npy checks can refuse them)."""
    with zipfile.ZipFile(good) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    npy = members["w.npy"]
    (hlen,) = struct.unpack_from("<H", npy, 8)
    text = npy[10 : 10 + hlen].decode("latin1")
    edits = {"shape 2^62": "(4611686018427387904, 32)", "shape 2^64": "(18446744073709551616,)",
             "shape -1": "(-1, -1024)", "shape 10^30": "(10**30,)", "shape not ints": "(32.0, 32)",
             "shape nested": "((((((((1,),),),),),),),)", "shape set": "{32}", "shape list of dicts": "[{}]"}
    mutants = []

    def rezip(name: str, new_npy: bytes) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for member, content in members.items():
                zf.writestr(member, new_npy if member == "w.npy" else content)
        mutants.append((f"npy {name}", buf.getvalue()))

    def with_header(new_text: str) -> bytes:
        raw = new_text.encode("latin1")
        return npy[:8] + struct.pack("<H", len(raw)) + raw + npy[10 + hlen :]

    for name, shape in edits.items():
        rezip(name, with_header(text.replace("(32, 32)", shape)))
    for name, new in {"descr '<f5'": ("'<f4'", "'<f5'"), "descr ()": ("'<f4'", "()"),
                      "descr (1,)": ("'<f4'", "(1,)"), "descr subarray 2^40": ("'<f4'", "('<f4', (1099511627776,))"),
                      "descr object": ("'<f4'", "'O'"), "fortran_order 1": ("False", "1"),
                      "not a dict": ("{", "[")}.items():
        rezip(name, with_header(text.replace(*new)))
    for name, new_text in {"unterminated string": "{'descr': '<f4", "unbalanced": "{'descr': (((", "empty": "",
                           "python 2 long": "{'shape': (32L, 32L), " + text[1:]}.items():
        rezip(name, with_header(new_text))
    for value in (0xFFFF, 0x8000, hlen + 1, hlen - 1, 0):
        rezip(f"header length {value}", _put(npy, 8, "<H", value))
    for version in (b"\x02\x00", b"\x03\x00", b"\x04\x00", b"\x01\x01"):  # 2.0 and 3.0 read a 4-byte length
        rezip(f"version {version[0]}.{version[1]}", npy[:6] + version + npy[8:])
    rezip("version 3.0, huge length", npy[:6] + b"\x03\x00" + struct.pack("<I", 0xFFFFFFF0) + npy[10:])
    return mutants


def _safetensors_mutants(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    boundaries = {0, 4, 8, 8 + n // 2, 8 + n, len(data)}
    for name, e in header.items():
        if name != "__metadata__":
            boundaries |= {8 + n + e["data_offsets"][0], 8 + n + (e["data_offsets"][0] + e["data_offsets"][1]) // 2}
    mutants = _truncations(data, boundaries, 12, rng) + _flips(data, [range(0, 8 + n)], 48, rng)
    mutants += [(f"header length {v:#x}", _put(data, 0, "<Q", v))
                for v in (*HUGE["<Q"], n + 1, n - 1, len(data), len(data) - 7, 0)]

    def rebuilt(edit: Callable[[dict[str, Any]], None]) -> bytes:
        h = json.loads(json.dumps(header))
        edit(h)
        text = json.dumps(h).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + body

    for name in (k for k in header if k != "__metadata__"):
        for v in (2**64 - 1, 2**63, 2**62, 2**53 + 1, 10**30, -1, len(body) + 1):
            for i in (0, 1):
                def set_offset(h: dict[str, Any], name: str = name, i: int = i, v: int = v) -> None:
                    h[name]["data_offsets"][i] = v

                mutants.append((f"{name}.data_offsets[{i}]={v}", rebuilt(set_offset)))

            def set_shape(h: dict[str, Any], name: str = name, v: int = v) -> None:
                h[name]["shape"] = [v] + h[name]["shape"][1:]

            mutants.append((f"{name}.shape[0]={v}", rebuilt(set_shape)))
    return mutants


def _pt_mutants(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    boundaries, headers, fields = _zip_layout(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        pkl = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    n, e = struct.unpack_from("<HH", data, pkl.header_offset + 26)
    start = pkl.header_offset + 30 + n + e
    headers.append(range(start, start + pkl.compress_size))  # the pickle: names, dtypes, shapes, strides
    return _truncations(data, boundaries, 12, rng) + _flips(data, headers, 32, rng) + _huge(data, fields)


def _make_mutants(directory: Path) -> dict[str, int]:
    """Writes the mutants into `directory`; returns their number per format."""
    from weightless.io import save_state

    rng = random.Random(SEED)
    model = _model()
    counts: dict[str, int] = {}

    def write(fmt: str, ext: str, mutants: list[tuple[str, bytes]]) -> None:
        for k, (label, content) in enumerate(mutants):
            path = directory / f"{fmt}-{k:04d}{ext}"
            path.write_bytes(content)
            (directory / f"{path.name}.label").write_text(label)
        counts[fmt] = counts.get(fmt, 0) + len(mutants)

    good = directory / "good.npz"
    save_state(model, good)  # stored members with zip64 extra fields, as weightless writes them
    write("npz", ".npz", _zip_mutants(good.read_bytes(), rng, 48) + _npy_mutants(good))
    deflated = directory / "good-deflated.npz"
    np.savez_compressed(deflated, w=model["w"], b=model["b"], n=model["n"])  # deflated members
    write("npz-deflated", ".npz", _zip_mutants(deflated.read_bytes(), rng, 32))
    try:
        import safetensors  # noqa: F401
    except ImportError:
        pass
    else:
        save_state(model, directory / "good.safetensors")
        write("safetensors", ".safetensors", _safetensors_mutants((directory / "good.safetensors").read_bytes(), rng))
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        save_state(model, directory / "good.pt")
        write("pt", ".pt", _pt_mutants((directory / "good.pt").read_bytes(), rng))
    return counts


# --------------------------------------------------------------------------- the subprocess


class _Hang(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"no result after {PER_MUTANT_SECONDS} s")


def _check(path: Path, out: Path) -> tuple[str, str]:
    """(outcome, detail) of one mutant: "accepted", "refused", "content" or "FAILED"."""
    from weightless.container import compress, decompress
    from weightless.io import load_state

    def read() -> tuple[dict[str, np.ndarray] | None, str]:
        try:
            state = load_state(path)
        except ValueError as e:
            return None, re.sub(r" at 0x[0-9a-f]+", "", str(e))  # ast's messages name objects by address
        return state, repr([(k, v.dtype, v.shape, v.tobytes()) for k, v in state.items()])

    try:
        state, seen = read()
        # A second read must see the same: a reader of uninitialized memory does not (docs/HARDENING.md).
        if read()[1] != seen:
            return "FAILED", f"load_state: a second read differs from the first ({seen[:200]})"
    except BaseException as e:  # noqa: B036 -- anything else is the failure being looked for
        return "FAILED", f"load_state: {type(e).__name__}: {e}"
    if state is None and str(path) not in seen:
        return "FAILED", f"load_state: ValueError without the file's name: {seen}"
    try:
        compress(path, out, overwrite=True, threads=1, sparsity=0.7, clusters=8, seed=1)
    except ValueError as e:
        if str(path) in str(e):
            return "refused", str(e)
        if state is not None and CONTENT_REFUSALS.match(str(e)):
            return "content", str(e)
        return "FAILED", f"compress: ValueError naming neither the file nor a tensor's contents: {e}"
    except BaseException as e:  # noqa: B036
        return "FAILED", f"compress: {type(e).__name__}: {e}"
    if state is None:
        return "FAILED", "load_state refused it but compress accepted it"
    try:
        back = decompress(out, threads=1)
    except BaseException as e:  # noqa: B036
        return "FAILED", f"decompress of the accepted mutant: {type(e).__name__}: {e}"
    if {k: (v.dtype, v.shape) for k, v in back.items()} != {k: (v.dtype, v.shape) for k, v in state.items()}:
        return "FAILED", "decompressed tensors differ from the ones read"
    return "accepted", ""


def _peak_address_space() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmPeak:"))


# What a mutant may add to the worker's peak address space: the models are a few KB, so anything
# near this was allocated for a corrupted size field (one over the bound fails, and shows as the
# allocator's message, below).
PEAK_GROWTH = 256 << 20
ALLOCATION_FAILED = re.compile(r"allocate memory|Cannot allocate|out of memory|MemoryError", re.IGNORECASE)


def _worker(directory: Path) -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    import weightless.container  # noqa: F401 -- imported before the first alarm

    for module in ("safetensors.numpy", "torch"):  # imported before the peak is taken
        try:
            __import__(module)
        except ImportError:
            pass
    out = directory / "out.wl"
    base = _peak_address_space()
    for path in sorted(directory.glob("*-[0-9][0-9][0-9][0-9].*")):
        if path.suffix == ".label":
            continue
        print(json.dumps({"start": path.name}), flush=True)  # the last one started, if the process dies
        signal.alarm(PER_MUTANT_SECONDS)
        try:
            outcome, detail = _check(path, out)
        except _Hang as e:
            outcome, detail = "FAILED", str(e)
        finally:
            signal.alarm(0)
        if outcome != "FAILED" and ALLOCATION_FAILED.search(detail):
            outcome, detail = "FAILED", f"refused only because an allocation failed: {detail}"
        peak = _peak_address_space()
        if outcome != "FAILED" and peak > base + PEAK_GROWTH:
            outcome, detail = "FAILED", f"the peak address space grew by {(peak - base) >> 20} MB"
        base = max(base, peak)
        print(json.dumps({"file": path.name, "outcome": outcome, "detail": detail[:300]}), flush=True)


def _bounded_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


FORMATS: dict[str, str | None] = {"npz": None, "npz-deflated": None, "safetensors": "safetensors", "pt": "torch"}


@pytest.fixture(scope="module")
def mutation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[dict[str, str]], float]:
    """Every mutant of every format, checked in one subprocess: (directory, counts, results, seconds)."""
    directory = tmp_path_factory.mktemp("mutants")
    counts = _make_mutants(directory)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, str(directory)], capture_output=True, text=True, timeout=300,
                          env=env, preexec_fn=_bounded_address_space)
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = [r for r in records if "outcome" in r]
    last = [r["start"] for r in records if "start" in r][-1:]
    assert done.returncode == 0 and len(results) == sum(counts.values()), (
        f"the subprocess ended with status {done.returncode} after {len(results)} of {sum(counts.values())} "
        f"mutants, in {last} ({(directory / (last[0] + '.label')).read_text() if last else ''}):\n"
        f"{done.stderr[-3000:]}")
    return directory, counts, results, seconds


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_mutated_model_files_are_compressed_or_refused(
        mutation_run: tuple[Path, dict[str, int], list[dict[str, str]], float], fmt: str) -> None:
    package = FORMATS[fmt]
    if package:
        pytest.importorskip(package, reason=f"mutating .{fmt} files needs the {package} package")
    directory, counts, results, seconds = mutation_run
    mine = [r for r in results if r["file"].rsplit("-", 1)[0] == fmt]
    tally = Counter(r["outcome"] for r in mine)
    summary = (f"{fmt}: {counts[fmt]} mutants: {tally['accepted']} accepted, {tally['refused']} refused naming the "
               f"file, {tally['content']} refused for their contents, {tally['FAILED']} failed "
               f"(all {sum(counts.values())} mutants of {len(counts)} formats in {seconds:.1f} s)")
    print(summary)
    failed = [f"{r['file']} ({(directory / (r['file'] + '.label')).read_text()}): {r['detail']}"
              for r in mine if r["outcome"] == "FAILED"]
    assert not failed, f"{summary}:\n" + "\n".join(failed[:40])
    assert len(mine) == counts[fmt] and tally["refused"] > 0 and tally["accepted"] > 0, summary


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
