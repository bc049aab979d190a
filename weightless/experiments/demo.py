"""`weightless demo`: the README's main job on a built-in default.

Trains LeNet-300-100 on MNIST (numpy, about 10 s), then runs the paper's Algorithm 1 on its two
large layers: prune and retrain, then layer by layer encode the layer in a Bloomier filter,
freeze it with its false positives and retrain the later layers. The result is written as a
.wl file, read back, and the decompressed model is evaluated on the MNIST test set.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# Layers the demo compresses, how sparse each becomes (Deep Compression's LeNet-300-100
# densities: 8% and 9% kept) and the extra cell bits each gets over --cell-bits. fc1, the
# largest layer, is the paper's target; fc2 is small, so its false positives weigh more on
# each output (a few more bits there cost little).
LAYERS = {"fc1.weight": (0.92, 0), "fc2.weight": (0.91, 2)}


def _step(message: str) -> float:
    print(f"  {message:<48}", end="", flush=True)
    return time.perf_counter()


def _done(start: float, result: str) -> None:
    print(f"{result}  ({time.perf_counter() - start:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> None:
    from ..baselines import csr_zstd_nbytes, deep_compression_nbytes
    from ..codec import encode_layer
    from ..container import compress, decompress
    from ..lenet import accuracy, train_lenet300
    from ..prune import prune_mask
    from .datasets import load_mnist

    if args.output and Path(args.output).exists() and not args.force:
        raise FileExistsError(f"{args.output} exists (use --force to overwrite)")
    options = {name: dict(clusters=args.clusters, cell_bits=args.cell_bits + extra, seed=args.seed)
               for name, (_, extra) in LAYERS.items()}

    x_train, y_train, x_test, y_test = load_mnist()
    print(f"weightless demo: LeNet-300-100 on MNIST ({len(x_train)} training, {len(x_test)} test images)")

    t = _step(f"train the baseline, {args.epochs} epochs")
    state = train_lenet300(x_train, y_train, epochs=args.epochs, seed=args.seed, progress=False)
    baseline = accuracy(state, x_test, y_test)
    _done(t, f"test accuracy {baseline:.2%}")

    t = _step("prune fc1 to 8%, fc2 to 9%, retrain 3 epochs")
    masks = {name: prune_mask(state[name], sparsity=s) for name, (s, _) in LAYERS.items()}
    state = train_lenet300(x_train, y_train, epochs=3, lr=1e-3, seed=args.seed + 1, progress=False,
                           init=state, masks=masks)
    _done(t, f"test accuracy {accuracy(state, x_test, y_test):.2%}")

    # Algorithm 1: encode a layer, freeze it as decoded (false positives included), retrain the
    # layers after it so they absorb its errors; then the next layer.
    frozen: tuple[str, ...] = ()
    encoded = {}
    model = dict(state)
    for i, name in enumerate(LAYERS):
        t = _step(f"encode {name.split('.')[0]} (t = {options[name]['cell_bits']}), retrain after it")
        encoded[name] = encode_layer(state[name], **options[name])
        model[name] = encoded[name].decode()
        frozen += (name, name.replace("weight", "bias"))
        later_masks = {n: m for n, m in masks.items() if n not in frozen}
        model = train_lenet300(x_train, y_train, epochs=3, lr=1e-3, seed=args.seed + 2 + i, progress=False,
                               init=model, masks=later_masks, frozen=frozen)
        _done(t, f"test accuracy {accuracy(model, x_test, y_test):.2%}")

    # The .wl file holds the pruned (unclustered) weights of the encoded layers re-encoded with
    # the same options, which is deterministic, and every other tensor as retrained.
    to_store = {name: (state[name] if name in LAYERS else model[name]) for name in model}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.output) if args.output else Path(tmp) / "lenet300.wl"
        t = _step(f"compress to {path.name}, decompress, evaluate")
        report = compress(to_store, path, layers=options, overwrite=args.force)
        restored = decompress(path)
        file_bytes = os.path.getsize(path)
        final = accuracy(restored, x_test, y_test)
        _done(t, f"test accuracy {final:.2%}")
        for name in LAYERS:
            if not np.array_equal(restored[name], model[name]):
                raise RuntimeError(f"{name} decoded from the file differs from the retrained model's")

    dense = sum(v.size * 4 for v in state.values())
    print()
    print(f"  {'tensor':<12}{'shape':>10}{'kept':>8}{'stored as':>22}{'bytes':>10}{'vs float32':>12}")
    for entry in report.tensors:
        size = int(np.prod(entry.shape))
        kind = f"filter, t = {entry.cell_bits}" if entry.kind == "encoded" else f"raw {entry.dtype}"
        kept = f"{entry.kept / size:.1%}" if entry.kept is not None else "all"
        print(f"  {entry.name:<12}{'x'.join(map(str, entry.shape)):>10}{kept:>8}{kind:>22}{entry.nbytes:>10,}"
              f"{size * 4 / entry.nbytes:>11.1f}x")
    print(f"  {'whole model (.wl file)':<52}{file_bytes:>10,}{dense / file_bytes:>11.1f}x")

    # The same pruned, clustered fc1 stored the ways a user would otherwise pick.
    fc1 = state["fc1.weight"]
    positions = np.flatnonzero(fc1)
    codes = encoded["fc1.weight"].filter.lookup(positions.astype(np.uint64))  # stored keys read back exactly
    dc = deep_compression_nbytes(positions, codes, args.clusters, fc1.shape)["total"]
    zs = csr_zstd_nbytes(positions, codes, args.clusters, fc1.shape)["total"]
    fc1_entry = next(e for e in report.tensors if e.name == "fc1.weight")
    print(f"\n  fc1 ({len(positions):,} kept weights) stored other ways: Deep Compression style {dc:,} bytes, "
          f"CSR + zstd {zs:,} bytes, Weightless {fc1_entry.nbytes:,} bytes")
    print(f"  false positives in fc1: {fc1_entry.false_positives:,} of {fc1.size - len(positions):,} zero weights")
    print(f"\n  test accuracy: baseline {baseline:.2%}, decompressed .wl {final:.2%}")
    if args.output:
        print(f"  wrote {args.output}")
