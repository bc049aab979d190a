"""The README's commands and examples, run as written (those cheap enough for a unit test).

The first block's two commands are the product's front door: the test command must be the one
.ci/run runs. The "Compress a model" commands run through the CLI on a small model, and the
Python examples are executed with the few names they leave to the reader defined first.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import requires

from weightless.cli import main
from weightless.io import save_state

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _block(language: str, containing: str) -> str:
    found = [body for lang, body in BLOCKS if lang == language and containing in body]
    assert len(found) == 1, f"expected one {language} block of the README containing {containing!r}"
    return found[0]


def _commands(body: str) -> list[str]:
    """The commands of a bash block, comments dropped."""
    return [line.split("  #")[0].strip() for line in body.splitlines() if line.strip() and not line.startswith("#")]


def test_first_block_is_install_and_run_then_the_ci_test_command():
    main_job, test_command = _commands(BLOCKS[0][1])
    assert BLOCKS[0][0] == "bash"
    assert main_job == 'pip install ".[demo]" && weightless demo'
    assert test_command == 'pip install -e ".[test]" && python3 -m pytest'
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"python3 -m {test_command}\n" in ci, "the README's test command is not the one .ci/run runs"


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    state = {"fc1.weight": rng.normal(size=(300, 784)).astype(np.float32),
             "fc1.bias": rng.normal(size=300).astype(np.float32),
             "fc2.weight": rng.normal(size=(10, 300)).astype(np.float32)}
    save_state(state, tmp_path / "model.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path, state


@requires("safetensors", "zstandard")
def test_compress_a_model_commands(model_dir, capsys):
    directory, state = model_dir
    save_state(state, directory / "model.safetensors")
    commands = _commands(_block("bash", "weightless compress"))
    assert [c.split()[1] for c in commands] == ["compress", "inspect", "decompress"]
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "weightless"
        code = main(argv[1:])
        out, err = capsys.readouterr()
        assert code == 0, f"{command}: {err}"
        assert "error" not in err, f"{command}: {err}"
    assert (directory / "restored.npz").exists()


def test_compress_a_model_python(model_dir):
    _, state = model_dir
    code = _block("python", "weightless.decompress(")
    exec(code, {"w": state["fc1.weight"]})


def test_filter_example():
    rng = np.random.default_rng(1)
    mask = rng.random((100, 80)) < 0.1
    names = {"mask": mask, "cluster_index": rng.integers(0, 16, size=mask.shape),
             "keys": np.arange(50, dtype=np.uint64), "codebook": np.linspace(-1, 1, 16, dtype=np.float32),
             "buf": np.empty(mask.size, np.float32)}
    exec(_block("python", "BloomierFilter("), names)
