"""Exact codec decode time against numpy's allocate-and-write of the same output, in one run.

    python bench/exact_decode_speed.py [--baseline /path/to/other/checkout] [--data fc1.npz]

The issue's target: decoding a layer takes at most 2x numpy's time to allocate and write its
output. Reference (`numpy`): `out = np.empty(shape, np.float32); out[...] = 0`, numpy's cheapest
way to allocate and write every element (np.zeros can hand back lazily zeroed pages it never
writes). `exact`: `ExactLayer.decode()`, which allocates with np.empty and decodes into it (CRC,
header, tables, streams, zeros and values). Both are timed in the same process, alternating
round by round, best of the rounds (the machine is shared: minima, not means).

Layers: i.i.d. masks at 0.1%, 1%, 8%, 50% and 100% density for LeNet-300-100's fc1 shape
(784 x 300, stored 300 x 784) and 4096 x 1024, the two dense MiniLM block sizes at 50% and 90%,
16 clusters with skewed frequencies (as bench/test_bench_exact.py); with --data, the real
LeNet-300-100 layers of bench/exact_data.py. Each payload is written once and decoded by every
build: with --baseline (a checkout whose weightless/_core is built, e.g. the branch point), its
decoder runs in a child process beside this checkout's, so the table shows before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SHAPES = [(300, 784), (4096, 1024)]
DENSITIES = [0.001, 0.01, 0.08, 0.5, 1.0]
EXTRA = [((1536, 384), 0.5), ((1536, 384), 0.9)]


def make_payload(shape: tuple[int, ...], density: float, seed: int = 0) -> bytes:
    from weightless.exact import encode_clustered

    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    positions = np.flatnonzero(rng.random(size) < density)
    probs = np.sort(rng.dirichlet(np.ones(16)))[::-1]
    codes = rng.choice(16, size=positions.size, p=probs)
    codebook = np.sort(rng.standard_normal(16)).astype(np.float32)
    return encode_clustered(positions, codes, shape, codebook).to_bytes()


def worker(files: list[str], rounds: int) -> None:
    """Child: best times (seconds) of numpy's reference and of the decode, per payload."""
    import weightless
    from weightless.exact import ExactLayer

    results: list[dict] = []
    for name in files:
        layer = ExactLayer.from_bytes(Path(name).read_bytes())
        shape = layer.shape
        n = rounds if layer.size < 10**6 else max(5, rounds // 5)
        best_np = best_ex = float("inf")
        for _ in range(n):
            t = time.perf_counter()
            out = np.empty(shape, dtype=np.float32)
            out[...] = 0
            best_np = min(best_np, time.perf_counter() - t)
            del out
            t = time.perf_counter()
            out = layer.decode()
            best_ex = min(best_ex, time.perf_counter() - t)
            del out
        results.append({"file": name, "numpy": best_np, "exact": best_ex, "kept": layer.kept,
                        "shape": list(shape), "modes": f"{layer.gap_mode}/{layer.code_mode}"})
    print(json.dumps({"package": weightless.__file__, "layers": results}))


def run_build(root: Path, files: list[str], rounds: int) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--rounds", str(rounds), *files],
                         env=env, cwd=str(root), capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(res["package"]).resolve().parent.parent != root:
        raise SystemExit(f"{root}: imported weightless from {res['package']}")
    return res["layers"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another checkout with a built weightless/_core")
    ap.add_argument("--data", type=Path, help="bench/exact_data.py output: add the real LeNet-300-100 layers")
    ap.add_argument("--rounds", type=int, default=60, help="timing rounds per payload and repeat (default 60)")
    ap.add_argument("--repeats", type=int, default=3, help="alternations of the builds (default 3)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.files, args.rounds)
        return

    layers: list[tuple[str, bytes]] = []
    for shape in SHAPES:
        for density in DENSITIES:
            layers.append((f"{shape[0]}x{shape[1]} {100 * density:g}%", make_payload(shape, density)))
    for shape, density in EXTRA:
        layers.append((f"{shape[0]}x{shape[1]} {100 * density:g}%", make_payload(shape, density)))
    if args.data:
        from weightless.exact import encode_clustered

        data = np.load(args.data)
        for name in ("fc1", "fc2"):
            layer = encode_clustered(data[f"{name}.positions"], data[f"{name}.codes"],
                                     tuple(int(d) for d in data[f"{name}.shape"]), data[f"{name}.codebook"])
            layers.append((f"LeNet-300-100 {name} (real)", layer.to_bytes()))

    builds = [("after", REPO)] + ([("before", args.baseline.resolve())] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (_, payload) in enumerate(layers):
            f = Path(tmp) / f"{i:02d}.wlex"
            f.write_bytes(payload)
            files.append(str(f))
        best: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for label, root in builds[::-1]:
                res = run_build(root, files, args.rounds)
                if label not in best:
                    best[label] = res
                else:
                    for old, new in zip(best[label], res):
                        old["numpy"] = min(old["numpy"], new["numpy"])
                        old["exact"] = min(old["exact"], new["exact"])

    us = 1e6
    head = "| layer | kept | modes | numpy | "
    if args.baseline:
        head += "exact before | ratio before | "
    head += "exact after | **ratio after** |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for i, (name, _) in enumerate(layers):
        a = best["after"][i]
        ref = min(best[label][i]["numpy"] for label in best)  # the same numpy code in every child
        cells = [name, f"{a['kept']:,}", a["modes"], f"{ref * us:,.1f} us"]
        if args.baseline:
            b = best["before"][i]
            cells += [f"{b['exact'] * us:,.1f} us", f"{b['exact'] / ref:.2f}"]
        cells += [f"{a['exact'] * us:,.1f} us", f"**{a['exact'] / ref:.2f}**"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
