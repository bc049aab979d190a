"""`weightless demo`: the README's main job on a built-in default, with weightless.torch.

Trains LeNet-300-100 on MNIST, prunes fc1 and fc2 to Deep Compression's densities and retrains,
then runs the paper's Algorithm 1 (`weightless.torch.algorithm1`) on the two layers: cluster and
fine-tune the centroids, encode the layer in a Bloomier filter, freeze it as decoded (false
positives included) and retrain the later layers. The model is written as a .wl file, read back,
and the decompressed model is evaluated on the MNIST test set. About a minute on one core.
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

# Layers the demo compresses: the fraction of weights each keeps (Deep Compression's
# LeNet-300-100 densities, 8% and 9%) and the extra cell bits each gets over --cell-bits. fc1,
# the largest layer, is the paper's target; fc2 is small, so its false positives weigh more on
# each output (a few more bits there cost little).
LAYERS = {"fc1": (0.08, 0), "fc2": (0.09, 2)}
BATCH = 128
LR = 2e-3  # Adam's peak learning rate; every call decays it to 0 on a half cosine
PRUNE_EPOCHS = 3
RETRAIN_EPOCHS = 3


def _step(message: str) -> float:
    print(f"  {message:<48}", end="", flush=True)
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
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in load_mnist())
    print(f"weightless demo: LeNet-300-100 on MNIST ({len(x_train)} training, {len(x_test)} test images)")

    t = _step(f"train the baseline, {args.epochs} epochs")
    model = lenet_300_100()
    wt.train(model, x_train, y_train, epochs=args.epochs, lr=LR, batch_size=BATCH, seed=args.seed)
    baseline = wt.evaluate(model, x_test, y_test)
    _done(t, f"test accuracy {baseline:.2%}")

    t = _step(f"prune fc1 to 8%, fc2 to 9%, retrain {PRUNE_EPOCHS} epochs")
    wt.magnitude_prune(model, {name: density for name, (density, _) in LAYERS.items()})  # fixed masks
    wt.train(model, x_train, y_train, epochs=PRUNE_EPOCHS, lr=LR / 2, batch_size=BATCH, seed=args.seed + 1)
    _done(t, f"test accuracy {wt.evaluate(model, x_test, y_test):.2%}")

    # Algorithm 1, one layer at a time (so each step is shown as it ends): cluster, fine-tune the
    # centroids, encode, freeze the layer as decoded, retrain the layers after it; the next layer
    # then sees the errors of the ones before it.
    results = []
    for i, (name, (_, extra)) in enumerate(LAYERS.items()):
        spec = wt.LayerSpec(name, clusters=args.clusters, cell_bits=args.cell_bits + extra, finetune_epochs=1,
                            retrain_epochs=RETRAIN_EPOCHS, seed=args.seed)
        t = _step(f"encode {name} (t = {spec.cell_bits}), retrain after it")
        (result,) = wt.algorithm1(model, [spec], x_train, y_train, lr=LR / 2, batch_size=BATCH,
                                   seed=args.seed + 2 + i)
        results.append(result)
        _done(t, f"test accuracy {wt.evaluate(model, x_test, y_test):.2%}")
    wt.bake(model)
    in_memory = wt.evaluate(model, x_test, y_test)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.output) if args.output else Path(tmp) / "lenet300.wl"
        t = _step(f"compress to {path.name}, decompress, evaluate")
        # export_wl re-encodes each layer from its clustered weight with the recorded options
        # (deterministic) and checks the file decodes to the weights the model was retrained with.
        report = wt.export_wl(model, results, path, overwrite=args.force)
        restored = wt.load_wl(lenet_300_100(), path)
        file_bytes = os.path.getsize(path)
        final = wt.evaluate(restored, x_test, y_test)
        _done(t, f"test accuracy {final:.2%}")
    if final != in_memory:
        raise RuntimeError(f"the model decompressed from the file scores {final:.4%}, "
                           f"the one in memory {in_memory:.4%}")

    dense = sum(v.numel() * 4 for v in model.state_dict().values())
    print()
    print(f"  {'tensor':<12}{'shape':>10}{'kept':>8}{'stored as':>22}{'bytes':>10}{'vs float32':>12}")
    for entry in report.tensors:
        size = int(np.prod(entry.shape))
        kind = f"filter, t = {entry.cell_bits}" if entry.kind == "encoded" else f"raw {entry.dtype}"
        kept = f"{entry.kept / size:.1%}" if entry.kept is not None else "all"
        print(f"  {entry.name:<12}{'x'.join(map(str, entry.shape)):>10}{kept:>8}{kind:>22}{entry.nbytes:>10,}"
              f"{size * 4 / entry.nbytes:>11.1f}x")
    print(f"  {'whole model (.wl file)':<52}{file_bytes:>10,}{dense / file_bytes:>11.1f}x")

    # The same pruned, clustered fc1 stored the ways a user would otherwise pick (Deep
    # Compression's 5-bit relative indices with Huffman coding, and CSR arrays through zstd).
    fc1 = results[0].clustered.reshape(-1)
    positions = np.flatnonzero(fc1)
    codebook, codes = np.unique(fc1[positions], return_inverse=True)
    shape = results[0].clustered.shape
    dc = deep_compression_nbytes(positions, codes, codebook.size, shape)["total"]
    zs = csr_zstd_nbytes(positions, codes, codebook.size, shape)["total"]
    fc1_entry = next(e for e in report.tensors if e.name == "fc1.weight")
    print(f"\n  fc1 ({len(positions):,} kept weights) stored other ways: Deep Compression style {dc:,} bytes, "
          f"CSR + zstd {zs:,} bytes, Weightless {fc1_entry.nbytes:,} bytes")
    print(f"  false positives in fc1: {fc1_entry.false_positives:,} of {fc1.size - len(positions):,} zero weights")
    print(f"\n  test accuracy: baseline {baseline:.2%}, decompressed .wl {final:.2%}")
    if args.output:
        print(f"  wrote {args.output}")
