"""Peak memory (VmHWM, the resident high-water mark) of decoding and compressing the VGG-16 FC-6
layer shape (25088 x 4096 float32, 4% density, t = 12), each in a fresh process.

    python3 -m pytest bench/test_bench_memory.py -s     # asserts the bounds, prints the figures
    python3 bench/test_bench_memory.py                   # prints the figures only

Bounds (docs/HARDENING.md):
  * decode (Python `Container.read`, and `wl-decode` through the C API) needs no more than the
    output, plus the filter table (its blob as read from the file and its cells unpacked to
    4 bytes each), plus a small constant over the interpreter's own footprint;
  * compress streams tensor by tensor: a model of 8 such-sized tensors peaks near the cost of one
    tensor, not of the model.
Needs ~2 GB of RAM and ~1 GB in the temporary directory; takes about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS, COLS, DENSITY, CELL_BITS, CLUSTERS = 25088, 4096, 0.04, 12, 16
MB = 1 << 20
SLACK = 48 * MB  # the "small constant": thread stacks, chunk buffers, allocator slack

_PROLOGUE = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
import weightless
from weightless.container import compress, open_container
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024
"""


def _python(body: str) -> dict:
    """Runs body after the prologue in a fresh interpreter; body sets `out` (a dict)."""
    code = _PROLOGUE + body + "\nout['peak'] = hwm()\nprint(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_peak(argv: list[str]) -> int:
    """Peak RSS of a command, from a wrapper process that only waits for it."""
    code = ("import resource, subprocess, sys\n"
            f"r = subprocess.run({argv!r}, capture_output=True)\n"
            "sys.exit(r.returncode) if r.returncode else print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return int(done.stdout) * 1024  # ru_maxrss is in KiB on Linux


def _find_wl_decode() -> str | None:
    if os.environ.get("WL_DECODE"):
        return os.environ["WL_DECODE"]
    for build in ("test-bad-inputs", "cpp", "."):
        path = ROOT / "build" / build / "wl-decode"
        if path.exists():
            return str(path)
    return None


def measure(tmp: Path) -> dict:
    """The figures: bytes of each peak and of what it is compared with."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    np.save(tmp / "fc6.npy", w)
    del w
    out = {}
    out["baseline"] = _python("out = {}")["peak"]  # the interpreter with numpy and weightless

    # Compress one FC-6 layer from a .npz file (read lazily) to .wl.
    r = _python(f"""
w = np.load({str(tmp / 'fc6.npy')!r}, mmap_mode='r')
from weightless.io import save_state
save_state({{'fc6.weight': w}}, {str(tmp / 'fc6.npz')!r})
del w
before = hwm()
out = {{'before': before}}
import resource
report = compress({str(tmp / 'fc6.npz')!r}, {str(tmp / 'fc6.wl')!r}, sparsity={1 - DENSITY}, cell_bits={CELL_BITS},
                  clusters={CLUSTERS})
e = report.encoded[0]
out.update(kept=e.kept, blob=e.nbytes, file=report.compressed_bytes)
""")
    out["compress"] = r["peak"]
    out["blob"], out["kept"] = r["blob"], r["kept"]

    # Decode it with the Python API.
    r = _python(f"""
with open_container({str(tmp / 'fc6.wl')!r}) as c:
    layer = c.encoded_layer('fc6.weight')
    cells = layer.filter.num_cells
    del layer
    a = c.read('fc6.weight', threads=2)
out = {{'output': a.nbytes, 'cells': cells}}
""")
    out["decode"], out["output"], out["table"] = r["peak"], r["output"], 4 * r["cells"]

    # Decode it with wl-decode (the C API): no interpreter.
    tool = _find_wl_decode()
    if tool:
        out["wl_decode"] = _child_peak([tool, str(tmp / "fc6.wl"), "--tensor", "fc6.weight", "--threads", "2"])

    # Streaming: 8 tensors of 1/4 the layer each (8 x 103 MB = 822 MB of model), half encoded.
    r = _python(f"""
from weightless.io import save_state
rng = np.random.default_rng(1)
save_state({{f'l{{i}}.weight': rng.standard_normal(({ROWS // 4}, {COLS}), dtype=np.float32) for i in range(8)}},
           {str(tmp / 'model8.npz')!r})
out = {{}}
""")
    (tmp / "fc6.npz").unlink()
    r = _python(f"""
report = compress({str(tmp / 'model8.npz')!r}, {str(tmp / 'model8.wl')!r}, layers=[f'l{{i}}.weight' for i in range(4)],
                  sparsity={1 - DENSITY}, cell_bits={CELL_BITS}, clusters={CLUSTERS})
out = {{'model': report.original_bytes}}
""")
    out["compress8"], out["model8"] = r["peak"], r["model"]
    return out


def report(m: dict) -> str:
    f = lambda b: f"{b / MB:,.0f} MB"  # noqa: E731
    lines = [
        f"FC-6 {ROWS} x {COLS} float32, {DENSITY:.0%} density, t = {CELL_BITS}: kept {m['kept']:,}, "
        f"encoded blob {f(m['blob'])}, output {f(m['output'])}, table unpacked {f(m['table'])}",
        f"interpreter baseline (python + numpy + weightless): {f(m['baseline'])}",
        f"decode (Container.read): peak {f(m['decode'])} = baseline + {f(m['decode'] - m['baseline'])} "
        f"(output + blob + table = {f(m['output'] + m['blob'] + m['table'])})",
    ]
    if "wl_decode" in m:
        lines.append(f"decode (wl-decode, C API): peak {f(m['wl_decode'])} "
                     f"(output + file + table = {f(m['output'] + m['blob'] + m['table'])})")
    lines += [
        f"compress (one layer, from .npz): peak {f(m['compress'])} = baseline + {f(m['compress'] - m['baseline'])} "
        f"({(m['compress'] - m['baseline']) / m['output']:.2f} x the layer)",
        f"compress (8 tensors of {f(m['model8'] // 8)}, model {f(m['model8'])}): peak {f(m['compress8'])} "
        f"= baseline + {f(m['compress8'] - m['baseline'])}",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def figures():
    tmp = Path(tempfile.mkdtemp(prefix="wl-mem-"))
    try:
        m = measure(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n" + report(m))
    return m


def test_decode_needs_output_plus_table_plus_a_constant(figures):
    m = figures
    bound = m["baseline"] + m["output"] + m["blob"] + m["table"] + SLACK
    assert m["decode"] <= bound, report(m)
    if "wl_decode" in m:
        assert m["wl_decode"] <= m["output"] + m["blob"] + m["table"] + SLACK, report(m)


def test_compress_streams_tensor_by_tensor(figures):
    m = figures
    # The whole model never sits in memory: the peak is that of the largest tensor's encoding
    # (the one-layer figure scaled to a quarter of the layer), not the model's size.
    one = (m["compress"] - m["baseline"]) / 4
    assert m["compress8"] - m["baseline"] <= one + SLACK + m["model8"] / 8, report(m)
    assert m["compress8"] - m["baseline"] < m["model8"] / 2, report(m)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="wl-mem-") as d:
        print(report(measure(Path(d))))
