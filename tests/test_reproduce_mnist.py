"""`weightless reproduce --quick` (weightless.experiments.reproduce): the files it writes and their
consistency with each other."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_module

require_module("torch", "pureml", "numcodecs", "matplotlib")

import torch  # noqa: E402

import weightless  # noqa: E402
import weightless.torch as wt  # noqa: E402
from weightless.cli import main as cli_main  # noqa: E402
from weightless.codec import value_bits_for  # noqa: E402
from weightless.experiments.datasets import load_mnist  # noqa: E402
from weightless.experiments.models import lenet_300_100  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    # A process of its own (the command sets torch's thread count), started outside the checkout.
    argv = ["reproduce", "--model", "lenet-300-100", "--out", str(out), "--quick", "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "weightless", *argv], capture_output=True, text=True, cwd=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "results.json") as f:
        return out, json.load(f)


def test_quick_run_writes_every_file(quick_run):
    out, r = quick_run
    for name in ("baseline.npz", "lenet-300-100.wl", "results.json", "tsweep.png", "frontier.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in r["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["model"] == "lenet-300-100" and r["quick"] is True


def test_accuracies_are_those_of_the_files(quick_run):
    out, r = quick_run
    _, _, x_test, y_test = load_mnist()
    baseline = lenet_300_100()
    with np.load(out / "baseline.npz") as npz:
        baseline.load_state_dict({k: torch.from_numpy(npz[k]) for k in npz.files})
    assert wt.evaluate(baseline, x_test, y_test) == r["baseline"]["accuracy"]
    assert r["baseline"]["accuracy"] > 0.85
    restored = wt.load_wl(lenet_300_100(), out / r["wl"]["file"])
    assert wt.evaluate(restored, x_test, y_test) == r["wl"]["accuracy_from_file"]
    assert r["wl"]["accuracy_from_file"] == r["wl"]["accuracy_in_memory"]  # the file holds the model exactly
    loss_pp = 100 * (r["baseline"]["accuracy"] - r["wl"]["accuracy_from_file"])
    assert r["wl"]["accuracy_loss_pp"] == pytest.approx(loss_pp)
    # The CLI reads the same file.
    assert cli_main(["decompress", str(out / r["wl"]["file"]), "-o", str(out / "restored.npz")]) == 0
    with np.load(out / "restored.npz") as npz:
        for k, v in restored.state_dict().items():
            np.testing.assert_array_equal(npz[k], v.numpy())


def test_reported_layer_statistics_match_the_file(quick_run):
    out, r = quick_run
    path = out / r["wl"]["file"]
    assert r["wl"]["bytes"] == path.stat().st_size
    fc0 = r["fc0"]
    with weightless.open_container(path) as c:
        entry = c.entry("fc1.weight")
        layer = c.encoded_layer("fc1.weight")
        assert [t["name"] for t in r["wl"]["tensors"]] == c.names
    assert entry.kind == "encoded" and entry.nbytes == fc0["bytes"]
    assert (entry.kept, entry.false_positives, entry.cell_bits, entry.clusters) == \
        (fc0["kept"], fc0["false_positives"], fc0["cell_bits"], fc0["clusters"])
    decoded = layer.decode()
    assert np.count_nonzero(decoded) == fc0["kept"] + fc0["false_positives"]
    assert fc0["density"] == pytest.approx(fc0["kept"] / decoded.size)
    assert fc0["dense_bytes"] == 4 * decoded.size
    assert fc0["compression"] == pytest.approx(fc0["dense_bytes"] / fc0["bytes"])
    assert fc0["compression_dc"] == pytest.approx(fc0["dense_bytes"] / fc0["dc_bytes"])
    assert fc0["compression_csr_zstd"] == pytest.approx(fc0["dense_bytes"] / fc0["csr_zstd_bytes"])
    assert fc0["dc_bytes"] <= fc0["dc_bytes_5bit_index"]  # the best index width is at least as good as 5 bits
    # The false positives are what a filter with t bits per cell gives, within a few standard deviations.
    zeros = decoded.size - fc0["kept"]
    p = fc0["clusters"] / 2 ** fc0["cell_bits"]
    assert abs(fc0["false_positives"] - zeros * p) < 6 * math.sqrt(zeros * p * (1 - p)) + 1
    assert r["layers"][0] == fc0


def test_t_sweep_and_frontier_are_complete_and_consistent(quick_run):
    _, r = quick_run
    k = r["fc0"]["clusters"]
    sweep = r["t_sweep"]
    rb = value_bits_for(k)
    assert [row["cell_bits"] for row in sweep] == list(range(rb + 1, rb + 9))
    fps = [row["false_positives"] for row in sweep]
    sizes = [row["bytes"] for row in sweep]
    assert all(a > b for a, b in zip(fps, fps[1:]))  # each bit of t about halves the false positives
    assert fps[0] / max(fps[-1], 1) > 2 ** 5
    assert all(a < b for a, b in zip(sizes, sizes[1:]))  # and costs m bits
    for row in sweep:
        assert 0 < row["accuracy_before_retraining"] <= 1 and 0 < row["accuracy_after_retraining"] <= 1
    # Retraining the later layers recovers most of what the false positives of a small t cost.
    assert sweep[0]["accuracy_after_retraining"] > sweep[0]["accuracy_before_retraining"]
    methods = {p["method"] for p in r["frontier"]}
    assert methods == {"weightless", "dc", "csr_zstd"}
    for p in r["frontier"]:
        assert p["bytes"] > 0 and 0 < p["accuracy"] <= 1
