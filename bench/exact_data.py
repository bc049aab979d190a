"""Real layers for the exact codec's benchmark: LeNet-300-100 trained here on MNIST.

Trains the model as `weightless demo` does (weightless.torch; prune fc1 to 8% kept, fc2 to 9%
and fc3 to 26% with fixed masks, retrain), clusters each pruned layer with 16-cluster
density-initialised k-means and saves, per layer, the flattened kept positions, their codes, the
codebook and the shape, so that every codec in bench/bench_exact.py compares on exactly the same
data.

    python bench/exact_data.py -o /tmp/lenet300_clustered.npz
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LAYERS = {"fc1.weight": 0.92, "fc2.weight": 0.91, "fc3.weight": 0.74}


def main() -> None:
    import torch

    import weightless.torch as wt
    from weightless.clustered import prune_and_cluster
    from weightless.experiments.datasets import load_mnist
    from weightless.experiments.models import lenet_300_100

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("-o", "--output", default="/tmp/lenet300_clustered.npz")
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    t = time.perf_counter()
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in load_mnist())
    model = lenet_300_100()
    wt.train(model, x_train, y_train, epochs=6, lr=2e-3, batch_size=128, seed=args.seed)
    wt.magnitude_prune(model, {name.split(".")[0]: 1 - s for name, s in LAYERS.items()})
    wt.train(model, x_train, y_train, epochs=3, lr=1e-3, batch_size=128, seed=args.seed + 1)
    wt.bake(model)
    pruned = wt.evaluate(model, x_test, y_test)
    out: dict[str, np.ndarray] = {}
    state = model.state_dict()
    for name in LAYERS:
        w = state[name].numpy()
        c = prune_and_cluster(w, threshold=0.0, clusters=args.clusters, seed=args.seed)  # the kept weights as they are
        key = name.split(".")[0]
        out[f"{key}.positions"] = c.positions
        out[f"{key}.codes"] = c.codes.astype(np.uint16)
        out[f"{key}.codebook"] = c.codebook.astype(np.float32)
        out[f"{key}.shape"] = np.asarray(w.shape, dtype=np.int64)
        state[name].copy_(torch.from_numpy(c.dense()))
    np.savez(args.output, **out)  # type: ignore[arg-type]  # numpy's stub types **kwds oddly
    print(f"pruned accuracy {pruned:.2%}, clustered {wt.evaluate(model, x_test, y_test):.2%}; "
          f"wrote {args.output} ({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
