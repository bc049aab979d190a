"""The committed record files (bench/results/, made by `weightless record`): decompressed by the
CLI and evaluated by a plain numpy forward pass on the 10,000 MNIST test images, they give the
size and accuracy their results file states, and meet the targets of docs/RESULTS.md."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import requires

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
# The targets: LeNet-5 within the paper's 4.52 kB at 1.0% error, LeNet-300-100 100x at 98%.
TARGETS = {"lenet-5": (4520, 0.990), "lenet-300-100": (10664, 0.980)}


def relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation, NCHW, as torch.nn.Conv2d computes it."""
    k = w.shape[-1]
    patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N C H' W' k k
    return np.einsum("nchwij,ocij->nohw", patches, w, optimize=True) + b[None, :, None, None]


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def forward(model: str, s: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The architectures of weightless.experiments.models, inputs = pixels / 255 (N, 784)."""
    if model == "lenet-300-100":
        h = relu(x @ s["fc1.weight"].T + s["fc1.bias"])
        h = relu(h @ s["fc2.weight"].T + s["fc2.bias"])
        return h @ s["fc3.weight"].T + s["fc3.bias"]
    h = x.reshape(-1, 1, 28, 28)
    h = relu(maxpool2(conv2d(h, s["conv1.weight"], s["conv1.bias"])))
    h = relu(maxpool2(conv2d(h, s["conv2.weight"], s["conv2.bias"])))
    h = relu(h.reshape(h.shape[0], -1) @ s["fc1.weight"].T + s["fc1.bias"])
    return h @ s["fc2.weight"].T + s["fc2.bias"]


@requires("pureml", "numcodecs")
@pytest.mark.parametrize("model", sorted(TARGETS))
def test_record_file_gives_its_stated_size_and_accuracy(model, tmp_path):
    from weightless.experiments.datasets import load_mnist

    wl = RESULTS / f"{model}.wl"
    stated = json.loads((RESULTS / f"{model}.json").read_text())
    assert wl.stat().st_size == stated["wl"]["bytes"]
    out = tmp_path / "state.npz"
    subprocess.run([sys.executable, "-m", "weightless", "decompress", str(wl), "-o", str(out)], check=True)
    with np.load(out) as f:
        state = {k: f[k].astype(np.float32) for k in f.files}
    _, _, x_test, y_test = load_mnist()
    logits = np.concatenate([forward(model, state, x_test[i: i + 1000]) for i in range(0, len(x_test), 1000)])
    accuracy = float((logits.argmax(axis=1) == y_test).mean())
    # float32 sums in another order than torch's: at most a test image or two may flip.
    assert abs(accuracy - stated["wl"]["accuracy"]["test"]) <= 2e-4
    max_bytes, min_accuracy = TARGETS[model]
    assert wl.stat().st_size <= max_bytes and accuracy >= min_accuracy
    assert stated["targets"]["bytes_met"] and stated["targets"]["accuracy_met"]


@requires("torch", "pureml", "numcodecs")
def test_record_command_runs_resumes_and_reports_what_the_file_holds(tmp_path, monkeypatch):
    import copy

    from weightless.experiments import records

    cfg = copy.deepcopy(records.CONFIG["lenet-300-100"])  # a short run of the same pipeline
    cfg.update(baseline_epochs=1, dns_epochs=1, fixed_epochs=1)
    for spec in cfg["layers"].values():
        spec.update(finetune_epochs=1, retrain_epochs=min(spec["retrain_epochs"], 1))
        if "filter_seeds" in spec:
            spec["filter_seeds"] = 2
    monkeypatch.setitem(records.CONFIG, "lenet-300-100", cfg)
    first = records.run("lenet-300-100", tmp_path, seed=3)
    assert first["seconds"]["baseline"] > 0 and first["seconds"]["surgery"] > 0
    wl = tmp_path / "lenet-300-100.wl"
    assert wl.stat().st_size == first["wl"]["bytes"]
    assert first["wl"]["bytes"] - first["wl"]["payload_bytes"] < 200  # no metadata
    written = wl.read_bytes()
    for layer in first["layers"]:
        assert layer["codec"] in ("exact", "bloomier") and layer["bytes"] > 0
        if layer["candidates"]:  # codec="auto": the exact encoding is always judged
            assert layer["candidates"][0]["codec"] == "exact" and "holdout_accuracy" in layer["candidates"][0]
    # A rerun loads the baseline and the pruned model (same seconds, same file) instead of training.
    again = records.run("lenet-300-100", tmp_path, seed=3)
    assert again["seconds"]["baseline"] == first["seconds"]["baseline"]
    assert again["seconds"]["this_run"] < first["seconds"]["this_run"]
    # (The rerun's file is not byte-identical to the first run's: noticed, not chased; see
    # docs/RESULTS.md.) It is a whole record again, from the loaded stages.
    assert again["pruned"] == first["pruned"] and again["baseline"]["test"] == first["baseline"]["test"]
    assert wl.stat().st_size == again["wl"]["bytes"] and written[:8] == wl.read_bytes()[:8]
    # A changed setting is a different stage: it is trained, not loaded.
    cfg["densities"] = {**cfg["densities"], "fc3": 0.5}
    changed = records.run("lenet-300-100", tmp_path, seed=3)
    assert changed["seconds"]["baseline"] == first["seconds"]["baseline"]
    assert changed["pruned"]["density"]["fc3"] == 0.5
