"""NNCodec (MPEG NNR / DeepCABAC) as a bench peer of the exact codec, on the same clustered layers.

Runs in its own environment (NNCodec 2.1.3 beside torch; see docs/EXACT.md for how it was
installed here) and prints one JSON line per layer and configuration: the bitstream's size and
how far NNCodec's decoded tensor is from the clustered input (exact means max |error| == 0).
NNCodec is given the dequantised tensor: codebook[code] at kept positions, 0 elsewhere.

    python bench/exact_nncodec.py /tmp/lenet300_clustered.npz [fc1 ...]
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile

import numpy as np


def clustered(data: dict[str, np.ndarray], layer: str) -> np.ndarray:
    shape = tuple(int(d) for d in data[f"{layer}.shape"])
    w = np.zeros(int(np.prod(shape)), dtype=np.float32)
    w[data[f"{layer}.positions"]] = data[f"{layer}.codebook"][data[f"{layer}.codes"]]
    return w.reshape(shape)


def run(w: np.ndarray, name: str, args: dict[str, object]) -> dict[str, object]:
    from nncodec import nn  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        bs = nn.encode({name: w.copy()}, args={**args, "results": tmp, "verbose": False})
        out = nn.decode(bs)
    rec = np.asarray(out[name], dtype=np.float32).reshape(w.shape)
    err = float(np.max(np.abs(rec - w))) if w.size else 0.0
    return {"bytes": len(bs), "max_abs_error": err, "exact": err == 0.0,
            "extra_nonzeros": int(np.count_nonzero(rec[w == 0])),
            "lost_nonzeros": int(np.count_nonzero(rec[w != 0] == 0))}


def main() -> None:
    data = dict(np.load(sys.argv[1]))
    layers = sys.argv[2:] or ["fc1", "fc2", "fc3"]
    configs: list[tuple[str, dict[str, object]]] = [("codebook", {"approx_method": "codebook"}),
               ("codebook, no dq", {"approx_method": "codebook", "use_dq": False}),
               ("uniform qp -38", {"qp": -38}), ("uniform qp -32 (default)", {}),
               ("uniform qp -32, no dq", {"use_dq": False}), ("uniform qp -24", {"qp": -24})]
    for layer in layers:
        w = clustered(data, layer)
        for label, args in configs:
            try:
                r = run(w, f"{layer}.weight", args)
            except Exception as e:  # report and go on: a peer's failure is a result too
                r = {"error": f"{type(e).__name__}: {e}"}
            print(json.dumps({"layer": layer, "config": label, **r}), flush=True)


if __name__ == "__main__":
    main()
