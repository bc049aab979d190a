"""Tests for the `weightless` command line (weightless/cli.py)."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import missing, requires

from weightless.baselines import csr_zstd_nbytes, deep_compression_nbytes
from weightless.cli import main
from weightless.clustered import prune_and_cluster
from weightless.container import compress, decompress
from weightless.io import load_state, save_state

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def model(tmp_path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "model.npz"
    save_state({
        "fc1.weight": rng.normal(size=(64, 48)).astype(np.float32),
        "fc1.bias": rng.normal(size=64).astype(np.float32),
        "fc2.weight": rng.normal(size=(10, 64)).astype(np.float32),
        "steps": np.array(3, dtype=np.int64),
    }, path)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_failed(result: tuple[int, str, str], command: str, message: str) -> None:
    code, out, err = result
    assert code == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"weightless {command}: error: "), err
    assert message in lines[0], err


def assert_usage_error(result: tuple[int, str, str], command: str, message: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"weightless {command}: error: ") and message in err, err


def assert_clean(directory: pathlib.Path) -> None:
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


# --------------------------------------------------------------------------- success


def test_compress_inspect_decompress(tmp_path, model, capsys):
    before = digest(model)
    wl = tmp_path / "model.wl"
    code, out, err = run(capsys, "compress", model, "-o", wl, "--sparsity", "0.9", "--cell-bits", "8",
                         "--layers", "fc1.weight", "fc2.weight")
    assert code == 0, err
    assert "fc1.weight" in out and "64x48" in out and "10.00%" in out and "total:" in out
    assert digest(model) == before

    code, out, _ = run(capsys, "inspect", wl)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:5]] == ["fc1.weight", "fc1.bias", "fc2.weight", "steps"]

    for ext in [".npz"] + ([] if missing("safetensors") else [".safetensors"]):
        out_path = tmp_path / f"restored{ext}"
        code, out, err = run(capsys, "decompress", wl, "-o", out_path)
        assert code == 0, err
        restored, expected = load_state(out_path), decompress(wl)
        assert set(restored) == set(expected)
        for name in expected:
            assert restored[name].dtype == expected[name].dtype
            assert restored[name].tobytes() == expected[name].tobytes()
    assert_clean(tmp_path)


def test_compress_json_and_default_options(tmp_path, model, capsys):
    code, out, _ = run(capsys, "compress", model, "-o", tmp_path / "m.wl", "--json")
    assert code == 0
    report = json.loads(out)
    assert [layer["name"] for layer in report["layers"] if layer["kind"] != "raw"] == ["fc1.weight"]
    assert report["total"]["file_bytes"] == os.path.getsize(tmp_path / "m.wl")
    # Only the options given are recorded as the command's; each layer records all it used.
    assert report["layers"][0]["options"]["clusters"] == 16


@requires("zstandard")
def test_inspect_json_and_baselines(tmp_path, model, capsys):
    wl = tmp_path / "m.wl"
    compress(model, wl, layers=["fc1.weight"], sparsity=0.9, cell_bits=8, baselines=True, codec="bloomier")
    before = digest(wl)
    code, out, _ = run(capsys, "inspect", wl, "--json", "--baselines")
    assert code == 0
    info = json.loads(out)
    assert set(info) >= {"layers", "total"}
    first = info["layers"][0]
    assert first["name"] == "fc1.weight" and first["shape"] == [64, 48] and first["kind"] == "encoded"
    assert first["density"] == pytest.approx(0.1, abs=1e-3)
    assert first["compression_vs_input"] == pytest.approx(4 * 64 * 48 / first["nbytes"])
    # Sized on the kept weights and codes, not on the decoded tensor with its false positives.
    clustered = prune_and_cluster(load_state(model)["fc1.weight"], sparsity=0.9, clusters=16)
    k = len(clustered.codebook)
    assert first["baselines"] == {
        "deep_compression": deep_compression_nbytes(clustered.positions, clustered.codes, k, (64, 48),
                                                    index_bits=5)["total"],
        "csr_zstd": csr_zstd_nbytes(clustered.positions, clustered.codes, k, (64, 48))["total"]}
    assert "baselines" not in info["layers"][1]  # raw tensors have none
    assert info["total"]["file_bytes"] == os.path.getsize(wl)

    code, out, _ = run(capsys, "inspect", wl, "--baselines")
    assert code == 0 and "CSR+zstd" in out and "false positives excluded" in out
    assert f"{first['baselines']['deep_compression']:,}" in out
    assert digest(wl) == before


def test_errors_are_measured_and_reported(tmp_path, model, capsys):
    wl = tmp_path / "m.wl"
    code, out, err = run(capsys, "compress", model, "-o", wl, "--layers", "fc1.weight", "--sparsity", "0.9",
                         "--cell-bits", "8", "--json", "--codec", "bloomier")
    assert code == 0, err
    [layer] = [e for e in json.loads(out)["layers"] if e["kind"] == "encoded"]
    w = load_state(model)["fc1.weight"].astype(np.float64)
    clustered = prune_and_cluster(w, sparsity=0.9, clusters=16).dense().astype(np.float64)
    decoded = decompress(wl)["fc1.weight"].astype(np.float64)
    assert layer["relative_error"] == pytest.approx(np.linalg.norm(decoded - w) / np.linalg.norm(w), rel=1e-9)
    assert layer["relative_error_clustered"] == pytest.approx(
        np.linalg.norm(decoded - clustered) / np.linalg.norm(clustered), rel=1e-9)
    assert layer["relative_error_clustered"] > 0  # the false positives
    code, out, _ = run(capsys, "inspect", wl)
    assert code == 0 and "rel. error" in out.splitlines()[0]
    assert f"{layer['relative_error']:.3g}" in out


def test_a_filter_larger_than_deep_compression_is_warned_about(tmp_path, model, capsys):
    # 16 clusters at t = 12 on a small dense-ish layer: the filter is the larger encoding.
    code, _, err = run(capsys, "compress", model, "-o", tmp_path / "m.wl", "--layers", "fc1.weight",
                       "--sparsity", "0.5", "--cell-bits", "12", "--codec", "bloomier")
    assert code == 0
    assert "warning: layer fc1.weight: the filter (" in err and "larger than Deep Compression style" in err


def test_force_overwrites(tmp_path, model, capsys):
    wl = tmp_path / "m.wl"
    assert run(capsys, "compress", model, "-o", wl)[0] == 0
    before = digest(wl)
    assert_failed(run(capsys, "compress", model, "-o", wl, "--clusters", "4"), "compress", "use --force")
    assert digest(wl) == before
    assert run(capsys, "compress", model, "-o", wl, "--clusters", "4", "--force")[0] == 0
    assert digest(wl) != before

    out = tmp_path / "r.npz"
    assert run(capsys, "decompress", wl, "-o", out)[0] == 0
    assert_failed(run(capsys, "decompress", wl, "-o", out), "decompress", "use --force")
    assert run(capsys, "decompress", wl, "-o", out, "--force")[0] == 0
    assert_clean(tmp_path)


# --------------------------------------------------------------------------- failures


def test_input_problems(tmp_path, model, capsys):
    wl = tmp_path / "m.wl"
    compress(model, wl)
    data = wl.read_bytes()
    (tmp_path / "cut.wl").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.wl").write_bytes(bytes(flipped))
    (tmp_path / "noise.wl").write_bytes(os.urandom(64))
    hashes = {p: digest(p) for p in tmp_path.iterdir()}

    assert_failed(run(capsys, "compress", tmp_path / "nope.npz", "-o", tmp_path / "x.wl"), "compress", "no such file")
    assert_failed(run(capsys, "compress", tmp_path / "flip.wl", "-o", tmp_path / "x.wl"), "compress",
                  "decompress it first")
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "x.npz"), "compress", "must end in .wl")
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--layers", "fc9.weight"), "compress",
                  "no tensor named 'fc9.weight'; the model has: 'fc1.weight'")
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--layers", "steps"), "compress",
                  "only floating tensors")
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--sparsity", "1.5"), "compress",
                  "--sparsity 1.5: must be in [0, 1)")
    assert_failed(run(capsys, "decompress", tmp_path / "nope.wl", "-o", tmp_path / "x.npz"), "decompress",
                  "no such file")
    x = tmp_path / "x.npz"
    assert_failed(run(capsys, "decompress", model, "-o", x), "decompress", "not a weightless model file")
    assert_failed(run(capsys, "decompress", tmp_path / "cut.wl", "-o", x), "decompress", "malformed .wl file")
    assert_failed(run(capsys, "decompress", tmp_path / "flip.wl", "-o", x), "decompress", "checksum mismatch")
    assert_failed(run(capsys, "decompress", wl, "-o", tmp_path / "x.h5"), "decompress", "unknown model format '.h5'")
    assert_failed(run(capsys, "decompress", wl, "-o", tmp_path / "no" / "x.npz"), "decompress", "does not exist")
    assert_failed(run(capsys, "inspect", tmp_path / "noise.wl"), "inspect", "malformed .wl file")
    assert_failed(run(capsys, "inspect", tmp_path), "inspect", "is a directory")

    assert {p: digest(p) for p in tmp_path.iterdir()} == hashes  # nothing written, nothing changed
    assert_clean(tmp_path)


@requires("safetensors")
def test_nan_weights(tmp_path, capsys):
    w = np.ones((40, 40), np.float32)
    w[5, 5] = np.nan
    save_state({"w": w}, tmp_path / "nan.safetensors")
    assert_failed(run(capsys, "compress", tmp_path / "nan.safetensors", "-o", tmp_path / "x.wl"), "compress",
                  "tensor 'w': weights contain NaN")
    assert sorted(os.listdir(tmp_path)) == ["nan.safetensors"]


def test_output_is_input(tmp_path, model, capsys):
    wl = tmp_path / "m.wl"
    compress(model, wl)
    before = digest(wl)
    assert_failed(run(capsys, "decompress", wl, "-o", wl, "--force"), "decompress", "is the input file")
    assert_failed(run(capsys, "compress", model, "-o", model, "--force"), "compress", "is the input file")
    assert digest(wl) == before


def test_usage_errors_are_one_line_with_code_2(tmp_path, model, capsys):
    assert_usage_error(run(capsys, "compress", model), "compress", "required: -o/--output")
    assert_usage_error(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--cell-bits", "8", "--fp-rate", "0.1"),
                       "compress", "not allowed with argument")
    assert_usage_error(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--clusters", "many"), "compress",
                       "invalid int value")
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and err.startswith("weightless: error:") and len(err.splitlines()) == 1


def test_bare_command_prints_usage(capsys):
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    assert err.startswith("usage: weightless") and "compress" in err and "decompress" in err


def test_degenerate_settings_are_refused_naming_the_flag(tmp_path, model, capsys):
    x = tmp_path / "x.wl"
    assert_failed(run(capsys, "compress", model, "-o", x, "--sparsity", "1.0"), "compress",
                  "--sparsity 1: must be in [0, 1) (1 prunes every weight)")
    assert_failed(run(capsys, "compress", model, "-o", x, "--sparsity", "0.9", "--clusters", "2", "--cell-bits", "1"),
                  "compress", "--cell-bits 1 with 2 clusters: 100% of the pruned weights would read back as nonzero")
    assert_failed(run(capsys, "compress", model, "-o", x, "--sparsity", "0.9", "--clusters", "16", "--cell-bits", "5"),
                  "compress", "--cell-bits 5 with 16 clusters: 50% of the pruned weights")
    assert_failed(run(capsys, "compress", model, "-o", x, "--sparsity", "0.9", "--fp-rate", "0.7"), "compress",
                  "--fp-rate 0.7 with 16 clusters")
    assert_failed(run(capsys, "compress", model, "-o", x, "--threshold", "-1"), "compress", "--threshold -1")
    assert_failed(run(capsys, "compress", model, "-o", x, "--clusters", "0"), "compress", "--clusters 0")
    assert not x.exists()


def test_doubtful_settings_are_warned_about(tmp_path, model, capsys):
    def warnings_of(*argv: object) -> list[str]:
        code, _, err = run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--force", *argv)
        assert code == 0, err
        return [line for line in err.splitlines() if line.startswith("weightless compress: warning: ")
                and "larger than Deep Compression" not in line]  # tested on its own below

    assert warnings_of("--sparsity", "0.9") == []
    assert warnings_of("--sparsity", "0.9", "--cell-bits", "6") == [
        "weightless compress: warning: --cell-bits 6 with 16 clusters: about 25% of the pruned weights will read "
        "back as nonzero (--cell-bits 10 gives 1/64)"]
    [no_pruning] = warnings_of()
    assert "neither --sparsity nor --threshold given: nothing is pruned" in no_pruning
    [zero] = warnings_of("--sparsity", "0")
    assert "--sparsity 0 prunes nothing" in zero
    assert any("layer fc1.weight: every weight was pruned" in w for w in warnings_of("--threshold", "1e9"))


def test_layers_may_repeat_and_be_glob_patterns(tmp_path, model, capsys):
    def encoded(*argv: object) -> list[str]:
        code, out, err = run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--force", "--sparsity", "0.5",
                             "--json", *argv)
        assert code == 0, err
        return [e["name"] for e in json.loads(out)["layers"] if e["kind"] != "raw"]

    assert encoded("--layers", "fc1.weight", "--layers", "fc2.weight") == ["fc1.weight", "fc2.weight"]
    assert encoded("--layers", "fc*.weight") == ["fc1.weight", "fc2.weight"]
    assert encoded("--layers", "fc?.bias", "fc2.*") == ["fc1.bias", "fc2.weight"]
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "y.wl", "--layers", "conv*"), "compress",
                  "no tensor matches 'conv*'")
    assert_failed(run(capsys, "compress", model, "-o", tmp_path / "y.wl", "--layers", "fc*", "fc1.weight"),
                  "compress", "layer 'fc1.weight' is named twice")


def test_ratios_are_against_the_input_dtype(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for dtype in (np.float16, np.float64):
        src = tmp_path / f"{np.dtype(dtype).name}.npz"
        save_state({"w": rng.normal(size=(64, 64)).astype(dtype)}, src)
        code, out, err = run(capsys, "compress", src, "-o", tmp_path / f"{src.stem}.wl", "--sparsity", "0.9",
                             "--json")
        assert code == 0, err
        [layer] = json.loads(out)["layers"]
        assert layer["compression_vs_input"] == pytest.approx(64 * 64 * np.dtype(dtype).itemsize / layer["nbytes"])


def test_inputs_are_checked_before_outputs(tmp_path, model, capsys):
    existing = tmp_path / "exists.wl"
    compress(model, existing)
    assert_failed(run(capsys, "compress", tmp_path / "nope.npz", "-o", existing), "compress", "nope.npz: no such file")
    assert_failed(run(capsys, "compress", tmp_path, "-o", existing), "compress", "is a directory, not a model file")
    assert_failed(run(capsys, "decompress", tmp_path / "nope.wl", "-o", model), "decompress", "no such file")


def test_closed_pipe_exits_quietly(tmp_path):
    # More than a pipe's buffer of output, so the writer meets the closed pipe for certain.
    src = tmp_path / "many.npz"
    save_state({f"t{i}": np.array([i], np.int32) for i in range(3000)}, src)
    compress(src, tmp_path / "many.wl")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(f"'{sys.executable}' -m weightless inspect '{tmp_path / 'many.wl'}' | head -n 1", shell=True,
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert done.stdout.startswith("tensor")
    assert done.stderr == ""


def test_python_dash_m(tmp_path, model):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "weightless", "--version"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO)
    assert done.returncode == 0 and done.stdout.startswith("weightless ")


def test_demo_is_still_wired():
    from weightless.cli import build_parser

    args = build_parser().parse_args(["demo", "--epochs", "1"])
    assert args.command == "demo" and args.epochs == 1


def test_as_a_subprocess(tmp_path, model):
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, whatever is installed
    cmd = [sys.executable, "-m", "weightless.cli"]
    ok = subprocess.run(cmd + ["compress", str(model), "-o", str(tmp_path / "m.wl")], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "total:" in ok.stdout
    bad = subprocess.run(cmd + ["inspect", str(model)], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("weightless inspect: error:") and "Traceback" not in bad.stderr
    assert len(bad.stderr.splitlines()) == 1


def test_compress_arity_option_reaches_the_filter(tmp_path, capsys, model):
    out = tmp_path / "model.wl"
    code, _, err = run(capsys, "compress", model, "-o", out, "--sparsity", "0.9", "--cell-bits", "8", "--arity", "4",
                       "--codec", "bloomier")
    assert code == 0, err
    from weightless.container import open_container

    with open_container(out) as c:
        assert c.encoded_layer("fc1.weight").filter.arity == 4
    assert_usage_error(run(capsys, "compress", model, "-o", tmp_path / "x.wl", "--arity", "5"), "compress", "arity")
