"""Tests for weightless/io.py: model files in and out."""

from __future__ import annotations

import os
import struct
import sys
import zipfile

import numpy as np
import pytest

from weightless.io import check_format, load_state, model_format, save_state, write_atomically


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.normal(size=(8, 5)).astype(np.float32),
        "fc1.bias": rng.normal(size=8).astype(np.float16),
        "steps": np.array(7, dtype=np.int64),  # a scalar
        "mask": rng.random((3, 4)) < 0.5,
        "empty": np.zeros((0, 3), dtype=np.float64),
        "u": np.arange(6, dtype=np.uint32).reshape(2, 3),
        "file": np.arange(3, dtype=np.int8),  # would clash with np.savez's own parameter
        "a/b.c": np.array([np.nan, -0.0, np.inf], dtype=np.float64),
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def _no_temp_files(directory) -> None:
    assert not [p for p in os.listdir(directory) if p.endswith(".tmp")]


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_round_trip(tmp_path, ext):
    state = _state()
    path = tmp_path / f"model{ext}"
    save_state(state, path)
    back = load_state(path)
    _same(state, back)
    if ext == ".npz":
        assert list(back) == list(state)  # npz keeps the order; safetensors sorts
    _no_temp_files(tmp_path)


def test_npz_keeps_nan_payloads(tmp_path):
    weird = np.array([0x7FC00001, 0xFFF12345], dtype=np.uint32).view(np.float32)
    save_state({"w": weird}, tmp_path / "m.npz")
    assert load_state(tmp_path / "m.npz")["w"].tobytes() == weird.tobytes()


def test_non_contiguous_input(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4).T
    save_state({"t": a}, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(load_state(tmp_path / "m.safetensors")["t"], a)


def test_formats_by_extension():
    assert model_format("a.NPZ") == "npz"
    assert model_format("x/y.safetensors") == "safetensors"
    assert model_format("m.pt") == model_format("m.pth") == "pt"
    with pytest.raises(ValueError, match=r"m\.h5: unknown model format '\.h5'"):
        model_format("m.h5")
    with pytest.raises(ValueError, match="no extension"):
        model_format("model")
    with pytest.raises(ValueError, match="decompress it first"):
        model_format("m.wl")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz: no such file"):
        load_state(tmp_path / "nope.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load_state(tmp_path / "d.npz")


def test_corrupt_npz(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match="not a valid .npz file"):
        load_state(path)
    save_state(_state(), path, overwrite=True)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"m\.npz: not a valid .npz file"):
        load_state(path)
    np.save(tmp_path / "single.npy", np.arange(3))
    os.replace(tmp_path / "single.npy", path)  # a .npy named .npz
    with pytest.raises(ValueError, match="not a zip archive"):
        load_state(path)


def test_npz_refuses_pickles_and_foreign_members(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, o=np.array([{}, 1], dtype=object))
    with pytest.raises(ValueError, match="not a valid .npz file"):
        load_state(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="'readme.txt' is not a numpy array"):
        load_state(path)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"garbage" * 5)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_state(path)


def test_safetensors_bfloat16_is_refused(tmp_path):
    header = b'{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}'
    path = tmp_path / "bf.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ValueError, match="'w' is bfloat16, which is not supported yet"):
        load_state(path)


def test_no_overwrite_without_asking(tmp_path):
    path = tmp_path / "m.npz"
    save_state({"a": np.zeros(2)}, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        save_state({"b": np.ones(2)}, path)
    assert path.read_bytes() == before
    save_state({"b": np.ones(2)}, path, overwrite=True)
    assert list(load_state(path)) == ["b"]
    _no_temp_files(tmp_path)


def test_failed_write_leaves_nothing(tmp_path):
    def boom(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out.npz", boom)
    assert os.listdir(tmp_path) == []
    # Writing refuses object arrays too (they would need pickle to read back).
    with pytest.raises(ValueError, match="'o' cannot be stored in .npz: Object arrays"):
        save_state({"o": np.array([{}], dtype=object)}, tmp_path / "o.npz")
    assert os.listdir(tmp_path) == []


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_state({"a": np.zeros(1)}, tmp_path / "no" / "m.npz")


def test_bad_state(tmp_path):
    with pytest.raises(ValueError, match="names must be strings"):
        save_state({1: np.zeros(1)}, tmp_path / "m.npz")
    with pytest.raises(TypeError, match="mapping"):
        save_state([np.zeros(1)], tmp_path / "m.npz")


def test_pt_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    path = tmp_path / "m.pt"
    path.write_bytes(b"not really")
    with pytest.raises(ImportError, match=r"reading \.pt files needs PyTorch: pip install torch"):
        load_state(path)
    with pytest.raises(ImportError, match=r"writing \.pt files needs PyTorch: pip install torch"):
        save_state({"a": np.zeros(2)}, tmp_path / "o.pth")
    with pytest.raises(ImportError, match="needs PyTorch"):
        check_format(tmp_path / "o.pt", writing=True)
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]


def test_pt_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    state = {k: v for k, v in _state().items() if k != "u"}  # torch's uint32 support varies
    path = tmp_path / "m.pt"
    save_state(state, path)
    back = load_state(path)
    assert list(back) == list(state)
    _same(state, back)
    # A checkpoint with a "state_dict" key, as training scripts write it.
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2, 2)}}, tmp_path / "ckpt.pth")
    np.testing.assert_array_equal(load_state(tmp_path / "ckpt.pth")["w"], np.ones((2, 2), np.float32))
    torch.save({"w": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "bf.pt")
    with pytest.raises(ValueError, match="bfloat16 is not supported yet|bfloat16, which is not supported yet"):
        load_state(tmp_path / "bf.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a loadable PyTorch file"):
        load_state(tmp_path / "junk.pt")
