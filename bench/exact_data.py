"""Real layers for the exact codec's benchmark: LeNet-300-100 trained here on MNIST.

Trains the model as `weightless demo` does (7 epochs; prune fc1 to 8% kept and fc2 to 9%,
retrain 3 epochs), clusters each pruned layer with 16-cluster density-initialised k-means and
saves, per layer, the flattened kept positions, their codes, the codebook and the shape, so
that every codec in bench/bench_exact.py compares on exactly the same data.

    python bench/exact_data.py -o /tmp/lenet300_clustered.npz
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LAYERS = {"fc1.weight": 0.92, "fc2.weight": 0.91, "fc3.weight": 0.74}


def main() -> None:
    from weightless.cluster import kmeans_1d
    from weightless.datasets import load_mnist
    from weightless.lenet import accuracy, train_lenet300
    from weightless.prune import prune_mask

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="/tmp/lenet300_clustered.npz")
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    t = time.perf_counter()
    x_train, y_train, x_test, y_test = load_mnist()
    state = train_lenet300(x_train, y_train, epochs=7, seed=args.seed, progress=False)
    masks = {name: prune_mask(state[name], sparsity=s) for name, s in LAYERS.items()}
    state = train_lenet300(x_train, y_train, epochs=3, lr=1e-3, seed=args.seed + 1, progress=False,
                           init=state, masks=masks)
    out: dict[str, np.ndarray] = {}
    clustered = dict(state)
    for name in LAYERS:
        w = state[name]
        positions = np.flatnonzero(w)
        c = kmeans_1d(w.reshape(-1)[positions], args.clusters, seed=args.seed)
        key = name.split(".")[0]
        out[f"{key}.positions"] = positions.astype(np.int64)
        out[f"{key}.codes"] = c.codes.astype(np.uint16)
        out[f"{key}.codebook"] = c.codebook.astype(np.float32)
        out[f"{key}.shape"] = np.asarray(w.shape, dtype=np.int64)
        dq = np.zeros(w.size, dtype=np.float32)
        dq[positions] = c.codebook[c.codes]
        clustered[name] = dq.reshape(w.shape)
    np.savez(args.output, **out)  # type: ignore[arg-type]  # numpy's stub types **kwds oddly
    print(f"pruned accuracy {accuracy(state, x_test, y_test):.2%}, clustered {accuracy(clustered, x_test, y_test):.2%};"
          f" wrote {args.output} ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
