"""The layout study behind the filter's default pieces and blocks (docs/DECODE.md, "Layout").

    python3 bench/layout_study.py [--repeats 5]

For each layer shape at the paper's density (and one with whole empty rows), builds the filter
in three layouts and prints the space factor (serialized bits / (kept weights * t)) and the
single-thread time to decode every position to float32 into a buffer already written once:

  pieces 2^20        independent pieces of 2^20 keys, one block each (format version 1's layout)
  pieces 2^14        design (a): pieces small enough that each table stays in cache
  blocks 2^13        design (b): pieces of 2^20 keys cut into blocks of ~2^13 keys whose first
                     cells follow the keys' rank, so decoding walks each table forward
"""

import argparse

import numpy as np
from reproduce_decode import best_of  # bench/ is on the path when this script runs

from weightless import BloomierFilter, _core

LAYOUTS = {
    "pieces 2^20": dict(piece_keys=1 << 20, block_keys=1 << 28),
    "pieces 2^14": dict(piece_keys=1 << 14, block_keys=1 << 28),
    "blocks 2^13": dict(piece_keys=1 << 20, block_keys=1 << 13),
}

SHAPES = [  # name, rows, cols, density, empty row fraction
    ("LeNet-300-100 FC-0", 784, 300, 0.08, 0.0),
    ("LeNet-5 FC-0", 800, 500, 0.08, 0.0),
    ("VGG-16 FC-6", 25088, 4096, 0.04, 0.0),
    ("FC-6, 40% empty rows", 25088, 4096, 0.04, 0.4),
]


def layer_keys(rows, cols, density, empty_rows, rng):
    """Kept positions: each row empty with probability empty_rows, else each weight kept with
    probability density / (1 - empty_rows), so the layer's density stays `density`."""
    keep_row = rng.random(rows) >= empty_rows
    p = density / (1 - empty_rows)
    per_row = [np.flatnonzero(rng.random(cols) < p) + r * cols for r in np.flatnonzero(keep_row)]
    return np.concatenate(per_row).astype(np.uint64)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cell-bits", type=int, default=12)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    t, r = args.cell_bits, 5
    codebook = rng.normal(0, 0.05, 32).astype(np.float32)
    print(f"ISA {_core.active_isa()}, t = {t}, 32 clusters, 1 thread, best of {args.repeats}")
    print(f"{'layer':<22} {'keys':>9} {'layout':<12} {'pieces':>6} {'blocks':>6} {'space':>7} {'decode':>10}")
    for name, rows, cols, density, empty in SHAPES:
        keys = layer_keys(rows, cols, density, empty, rng)
        values = rng.integers(0, 1 << r, len(keys)).astype(np.uint32)
        for layout, options in LAYOUTS.items():
            f = BloomierFilter(keys, values, value_bits=r, cell_bits=t, **options)
            factor = f.nbytes * 8 / (len(keys) * t)
            f.decode_weights(rows * cols, codebook, threads=1)  # warm
            seconds = best_of(lambda f=f, size=rows * cols: f.decode_weights(size, codebook, threads=1), args.repeats)
            print(f"{name:<22} {len(keys):>9} {layout:<12} {f.num_pieces:>6} {f.num_blocks:>6} {factor:>7.4f} "
                  f"{seconds * 1e3:>8.2f} ms", flush=True)


if __name__ == "__main__":
    main()
