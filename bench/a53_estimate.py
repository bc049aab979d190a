"""An ESTIMATE of the Cortex-A53 decode time of VGG-16 FC-6, from instruction counts of the NEON path.

    python3 bench/a53_estimate.py [--wl-decode build/aarch64/wl-decode] [--rows 512] [--cols 1024]

We have no A53 board here, and Debian's qemu ships no instruction-count plugin, so this counts
instructions another way: it writes a layer at FC-6's density and t (4%, t = 12, 32 clusters)
with `rows x cols` positions, decodes it with the AArch64 `wl-decode` under
`qemu-aarch64 -cpu cortex-a53 -d in_asm,exec,nochain` (qemu logs every translated block with its
instructions and every execution of a block), and sums instructions per function. The NEON
kernel's instructions per position, times FC-6's 25088 * 4096 positions, divided by an assumed
A53 throughput, gives the estimate. Assumptions (stated in the output): 1.2 GHz (Raspberry Pi 3)
and 0.7 to 1.0 instructions per cycle for this dual-issue in-order core on a mix of NEON
arithmetic and L1/L2-resident loads; cache misses beyond that and the output's page faults are
not modelled. It is an estimate, not a measurement.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FC6_POSITIONS = 25088 * 4096
PAPER_A53_SECONDS = 296.0
CLOCK_HZ = 1.2e9
IPC_RANGE = (0.7, 1.0)


def instructions_by_function(log_path: Path) -> collections.Counter:
    """Guest instructions executed per function, from a qemu `-d in_asm,exec,nochain` log."""
    block_size, block_function = {}, {}
    runs = collections.Counter()
    function, start = "?", None
    with open(log_path, errors="replace") as log:
        for line in log:
            if line.startswith("IN:"):
                function, start = line[3:].strip() or "?", None
            elif (m := re.match(r"0x([0-9a-f]+):\s", line)) is not None:
                if start is None:
                    start = int(m.group(1), 16)
                    block_function[start] = function
                    block_size[start] = 0
                block_size[start] += 1
            elif line.startswith("Trace") and (m := re.search(r"\[[0-9a-f]+/([0-9a-f]+)/", line)):
                runs[int(m.group(1), 16)] += 1
                start = None
    totals = collections.Counter()
    for pc, count in runs.items():
        totals[block_function.get(pc, "?")] += count * block_size.get(pc, 0)
    return totals


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wl-decode", default=str(HERE.parent / "build" / "aarch64" / "wl-decode"))
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--cols", type=int, default=1024)
    args = ap.parse_args(argv)
    if not os.path.exists(args.wl_decode):
        sys.exit(f"error: {args.wl_decode} not found; cross-build first (README, 'ARM boards')")

    from weightless.container import compress  # the package, not the bench directory

    positions = args.rows * args.cols
    with tempfile.TemporaryDirectory() as tmp:
        wl_path, log_path = Path(tmp) / "layer.wl", Path(tmp) / "qemu.log"
        weights = np.random.default_rng(0).normal(0, 1, (args.rows, args.cols)).astype(np.float32)
        compress({"w": weights}, wl_path, layers=["w"], sparsity=0.96, clusters=32, cell_bits=12, seed=1)
        subprocess.run(["qemu-aarch64", "-cpu", "cortex-a53", "-d", "in_asm,exec,nochain", "-D", str(log_path),
                        args.wl_decode, str(wl_path), "--tensor", "w", "--threads", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        totals = instructions_by_function(log_path)

    kernel = sum(c for f, c in totals.items() if "kernel" in f and "WeightsSink" in f)
    per_position = kernel / positions
    fc6 = per_position * FC6_POSITIONS
    slow, fast = (fc6 / (ipc * CLOCK_HZ) for ipc in IPC_RANGE)
    print(f"{positions:,} positions decoded under qemu-aarch64 -cpu cortex-a53 (NEON path, 1 thread)")
    print(f"instructions executed, all: {sum(totals.values()):,}; NEON weights kernel: {kernel:,} "
          f"= {per_position:.1f} per position")
    for function, count in totals.most_common(4):
        print(f"  {count:>12,}  {function[:100]}")
    print(f"ESTIMATE for VGG-16 FC-6 (25088 x 4096, 4%, t = 12) on a Cortex-A53 at {CLOCK_HZ / 1e9:.1f} GHz, "
          f"IPC {IPC_RANGE[0]}-{IPC_RANGE[1]}: {fc6 / 1e9:.2f} G instructions -> {fast:.1f}-{slow:.1f} s "
          f"(paper: {PAPER_A53_SECONDS:.0f} s, {PAPER_A53_SECONDS / slow:.0f}-{PAPER_A53_SECONDS / fast:.0f}x); "
          "not a measurement")
    return dict(positions=positions, kernel_instructions=kernel, per_position=per_position,
                fc6_seconds_range=(fast, slow))


if __name__ == "__main__":
    main()
