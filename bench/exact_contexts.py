"""The measurements that chose the exact codec's contexts: ideal static-model costs (empirical
conditional entropies, in bytes, model cost not counted) of candidate models of the mask and of
the codes, on the layers saved by bench/exact_data.py.

    python bench/exact_contexts.py /tmp/lenet300_clustered.npz
"""

from __future__ import annotations

import math
import sys

import numpy as np


def log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def cond_bytes(ctx: np.ndarray, sym: np.ndarray) -> tuple[float, int]:
    """sum over contexts of count * H(symbol | context), in bytes; and the number of contexts."""
    key = ctx.astype(np.int64) * 65536 + sym.astype(np.int64)
    _, c = np.unique(key, return_counts=True)
    _, cc = np.unique(ctx, return_counts=True)
    return float(-(c * np.log2(c)).sum() + (cc * np.log2(cc)).sum()) / 8, len(cc)


def gap_symbols(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The codec's gap symbols (0..15 direct, then exponent and two mantissa bits) and raw bits."""
    s = g.copy()
    raw = np.zeros_like(g)
    big = g >= 16
    e = np.floor(np.log2(np.maximum(g, 1))).astype(np.int64)
    s[big] = 16 + (e[big] - 4) * 4 + ((g[big] >> (e[big] - 2)) & 3)
    raw[big] = e[big] - 2
    return s, raw


def main() -> None:
    d = np.load(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lenet300_clustered.npz")
    for name in ("fc1", "fc2"):
        pos = d[f"{name}.positions"].astype(np.int64)
        codes = d[f"{name}.codes"].astype(np.int64)
        rows, cols = (int(v) for v in d[f"{name}.shape"])
        k = int(codes.max()) + 1
        n, size = len(pos), rows * cols
        mask = np.zeros((rows, cols), np.int64)
        mask.reshape(-1)[pos] = 1
        print(f"{name}: {rows}x{cols}, {n} kept")
        print(f"  mask, uniform log2 C(N, n): {log2_binomial(size, n) / 8:,.0f}")
        for axis, label in ((0, "columns"), (1, "rows")):
            counts = mask.sum(axis=axis)
            within = sum(log2_binomial(mask.shape[axis], int(c)) for c in counts) / 8
            h_counts = cond_bytes(np.zeros_like(counts), counts)[0]
            print(f"  mask, per-{label} counts known: {within:,.0f} + counts' H0 {h_counts:,.0f}")
        left = np.zeros_like(mask)
        left[:, 1:] = mask[:, :-1]
        left2 = np.zeros_like(mask)
        left2[:, 2:] = mask[:, :-2]
        cls = np.minimum((mask.sum(0) * 16) // (rows + 1), 15)[None, :].repeat(rows, 0)
        with_class = cond_bytes(cls * 4 + left * 2 + left2, mask)[0]
        print(f"  mask per position | left, left2: {cond_bytes(left * 2 + left2, mask)[0]:,.0f}; "
              f"| column class (16, stored separately), left, left2: {with_class:,.0f}")
        for order in ("row-major", "column-major"):
            p = np.sort(pos) if order == "row-major" else np.sort((pos % cols) * rows + pos // cols)
            s, raw = gap_symbols(np.diff(np.r_[-1, p]) - 1)
            prev = np.r_[16, s[:-1]]
            prev_cls = np.where(prev == 0, 0, np.where(prev < 4, 1, 2))
            h0, h_prev = cond_bytes(np.zeros_like(s), s)[0], cond_bytes(prev_cls, s)[0]
            print(f"  gaps, {order}: raw bits {raw.sum() / 8:,.0f} + symbols H0 {h0:,.0f}"
                  f" | previous gap class (3) {h_prev:,.0f}")
        grid = np.full(size, -1, np.int64)
        grid[pos] = codes
        c = pos % cols
        r = pos // cols
        left_code = np.where(c > 0, grid[np.maximum(pos - 1, 0)], -1) + 1
        same_row = np.r_[False, r[1:] == r[:-1]]
        prev_code = np.where(same_row, np.r_[0, codes[:-1]] + 1, 0)
        half = np.where(prev_code == 0, 0, 1 + (2 * (prev_code - 1) >= k))
        print(f"  codes H0: {cond_bytes(np.zeros_like(codes), codes)[0]:,.0f}")
        for label, ctx in (("left neighbour's code (mode 1)", left_code),
                           ("previous code in the row (mode 2)", prev_code),
                           ("left code, else half of the row's previous (mode 3)",
                            np.where(left_code > 0, left_code, k + 1 + half)),
                           ("up neighbour's code", np.where(r > 0, grid[np.maximum(pos - cols, 0)], -1) + 1)):
            h, used = cond_bytes(ctx, codes)
            print(f"  codes | {label}: {h:,.0f} ({used} contexts)")


if __name__ == "__main__":
    main()
