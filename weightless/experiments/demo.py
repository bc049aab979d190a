"""`weightless demo`: the README's main job on a built-in default, with weightless.torch.

Trains LeNet-300-100 on MNIST (5,000 training images held out), prunes every layer by magnitude
and retrains, then runs the paper's Algorithm 1 (`weightless.torch.algorithm1`) layer by layer:
cluster and fine-tune the centroids, then choose the layer's codec on the held-out images: the
exact encoding (no errors) and the Bloomier filter at a few t are each frozen in with the later
layers retrained, and the smallest whose held-out accuracy is within 0.1 point of the exact one's
wins. Biases share a few centroids where the held-out accuracy allows. The model is written as a
.wl file, read back, and the decompressed model is evaluated on the MNIST test set. Prints, per
tensor, the codec chosen and the bytes of every candidate beside Deep Compression-style storage
and CSR + zstd of the same weights. About a minute on one core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import weightless.torch as wt
from weightless.baselines import csr_zstd_nbytes, deep_compression_nbytes

from .datasets import load_mnist
from .models import lenet_300_100
from .records import HOLDOUT, random_shifts, share_biases

# Per layer: the fraction of weights kept (magnitude pruning, fixed masks), k-means clusters,
# and the filter's candidate cell widths t (none: the exact codec only; fc3 is too small for a
# filter to pay).
LAYERS: dict[str, tuple[float, int, tuple[int, ...]]] = {"fc1": (0.03, 4, (6, 7, 8)), "fc2": (0.06, 4, (6, 7, 8)),
                                                         "fc3": (0.3, 8, ())}
BATCH = 128
LR = 2e-3  # Adam's peak learning rate; every call decays it to 0 on a half cosine
SURGERY_EPOCHS = 6
FIXED_EPOCHS = 2
RETRAIN_EPOCHS = 2


def _step(message: str) -> float:
    print(f"  {message:<58}", end="", flush=True)
    return time.perf_counter()


def _done(start: float, result: str) -> None:
    print(f"{result}  ({time.perf_counter() - start:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> None:
    if args.output and Path(args.output).exists() and not args.force:
        raise FileExistsError(f"{args.output} exists (use --force to overwrite)")
    threads = torch.get_num_threads()
    # One thread: LeNet-300-100's small matrix products gain nothing from a second one.
    torch.set_num_threads(1)
    try:
        _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    x, y, x_test, y_test = (torch.from_numpy(a) for a in load_mnist())
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))
    x_train, y_train, x_held, y_held = x[order[HOLDOUT:]], y[order[HOLDOUT:]], x[order[:HOLDOUT]], y[order[:HOLDOUT]]
    print(f"weightless demo: LeNet-300-100 on MNIST ({len(x_train):,} training, {len(x_held):,} held-out, "
          f"{len(x_test):,} test images)")

    augment = random_shifts(2)  # images moved by up to 2 pixels: a better baseline, and sturdier when pruned
    t = _step(f"train the baseline, {args.epochs} epochs")
    model = lenet_300_100()
    wt.train(model, x_train, y_train, epochs=args.epochs, lr=LR, batch_size=BATCH, seed=args.seed, augment=augment)
    baseline = wt.evaluate(model, x_test, y_test)
    _done(t, f"test accuracy {baseline:.2%}")

    densities = {name: density for name, (density, _, _) in LAYERS.items()}
    t = _step("surgery: " + ", ".join(f"{n} to {d:.0%}" for n, d in densities.items()))
    dns = wt.DynamicSurgery(model, densities)  # pruned weights keep learning and may come back
    wt.train(model, x_train, y_train, epochs=SURGERY_EPOCHS, lr=LR / 2, batch_size=BATCH, seed=args.seed + 1,
             on_step=dns.on_step, augment=augment)
    dns.finish()
    wt.train(model, x_train, y_train, epochs=FIXED_EPOCHS, lr=LR / 4, batch_size=BATCH, seed=args.seed + 2,
             augment=augment)
    wt.bake(model)
    wt.keep_sparsity(model, list(densities))  # fixed masks, kept while the later layers retrain
    _done(t, f"test accuracy {wt.evaluate(model, x_test, y_test):.2%}")

    # Algorithm 1, one layer at a time (so each step is shown as it ends); the next layer sees
    # the errors of the ones before it.
    results = []
    for i, (name, (_, clusters, cell_bits)) in enumerate(LAYERS.items()):
        spec = wt.LayerSpec(name, clusters=clusters, codec="auto" if cell_bits else "exact",
                            cell_bits=cell_bits or None, finetune_epochs=1, retrain_epochs=RETRAIN_EPOCHS,
                            seed=args.seed)
        t = _step(f"{name}: cluster, choose " + (f"exact or filter t = {'/'.join(map(str, cell_bits))}"
                                                if cell_bits else "exact"))
        (result,) = wt.algorithm1(model, [spec], x_train, y_train, x_holdout=x_held, y_holdout=y_held, lr=LR / 4,
                                   batch_size=BATCH, seed=args.seed + 3 + i, augment=augment)
        results.append(result)
        _done(t, f"{_codec(result)}, test accuracy {wt.evaluate(model, x_test, y_test):.2%}")
    wt.bake(model)
    t = _step("biases: share as few centroids as held-out allows")
    biases = share_biases(model, (2, 4, 8, 16), 0.0, x_held, y_held, args.seed)
    in_memory = wt.evaluate(model, x_test, y_test)
    _done(t, ", ".join(f"{n} {o['clusters']}" for n, o in biases.items()))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.output) if args.output else Path(tmp) / "lenet300.wl"
        t = _step(f"compress to {path.name}, decompress, evaluate")
        # export_wl re-encodes each layer from its clustered weight with the recorded options
        # (deterministic) and checks the file decodes to the weights the model was retrained with.
        report = wt.export_wl(model, results, path, overwrite=args.force, layers=biases)
        restored = wt.load_wl(lenet_300_100(), path)
        file_bytes = os.path.getsize(path)
        final = wt.evaluate(restored, x_test, y_test)
        _done(t, f"test accuracy {final:.2%}")
    if final != in_memory:
        raise RuntimeError(f"the model decompressed from the file scores {final:.4%}, "
                           f"the one in memory {in_memory:.4%}")

    dense = sum(v.numel() * 4 for v in model.state_dict().values())
    entries = {e.name: e for e in report.tensors}
    print(f"\n  {'tensor':<12}{'shape':>9}{'kept':>7}  {'stored as':<16}{'bytes':>7}  "
          f"{'candidates (bytes, held-out acc.)':<44}{'DC-style':>9}{'CSR+zstd':>9}")
    for r in results:
        e = entries[r.weight_name]
        tried = "; ".join(_candidate(c) for c in r.candidates) or "-"
        positions = np.flatnonzero(r.clustered)
        codebook, codes = np.unique(r.clustered.reshape(-1)[positions], return_inverse=True)
        dc = deep_compression_nbytes(positions, codes, codebook.size, r.clustered.shape)["total"]
        zs = csr_zstd_nbytes(positions, codes, codebook.size, r.clustered.shape)["total"]
        kept = r.encoded.kept / r.clustered.size
        print(f"  {e.name:<12}{'x'.join(map(str, e.shape)):>9}{kept:>7.1%}  {_codec(r):<16}{e.nbytes:>7,}"
              f"  {tried:<44}{dc:>9,}{zs:>9,}")
    others = [e for e in report.tensors if e.name not in {r.weight_name for r in results}]
    print(f"  {'biases':<12}{'':>9}{'':>7}  {'exact, shared':<16}{sum(e.nbytes for e in others):>7,}")
    print(f"  {'whole model (.wl file)':<44}{file_bytes:>7,}  ({dense / file_bytes:.1f}x smaller than float32)")
    print(f"\n  test accuracy: baseline {baseline:.2%}, decompressed .wl {final:.2%}")
    if args.output:
        print(f"  wrote {args.output}")


def _codec(r: wt.LayerResult) -> str:
    return "exact" if r.codec == "exact" else f"filter, t = {r.options['cell_bits']}"


def _candidate(c: dict) -> str:
    name = "exact" if c["codec"] == "exact" else f"t={c['cell_bits']}"
    accuracy = f" {c['holdout_accuracy']:.1%}" if "holdout_accuracy" in c else ""
    return f"{name} {c['bytes']:,}{accuracy}"
