"""The measurements behind the chunked layout (docs/RETRIEVAL.md): space, build and decode time
against n for the chunked layout (format v3), the fuse layout (format v2) and the C binary fuse
filter (xor_singleheader's binary_fuse8, through pyfusefilter's cffi module), plus the bytes of
the LeNet first layers.

    python3 bench/retrieval_study.py [--repeats 3] [--quick]

Space: cells per key c = (serialized bytes - the empty filter's) * 8 / (n * t), at t = 8 (t = 4
and 16 for the chunked layout), random 64-bit keys. The peer stores 8-bit fingerprints only: its
c is its array length / n. Build: random 64-bit keys in random order, one thread (CPU time of
the process, robust to other jobs on a shared machine) and all cores (wall time), the variants
run in turn, best of --repeats rounds. Decode: a layer of n kept positions at 4% density (25 n
positions), decode_weights to float32 on one thread with the default ISA, CPU time, in turn,
best of --repeats, ns per position. The peer has no bulk query in its API (one cffi call per key from Python), so
its per-key query time is a Python-call figure, shown for completeness, not comparable.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from weightless import BloomierFilter, _core  # noqa: E402


def best_of(fn, repeats, clock=time.perf_counter):
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def interleaved(fns, repeats):
    """Best time of each named (fn, clock) over `repeats` rounds that run them in turn, so that
    a machine whose load drifts slows them alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, (fn, clock) in fns.items():
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    return best


def random_keys(n, seed):
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, 2**64, size=n + n // 16 + 16, dtype=np.uint64, endpoint=False))
    return rng.permutation(keys)[:n]


EMPTY = BloomierFilter(np.array([], dtype=np.uint64), [], value_bits=1, cell_bits=8).nbytes
EMPTY_FUSE = BloomierFilter(np.array([], dtype=np.uint64), [], value_bits=1, cell_bits=8, layout="fuse").nbytes


def space(n, t, layout, arity):
    keys = random_keys(n, n)
    values = np.random.default_rng(n + 1).integers(0, 2 ** min(4, t), n).astype(np.uint32)
    f = BloomierFilter(keys, values, value_bits=min(4, t), cell_bits=t, layout=layout, arity=arity, threads=1)
    return (f.nbytes - (EMPTY if layout == "chunked" else EMPTY_FUSE)) * 8 / (n * t)


def peer_space(n):
    from peers import fuse8_build

    return fuse8_build(random_keys(n, n)).array_length / n


def build_times(n, repeats):
    from peers import fuse8_build

    keys = random_keys(n, n)
    values = np.random.default_rng(n).integers(0, 16, n).astype(np.uint32)
    fns = {}
    T = os.cpu_count() or 1
    for name, kw in [("chunked", dict(layout="chunked", arity=4)), ("fuse", dict(layout="fuse", arity=3))]:
        for threads in sorted({1, T}):
            def build(kw=kw, threads=threads):
                BloomierFilter(keys, values, value_bits=4, cell_bits=8, threads=threads, **kw)
            # One thread: CPU time (robust to a loaded machine); all cores: wall time.
            fns[(name, threads)] = (build, time.process_time if threads == 1 else time.perf_counter)
    fns[("peer", 1)] = (lambda: fuse8_build(keys), time.process_time)
    return {k: v * 1e9 / n for k, v in interleaved(fns, repeats).items()}


def decode_times(n, repeats):
    rng = np.random.default_rng(n)
    size = 25 * n
    keys = np.sort(rng.choice(size, n, replace=False)).astype(np.uint64)
    values = rng.integers(0, 32, n).astype(np.uint32)
    book = np.linspace(-1, 1, 32, dtype=np.float32)
    buf = np.empty(size, dtype=np.float32)
    fns = {}
    for name, kw in [("chunked", dict(layout="chunked", arity=4)), ("fuse", dict(layout="fuse", arity=3))]:
        f = BloomierFilter(keys, values, value_bits=5, cell_bits=12, **kw)
        f.decode_weights(size, book, threads=1, out=buf)
        fns[name] = (lambda f=f: f.decode_weights(size, book, threads=1, out=buf), time.process_time)
    return {k: v * 1e9 / size for k, v in interleaved(fns, repeats).items()}


def peer_query_ns(n):
    from peers import fuse8_build

    keys = random_keys(n, n)
    peer = fuse8_build(keys)
    probe = [int(k) for k in keys[:100_000]]
    t = best_of(lambda: [peer.contains(k) for k in probe], 3)
    return t * 1e9 / len(probe)


def chunk_sweep(n, repeats):
    """c at t = 4 and t = 8 and one-thread build ns/key against chunk_keys and arity (random keys)."""
    keys = random_keys(n, 5)
    values = np.random.default_rng(5).integers(0, 4, n).astype(np.uint32)
    rows = []
    for arity in (4, 3):
        for K in (256, 512, 1024, 2048, 4096):
            kw = dict(value_bits=2, chunk_keys=K, arity=arity, threads=1)
            c = [(BloomierFilter(keys, values, cell_bits=t, **kw).nbytes - EMPTY) * 8 / (n * t) for t in (4, 8)]
            ns = best_of(lambda kw=kw: BloomierFilter(keys, values, cell_bits=8, **kw), repeats,
                         time.process_time) * 1e9 / n
            rows.append((arity, K, c[0], c[1], ns))
    return rows


