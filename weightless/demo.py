"""`weightless demo`: the README's main job on a built-in default."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .filter import BloomierFilter


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="compress a built-in model and report what it achieved")
    p.add_argument("--cell-bits", type=int, default=9, help="bits per filter cell t (default 9)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    # A layer the size of LeNet-300-100's first (784 x 300), 8% of its weights kept, 16 clusters:
    # the keys are the kept positions, the values their cluster indices.
    rng = np.random.default_rng(args.seed)
    shape, density, value_bits, cell_bits = (300, 784), 0.08, 4, args.cell_bits
    size = shape[0] * shape[1]
    positions = np.flatnonzero(rng.random(size) < density).astype(np.uint64)
    codes = rng.integers(0, 2**value_bits, len(positions), dtype=np.uint32)
    t0 = time.perf_counter()
    f = BloomierFilter(positions, codes, value_bits=value_bits, cell_bits=cell_bits, seed=args.seed)
    t1 = time.perf_counter()
    g = BloomierFilter.from_bytes(f.to_bytes())
    decoded = g.lookup_range(0, size)
    t2 = time.perf_counter()
    kept = decoded[positions.astype(np.int64)]
    false_positives = int(np.count_nonzero(decoded >= 0)) - len(positions)
    print(f"layer {shape[0]}x{shape[1]}, {len(positions)} kept weights ({density:.0%}), {2**value_bits} clusters")
    print(f"filter: {g.nbytes} bytes, {g.nbytes * 8 / len(positions):.2f} bits per kept weight, t = {cell_bits}")
    print(f"vs float32 dense ({size * 4} bytes): {size * 4 / g.nbytes:.1f}x smaller")
    print(f"kept weights read back exactly: {bool(np.array_equal(kept, codes))}")
    print(f"false positives: {false_positives} of {size - len(positions)} zeros "
          f"(expected {(size - len(positions)) * g.false_positive_rate:.0f})")
    print(f"build {1e3 * (t1 - t0):.1f} ms, decode all {size} positions {1e3 * (t2 - t1):.1f} ms")


