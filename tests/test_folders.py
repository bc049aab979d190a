"""Real checkpoints in and out: Hugging Face folders (model.safetensors, or shards with
model.safetensors.index.json, made by the safetensors library itself) and bfloat16 tensors,
through the CLI: compress takes the folder, decompress writes the same layout back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

require_module("safetensors", "ml_dtypes")

import ml_dtypes  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from weightless.cli import main  # noqa: E402
from weightless.container import open_container  # noqa: E402
from weightless.io import HF_INDEX, HF_WEIGHTS, load_state  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "model.embed.weight": rng.normal(0, 0.02, size=(64, 48)).astype(BF16),
        "model.layers.0.attn.q.weight": rng.normal(0, 0.05, size=(48, 48)).astype(BF16),
        "model.layers.0.attn.q.bias": rng.normal(0, 0.05, size=48).astype(BF16),
        "model.layers.0.norm.weight": np.ones(48, np.float32),
        "model.layers.1.mlp.up.weight": rng.normal(0, 0.05, size=(96, 48)).astype(np.float16),
        "lm_head.weight": rng.normal(0, 0.05, size=(64, 48)).astype(BF16),
    }


def _sharded(folder: Path, tensors: dict[str, np.ndarray]) -> dict[str, str]:
    """A folder as transformers' save_pretrained shards it: two files and the index."""
    folder.mkdir()
    names = list(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    weight_map = {}
    for file, members in shards.items():
        save_file({n: tensors[n] for n in members}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in members})
    total = sum(a.nbytes for a in tensors.values())
    (folder / HF_INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return weight_map


def _cli(capsys, *argv: object) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_bfloat16_safetensors_checkpoint_through_the_cli(tmp_path, capsys):
    tensors = _tensors()
    save_file(tensors, str(tmp_path / "m.safetensors"))
    _cli(capsys, "compress", tmp_path / "m.safetensors", "-o", tmp_path / "m.wl", "--sparsity", "0.9",
         "--cell-bits", "12")
    _cli(capsys, "decompress", tmp_path / "m.wl", "-o", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))  # read back by safetensors itself
    assert sorted(back) == sorted(tensors) and all(back[n].dtype == tensors[n].dtype for n in tensors)
    assert all(back[n].shape == tensors[n].shape for n in tensors)
    with open_container(tmp_path / "m.wl") as c:
        raw = [e.name for e in c.tensors if e.kind == "raw"]
    assert raw == ["model.layers.0.attn.q.bias", "model.layers.0.norm.weight"]
    for name in raw:
        assert back[name].tobytes() == tensors[name].tobytes()  # bit for bit
    q = back["model.layers.0.attn.q.weight"].astype(np.float32)
    assert 0.08 < np.count_nonzero(q) / q.size < 0.12  # 10% kept and ~0.4% false positives


def test_sharded_folder_in_the_same_layout_out(tmp_path, capsys):
    tensors = _tensors(1)
    weight_map = _sharded(tmp_path / "ckpt", tensors)
    out = _cli(capsys, "compress", tmp_path / "ckpt", "-o", tmp_path / "ckpt.wl", "--sparsity", "0.9",
               "--layers", "*.weight", "--jobs", "2")
    assert "model.layers.1.mlp.up.weight" in out
    _cli(capsys, "decompress", tmp_path / "ckpt.wl", "-o", tmp_path / "restored")
    restored = tmp_path / "restored"
    assert sorted(p.name for p in restored.iterdir()) == sorted([*set(weight_map.values()), HF_INDEX])
    index = json.loads((restored / HF_INDEX).read_text())
    assert index["weight_map"] == dict(sorted(weight_map.items()))
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    for file in set(weight_map.values()):  # each shard holds its own tensors, as the loaders expect
        shard = load_file(str(restored / file))
        assert sorted(shard) == sorted(n for n, f in weight_map.items() if f == file)
        assert all(shard[n].dtype == tensors[n].dtype and shard[n].shape == tensors[n].shape for n in shard)
    assert load_state(restored).keys() == load_state(tmp_path / "ckpt").keys()
    # --force replaces a checkpoint folder; without it nothing is touched.
    assert main(["decompress", str(tmp_path / "ckpt.wl"), "-o", str(restored)]) == 1
    assert "exists" in capsys.readouterr().err
    _cli(capsys, "decompress", tmp_path / "ckpt.wl", "-o", restored, "--force")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_single_file_folder(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    save_file(_tensors(2), str(tmp_path / "m" / HF_WEIGHTS))
    _cli(capsys, "compress", tmp_path / "m", "-o", tmp_path / "m.wl", "--sparsity", "0.5")
    _cli(capsys, "decompress", tmp_path / "m.wl", "-o", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [HF_WEIGHTS]


@pytest.mark.parametrize("damage, message", [
    ("no weights", "no model.safetensors or model.safetensors.index.json"),
    ("bad index", "model.safetensors.index.json"),
    ("escaping shard", "not a .safetensors file of the folder"),
    ("missing tensor", "which no shard holds"),
])
def test_broken_folders_are_one_line_errors(tmp_path, capsys, damage, message):
    folder = tmp_path / "ckpt"
    weight_map = _sharded(folder, _tensors(3))
    if damage == "no weights":
        for p in folder.iterdir():
            p.unlink()
        (folder / "README.md").write_text("hi")
    elif damage == "bad index":
        (folder / HF_INDEX).write_text("{not json")
    elif damage == "escaping shard":
        (folder / HF_INDEX).write_text(json.dumps({"weight_map": {"x": "../../etc/passwd"}}))
    else:
        ghost = {**weight_map, "ghost": next(iter(weight_map.values()))}
        (folder / HF_INDEX).write_text(json.dumps({"weight_map": ghost}))
    code = main(["compress", str(folder), "-o", str(tmp_path / "x.wl")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.wl").exists()
