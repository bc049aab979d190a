"""`weightless demo`, the README's main job, end to end on real MNIST (a short run); and the
experiments' place apart from the library: registered by the CLI, never imported by the library."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires

from weightless.cli import main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "weightless"


@requires("torch", "pureml", "zstandard")
def test_demo_compresses_lenet_and_reports_accuracy_from_the_file(tmp_path, capsys, monkeypatch):
    from weightless.container import open_container
    from weightless.experiments import demo

    # A short run: one epoch for each training step (the default run takes about a minute of CPU).
    for name in ("SURGERY_EPOCHS", "FIXED_EPOCHS", "RETRAIN_EPOCHS"):
        monkeypatch.setattr(demo, name, 1)
    out = tmp_path / "lenet.wl"
    assert main(["demo", "--epochs", "1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.exists() and out.stat().st_size > 0
    accuracies = re.search(r"baseline ([\d.]+)%, decompressed \.wl ([\d.]+)%", text).groups()
    baseline, final = (float(x) / 100 for x in accuracies)
    assert baseline > 0.9 and final > 0.8, text
    size, factor = re.search(r"whole model \(\.wl file\)\s+([\d,]+)\s+\(([\d.]+)x", text).groups()
    assert int(size.replace(",", "")) == out.stat().st_size and float(factor) > 50, text
    # Each weight's row names the codec and bytes the file holds, and every candidate tried.
    with open_container(out) as c:
        for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
            e = c.entry(name)
            row = re.search(rf"{re.escape(name)}\s+\S+\s+[\d.]+%\s+(exact|filter, t = \d+)\s+([\d,]+)\s+(.*)", text)
            assert row, text
            assert row.group(1) == ("exact" if e.kind == "exact" else f"filter, t = {e.cell_bits}"), row.group(0)
            assert int(row.group(2).replace(",", "")) == e.nbytes
            if name != "fc3.weight":  # fc1 and fc2 choose among the exact codec and filters at t = 6, 7, 8
                assert re.search(r"exact [\d,]+ [\d.]+%; t=6 [\d,]+", row.group(3)), row.group(0)
    # An existing output is not overwritten without --force.
    assert main(["demo", "--epochs", "1", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def _without_torch(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter in which `import torch` fails, as if it were not installed."""
    prelude = "import sys; sys.modules['torch'] = None\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)


@pytest.mark.parametrize("argv", [["demo"], ["reproduce", "--model", "lenet-300-100", "--out", "unused", "--quick"],
                                  ["record", "--model", "lenet-5", "--out", "unused"]])
def test_without_torch_the_commands_say_which_extra_in_one_line(argv):
    done = _without_torch(f"from weightless.cli import main; sys.exit(main({argv!r}))")
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"weightless {argv[0]}: error:") and "pip install 'weightless[demo]'" in done.stderr


def test_help_and_the_core_commands_need_neither_torch_nor_the_experiments(tmp_path):
    code = ("from weightless.cli import build_parser, main\n"
            "text = build_parser().format_help()\n"
            "assert 'demo' in text and 'reproduce' in text and 'record' in text, text\n"
            f"assert main(['inspect', {str(tmp_path / 'missing.wl')!r}]) == 1\n"
            "loaded = [m for m, v in sys.modules.items() if v is not None]\n"
            "print(sorted(m for m in loaded if m.startswith(('weightless.experiments.', 'torch'))))")
    done = _without_torch(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # only weightless.experiments itself was imported, to register


def _imports(path: Path) -> list[tuple[str, str]]:
    """(enclosing function or '<module>', imported module) for every import in a file, relative
    imports resolved against the package path."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Import):
                found.extend((where, a.name) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (child.level - 1)] if child.level else []
                module = ".".join([*base, *([child.module] if child.module else [])])
                found.extend((where, f"{module}.{a.name}" if not child.module else module) for a in child.names)
            visit(child, where)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_the_library_never_imports_the_experiments():
    # Two deliberate exceptions, both inside a function: the CLI's registration of the two
    # commands, and weightless.torch's compatibility names for the LeNets.
    allowed = {("weightless/cli.py", "build_parser"), ("weightless/torch/__init__.py", "__getattr__")}
    seen = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("weightless/experiments/"):
            continue
        for where, module in _imports(path):
            if module == "weightless.experiments" or module.startswith("weightless.experiments."):
                assert (rel, where) in allowed, f"{rel} ({where}) imports {module}"
                seen.add((rel, where))
    assert seen == allowed
    assert not (PACKAGE / "lenet.py").exists() and not (PACKAGE / "demo.py").exists()
    assert not (PACKAGE / "datasets.py").exists()


@requires("torch")
def test_weightless_torch_keeps_the_lenet_names():
    import weightless.torch as wt
    from weightless.experiments import models

    assert wt.lenet_300_100 is models.lenet_300_100 and wt.lenet_5 is models.lenet_5
    with pytest.raises(AttributeError):
        wt.no_such_name  # noqa: B018