def lenet_bytes():
    """fc1 of LeNet-300-100 (784 x 300, 2.5% kept, 4 clusters, t = 11) and of LeNet-5
    (800 x 500, 0.65%, 4 clusters, t = 7): serialized filter bytes, v2 default (fuse, arity 3)
    against v3 default (chunked, arity 4)."""
    rows = []
    layers = [("LeNet-300-100 fc1", (784, 300), 0.025, 11), ("LeNet-5 fc1", (800, 500), 0.0065, 7)]
    for name, shape, density, t in layers:
        size = shape[0] * shape[1]
        rng = np.random.default_rng(0)
        n = round(size * density)
        keys = np.sort(rng.choice(size, n, replace=False)).astype(np.uint64)
        values = rng.integers(0, 4, n).astype(np.uint32)
        v2 = BloomierFilter(keys, values, value_bits=2, cell_bits=t, layout="fuse", arity=3)
        v2_4 = BloomierFilter(keys, values, value_bits=2, cell_bits=t, layout="fuse", arity=4)
        v3 = BloomierFilter(keys, values, value_bits=2, cell_bits=t)
        v3_3 = BloomierFilter(keys, values, value_bits=2, cell_bits=t, arity=3)
        rows.append((name, n, t, v2.nbytes, v2_4.nbytes, v3_3.nbytes, v3.nbytes))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer sizes")
    args = ap.parse_args(argv)
    print(f"# ISA {_core.active_isa()}, {os.cpu_count()} cores\n")

    sizes = [100, 1000, 5000, 10_000, 100_000, 1_000_000] + ([] if args.quick else [4_000_000])
    print("## Space: cells per key c (random keys)\n")
    print("| n | chunked t=4 | chunked t=8 | chunked t=16 | chunked arity 3, t=8 | fuse (v2) arity 3, t=8 "
          "| fuse arity 4, t=8 | C binary_fuse8 |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        row = [space(n, 4, "chunked", 4), space(n, 8, "chunked", 4), space(n, 16, "chunked", 4),
               space(n, 8, "chunked", 3), space(n, 8, "fuse", 3), space(n, 8, "fuse", 4), peer_space(n)]
        print(f"| {n} | " + " | ".join(f"{c:.4f}" for c in row) + " |")

    print(f"\n## Build, ns/key (random keys in random order, t = 8, best of {args.repeats})\n")
    T = os.cpu_count() or 1
    print(f"| n | chunked 1 thread | chunked {T} threads | fuse (v2) 1 thread | fuse {T} threads | C binary_fuse8 "
          "| chunked / C |")
    print("|---|---|---|---|---|---|---|")
    for n in [10_000, 100_000, 1_000_000, 4_000_000][: 3 if args.quick else 4]:
        b = build_times(n, args.repeats)
        print(f"| {n} | {b[('chunked', 1)]:.1f} | {b[('chunked', T)]:.1f} | {b[('fuse', 1)]:.1f} "
              f"| {b[('fuse', T)]:.1f} "
              f"| {b[('peer', 1)]:.1f} | {b[('chunked', 1)] / b[('peer', 1)]:.2f} |")

    print(f"\n## Decode, ns/position (n kept of 25 n positions, t = 12, 32 clusters, 1 thread, best of "
          f"{args.repeats})\n")
    print("| n | positions | chunked | fuse (v2) | chunked / fuse |")
    print("|---|---|---|---|---|")
    for n in [1000, 10_000, 100_000, 1_000_000] + ([] if args.quick else [4_000_000]):
        d = decode_times(n, args.repeats)
        print(f"| {n} | {25 * n} | {d['chunked']:.2f} | {d['fuse']:.2f} | {d['chunked'] / d['fuse']:.2f} |")
    print(f"\nC binary_fuse8 per-key query through cffi from Python (not comparable): "
          f"{peer_query_ns(100_000):.0f} ns/key")

    print("\n## Chunk size and arity (1M random keys; c counts the chunk directory; build 1 thread)\n")
    print("| arity | chunk_keys | c at t=4 | c at t=8 | build ns/key |")
    print("|---|---|---|---|---|")
    for arity, K, c4, c8, ns in chunk_sweep(1_000_000, args.repeats):
        print(f"| {arity} | {K} | {c4:.4f} | {c8:.4f} | {ns:.0f} |")

    print("\n## LeNet first layers: filter bytes\n")
    print("| layer | kept | t | v2 fuse arity 3 (old default) | v2 fuse arity 4 | v3 chunked arity 3 "
          "| v3 chunked arity 4 (new default) |")
    print("|---|---|---|---|---|---|---|")
    for name, n, t, *b in lenet_bytes():
        print(f"| {name} | {n} | {t} | " + " | ".join(str(x) for x in b) + " |")


if __name__ == "__main__":
    main()
