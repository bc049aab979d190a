"""Reproduce the paper's decode-time table (Weightless, Table "decode time of the largest layer").

For LeNet-300-100 FC-0 (784x300), LeNet-5 FC-0 (800x500) and VGG-16 FC-6 (25088x4096), at the
paper's densities (8%, 8%, 4%) and at lower ones (2%, 1%, 1%), this script encodes random normal
weights pruned to that density with `weightless.encode_layer` (16 clusters for the LeNets, 32
for VGG-16, `--cell-bits` bits per cell, 12 by default) and reports, per layer:

* `layer.decode(threads=N)` time, best of R repeats, for every instruction set in
  `weightless._core.supported_isas()` (chosen with `weightless._core.set_isa`) and for N = 1 and
  N = os.cpu_count(); beside it the paper's
  i7-6700K and Cortex-A53 times and our speed-up over the paper's i7;
* the physical floor: the time numpy needs to allocate and write an output of the same size
  (`np.full(size, 1.0, dtype=np.float32)`);
* a "plain Python" reference: a vectorised numpy decoder written from docs/FORMAT.md alone
  (it parses `layer.filter.to_bytes()`), checked to equal `layer.decode()` exactly before it
  is timed. On VGG-16 (103M positions, in chunks of 4M) it takes about 8 s a pass here, well
  under a minute, so it is checked and timed there too by default; `--skip-numpy-vgg` skips
  timing it there and checks it only on 3 chunks of 2M positions.
* space: `layer.nbytes`, bits per kept weight, and the space factor num_cells / kept.

Usage:

    python3 bench/reproduce_decode.py               # full run (a few minutes)
    python3 bench/reproduce_decode.py --quick       # LeNet rows only, few repeats (seconds)
    python3 bench/reproduce_decode.py --json out.json --cell-bits 12 --repeats 5
    python3 bench/reproduce_decode.py --skip-numpy-vgg   # numpy reference only checked on VGG-16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import time
import zlib
from dataclasses import dataclass

import numpy as np

import weightless
from weightless import _core

# The paper's decode times in seconds, at the paper's densities (PAPER.md).
PAPER_I7 = {"LeNet-300-100": 0.52, "LeNet-5": 1.3, "VGG-16": 22.8}
PAPER_A53 = {"LeNet-300-100": 7.1, "LeNet-5": 18.0, "VGG-16": 296.0}


@dataclass(frozen=True)
class Case:
    model: str
    layer: str
    shape: tuple[int, int]
    density: float
    clusters: int
    paper_density: bool  # the paper's own density (its figures apply as they are)

    @property
    def name(self) -> str:
        return f"{self.model} {self.layer}"


CASES = [
    Case("LeNet-300-100", "FC-0", (784, 300), 0.08, 16, True),
    Case("LeNet-5", "FC-0", (800, 500), 0.08, 16, True),
    Case("VGG-16", "FC-6", (25088, 4096), 0.04, 32, True),
    Case("LeNet-300-100", "FC-0", (784, 300), 0.02, 16, False),
    Case("LeNet-5", "FC-0", (800, 500), 0.01, 16, False),
    Case("VGG-16", "FC-6", (25088, 4096), 0.01, 32, False),
]

M32 = np.uint32(0xFFFFFFFF)


# --------------------------------------------------------------------------------------------
# The numpy reference decoder, from docs/FORMAT.md alone
# --------------------------------------------------------------------------------------------


def parse_filter(data: bytes) -> dict:
    """Parse a serialized filter (docs/FORMAT.md): header, piece directory, unpacked cells."""
    if data[:4] != b"WLBF":
        raise ValueError("bad magic")
    version, k, r, t = struct.unpack_from("<HBBB", data, 4)
    if version == 3:
        return parse_filter_v3(data)
    if version not in (1, 2):
        raise ValueError(f"unsupported version {version}")
    (num_pieces,) = struct.unpack_from("<I", data, 12)
    (num_keys,) = struct.unpack_from("<Q", data, 16)
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise ValueError("CRC-32 mismatch")
    pieces, start = [], 0
    for i in range(num_pieces):
        first_key, seed, keys, segments = struct.unpack_from("<QQII", data, 32 + 32 * i)
        log2_len, block_log2 = data[32 + 32 * i + 24], data[32 + 32 * i + 25]
        (blocks,) = struct.unpack_from("<I", data, 32 + 32 * i + 28)
        if version == 1:  # no blocks: one per piece with keys
            block_log2, blocks = 63, 1 if segments else 0
        cells = (segments + k - 1) << log2_len if segments else 0
        pieces.append(dict(first_key=first_key, seed=seed, S=segments, L=1 << log2_len, start=start,
                           block_log2=block_log2, blocks=blocks))
        start += cells
    at = 32 + 32 * num_pieces
    for p in pieces:  # inner block starts; the first is 0 and the last S * L
        inner = np.frombuffer(data, dtype="<u4", offset=at, count=max(p["blocks"] - 1, 0)).astype(np.uint64)
        at += 4 * inner.size
        p["starts"] = np.concatenate([[0], inner, [p["S"] * p["L"]]]).astype(np.uint64)
    area = np.frombuffer(data, dtype=np.uint8, offset=at, count=len(data) - 4 - at)
    return dict(k=k, r=r, t=t, n=num_keys, pieces=pieces, cells=unpack_cells(area, start, t))


def _splitmix64(z: int) -> int:
    m = 2**64 - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def parse_filter_v3(data: bytes) -> dict:
    """Version 3, the chunked layout (docs/FORMAT.md): chunks as 'pieces' with m cells each."""
    k, r, t, shift, w, a = data[6:12]
    (K,) = struct.unpack_from("<H", data, 12)
    n = int.from_bytes(data[14:20], "little")
    (seed,) = struct.unpack_from("<Q", data, 20)
    if zlib.crc32(data[:-4]) != struct.unpack_from("<I", data, len(data) - 4)[0]:
        raise ValueError("CRC-32 mismatch")
    C = -(-n // K)
    directory_bits = (C - 1) * w + C * a if C else 0
    stream = int.from_bytes(data[28 : 28 + (directory_bits + 7) // 8], "little")
    pieces, at, b, start = [], 0, 0, 0
    for i in range(C):
        if i:
            b += ((stream >> at) & ((1 << w) - 1)) << shift
            at += w
        attempt = (stream >> at) & ((1 << a) - 1)
        at += a
        keys = n * (i + 1) // C - n * i // C
        slack = (keys * 31 + 1023) // 1024 + 2 if k == 4 else (keys * 113 + 1023) // 1024 + 3
        m = keys + slack + (attempt // 4) * (keys // 32 + 1)
        pieces.append(dict(first_key=b, seed=_splitmix64(seed ^ _splitmix64((i << 4) | attempt)), m=m, start=start,
                           chunked=True))
        start += m
    if not pieces:  # no keys: every key reads its mask under the filter's seed
        pieces.append(dict(first_key=0, seed=seed, m=0, start=0, chunked=True))
    area = np.frombuffer(data, dtype=np.uint8, offset=28, count=len(data) - 4 - 28)
    return dict(k=k, r=r, t=t, n=n, pieces=pieces, cells=unpack_cells(area, start, t, first_bit=directory_bits))


def unpack_cells(area: np.ndarray, count: int, t: int, first_bit: int = 0) -> np.ndarray:
    """The `count` t-bit cells of a bit-packed area (LSB first) from bit `first_bit` on, as uint32."""
    padded = np.zeros(area.size + 8, dtype=np.uint64)
    padded[: area.size] = area
    bit = np.arange(count, dtype=np.uint64) * np.uint64(t) + np.uint64(first_bit)
    byte = (bit >> np.uint64(3)).astype(np.int64)
    word = np.zeros(count, dtype=np.uint64)
    for i in range(5):  # t <= 32 bits starting at bit offset <= 7: at most 5 bytes
        word |= padded[byte + i] << np.uint64(8 * i)
    return ((word >> (bit & np.uint64(7))) & np.uint64((1 << t) - 1)).astype(np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer over a uint32 array (wrapping arithmetic)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def query_piece(f: dict, piece: dict, keys: np.ndarray) -> np.ndarray:
    """The query word of every key (uint64 array) of one piece, per docs/FORMAT.md."""
    s = piece["seed"]
    x = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ np.uint32(s & 0xFFFFFFFF)
    y = (keys >> np.uint64(32)).astype(np.uint32) ^ np.uint32(s >> 32)
    y ^= fmix32(x)
    x ^= fmix32(y)
    word = fmix32(x + y) & np.uint32((1 << f["t"]) - 1)
    if piece.get("chunked"):
        m = piece["m"]
        if m:
            table = f["cells"][piece["start"] :]
            halves = [x & np.uint32(0xFFFF), x >> np.uint32(16), y & np.uint32(0xFFFF), y >> np.uint32(16)]
            for half in halves[: f["k"]]:
                word ^= table[(half * np.uint32(m)) >> np.uint32(16)]
        return word
    S, L = piece["S"], piece["L"]
    if S:
        table = f["cells"][piece["start"] :]
        low = np.uint32(L - 1)
        block = np.minimum((keys - np.uint64(piece["first_key"])) >> np.uint64(piece["block_log2"]),
                           np.uint64(piece["blocks"] - 1)).astype(np.int64)
        base, end = piece["starts"][block], piece["starts"][block + 1]
        h0 = (base + ((x.astype(np.uint64) * (end - base)) >> np.uint64(32))).astype(np.uint32)
        word ^= table[h0]
        word ^= table[(h0 + np.uint32(L)) ^ (y & low)]
        word ^= table[(h0 + np.uint32(2 * L)) ^ ((y >> np.uint32(16)) & low)]
        if f["k"] == 4:
            word ^= table[(h0 + np.uint32(3 * L)) ^ (x & low)]
    return word


def numpy_decode(f: dict, codebook: np.ndarray, start: int, stop: int, chunk: int = 1 << 22) -> np.ndarray:
    """Decode positions [start, stop) of a layer: codebook[word] if word < clusters, else 0."""
    out = np.empty(stop - start, dtype=np.float32)
    firsts = np.array([p["first_key"] for p in f["pieces"]], dtype=np.uint64)
    bounds = [int(b) for b in firsts[1:]] + [2**64]
    lut = np.zeros(1 << f["t"], dtype=np.float32)  # the codebook lookup, absent words read 0
    lut[: len(codebook)] = codebook
    for lo in range(start, stop, chunk):
        hi = min(lo + chunk, stop)
        first = int(np.searchsorted(firsts, np.uint64(lo), side="right")) - 1
        for i in range(first, len(f["pieces"])):
            a, b = max(lo, int(f["pieces"][i]["first_key"])), min(hi, bounds[i])
            if a >= b:
                break
            keys = np.arange(a, b, dtype=np.uint64)
            out[a - start : b - start] = lut[query_piece(f, f["pieces"][i], keys)]
    return out


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def best_of(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_layer(case: Case, cell_bits: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(case.shape, dtype=np.float32)
    return weightless.encode_layer(w, sparsity=1.0 - case.density, clusters=case.clusters, cell_bits=cell_bits,
                                   seed=seed)


def decode_with(isa: str, layer, threads: int) -> np.ndarray:
    _core.set_isa(isa)
    return layer.decode(threads=threads)


def run_case(case: Case, args, isas: list[str], thread_counts: list[int]) -> dict:
    is_large = case.shape[0] * case.shape[1] > 10_000_000
    repeats = args.repeats if is_large else args.repeats_small
    t0 = time.perf_counter()
    layer = make_layer(case, args.cell_bits)
    encode_s = time.perf_counter() - t0
    size = layer.size
    reference = layer.decode()
    flat = reference.reshape(-1)

    # Every ISA and thread count must give the same tensor.
    timings = []
    for isa in isas:
        for threads in thread_counts:
            if not np.array_equal(decode_with(isa, layer, threads), reference):
                raise AssertionError(f"{case.name}: decode with {isa}, {threads} threads differs")
            seconds = best_of(lambda isa=isa, threads=threads: decode_with(isa, layer, threads), repeats)
            timings.append(dict(isa=isa, threads=threads, seconds=seconds))
    _core.set_isa(None)

    floor_s = best_of(lambda: np.full(size, 1.0, dtype=np.float32), repeats)

    # The numpy reference: exact agreement first, then its time.
    f = parse_filter(layer.filter.to_bytes())
    skip_numpy = case.model == "VGG-16" and args.skip_numpy_vgg
    if skip_numpy:
        span = 1 << 21  # check a few chunks: the start, the middle, the end
        for lo in (0, size // 2, size - span):
            got = numpy_decode(f, layer.codebook, lo, lo + span)
            assert np.array_equal(got, flat[lo : lo + span]), f"{case.name}: numpy decoder differs at {lo}"
        numpy_s, numpy_checked = None, f"3 chunks of {span} positions"
    else:
        got = numpy_decode(f, layer.codebook, 0, size)
        assert np.array_equal(got, flat), f"{case.name}: numpy decoder differs from layer.decode()"
        numpy_s = best_of(lambda: numpy_decode(f, layer.codebook, 0, size), 1 if is_large else repeats)
        numpy_checked = "all positions"

    return dict(
        model=case.model, layer=case.layer, shape=list(case.shape), density=case.density,
        paper_density=case.paper_density, clusters=len(layer.codebook), cell_bits=layer.cell_bits,
        kept=layer.kept, false_positives=layer.false_positives, positions=size,
        nbytes=layer.nbytes, bits_per_kept=8.0 * layer.nbytes / layer.kept,
        space_factor=layer.filter.num_cells / layer.kept, pieces=layer.filter.num_pieces,
        encode_seconds=encode_s, repeats=repeats, timings=timings, floor_seconds=floor_s,
        numpy_seconds=numpy_s, numpy_matched=True, numpy_checked=numpy_checked,
        paper_i7_seconds=PAPER_I7[case.model], paper_a53_seconds=PAPER_A53[case.model],
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt_ms(seconds) -> str:
    if seconds is None:
        return "skipped"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def render(results: list[dict]) -> str:
    lines = [
        "Decode time (best of R, ms) vs the paper (s); paper figures marked * are at the paper's density "
        "(8%, 8%, 4%), not this row's",
        "",
        "| layer | density | clusters | ISA | threads | ours (ms) | paper i7-6700K (s) | paper A53 (s) "
        "| speed-up vs i7 | np.full floor (ms) | ours / floor | numpy ref (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mark = "" if r["paper_density"] else "*"
        for i, t in enumerate(r["timings"]):
            first = i == 0
            lines.append(
                f"| {r['model']} {r['layer']} {r['shape'][0]}x{r['shape'][1]} | {100 * r['density']:g}% "
                f"| {r['clusters']} | {t['isa']} | {t['threads']} | {fmt_ms(t['seconds'])} "
                f"| {r['paper_i7_seconds']:g}{mark} | {r['paper_a53_seconds']:g}{mark} "
                f"| {r['paper_i7_seconds'] / t['seconds']:,.0f}x{mark} "
                f"| {fmt_ms(r['floor_seconds']) if first else ''} | {t['seconds'] / r['floor_seconds']:.1f} "
                f"| {fmt_ms(r['numpy_seconds']) if first else ''} |"
            )
    lines += [
        "",
        "Space (t = cell bits) and the numpy reference check",
        "",
        "| layer | density | kept | false positives | t | pieces | nbytes | bits / kept weight "
        "| space factor (cells / kept) | numpy == decode() on |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} {r['layer']} | {100 * r['density']:g}% | {r['kept']:,} | {r['false_positives']:,} "
            f"| {r['cell_bits']} | {r['pieces']} | {r['nbytes']:,} | {r['bits_per_kept']:.2f} "
            f"| {r['space_factor']:.4f} | {r['numpy_checked']} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the LeNet rows, few repeats (a smoke run)")
    p.add_argument("--cell-bits", type=int, default=12, help="bits per filter cell t (default 12)")
    p.add_argument("--repeats", type=int, default=5, help="repeats for the VGG-16 layer (default 5)")
    p.add_argument("--repeats-small", type=int, default=50, help="repeats for the LeNet layers (default 50)")
    p.add_argument("--skip-numpy-vgg", dest="skip_numpy_vgg", action="store_true", default=False,
                   help="do not time the numpy reference on VGG-16 (it takes ~8 s a pass there), "
                        "only check it on 3 chunks of positions")
    p.add_argument("--numpy-vgg", dest="skip_numpy_vgg", action="store_false",
                   help="check and time the numpy reference on all of VGG-16 (~100M positions; the default)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.repeats_small = min(args.repeats, 2), min(args.repeats_small, 5)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    isas = list(_core.supported_isas())
    cpus = os.cpu_count() or 1
    thread_counts = sorted({1, cpus})
    cases = [c for c in CASES if not (args.quick and c.model == "VGG-16")]
    vgg_numpy = ("n/a (--quick)" if args.quick else "not timed, checked on 3 chunks" if args.skip_numpy_vgg
                 else "checked and timed")
    print(f"weightless {weightless.__version__}; {platform.machine()}, {cpus} CPUs, ISAs {isas}; "
          f"cell_bits={args.cell_bits}; clusters 16 (LeNets) / 32 (VGG-16); "
          f"numpy reference on VGG-16: {vgg_numpy}",
          flush=True)
    results = []
    saved_isa = os.environ.get("WEIGHTLESS_ISA")
    try:
        for case in cases:
            t0 = time.perf_counter()
            results.append(run_case(case, args, isas, thread_counts))
            print(f"  {case.name} {100 * case.density:g}%: done in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        if saved_isa is None:
            os.environ.pop("WEIGHTLESS_ISA", None)
        else:
            os.environ["WEIGHTLESS_ISA"] = saved_isa
    print()
    print(render(results))
    report = dict(
        command=" ".join(["python3", "bench/reproduce_decode.py", *(argv if argv is not None else sys.argv[1:])]),
        machine=platform.machine(), processor=platform.processor(), cpus=cpus, isas=isas,
        cell_bits=args.cell_bits, weightless_version=weightless.__version__, results=results,
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
