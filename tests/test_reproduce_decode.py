"""Smoke test of bench/reproduce_decode.py: the quick run, in process, with the numpy reference checked."""

import importlib.util
import os
import sys
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "reproduce_decode.py"
_SPEC = importlib.util.spec_from_file_location("reproduce_decode", _SCRIPT)
reproduce_decode = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = reproduce_decode  # dataclasses look their module up there
_SPEC.loader.exec_module(reproduce_decode)


def test_quick_run_matches_numpy_reference(tmp_path, capsys):
    before = os.environ.get("WEIGHTLESS_ISA")
    report = reproduce_decode.main(["--quick", "--json", str(tmp_path / "out.json")])
    assert os.environ.get("WEIGHTLESS_ISA") == before  # the script restores it
    results = report["results"]
    assert len(results) == 4 and {r["model"] for r in results} == {"LeNet-300-100", "LeNet-5"}
    for r in results:
        assert r["numpy_matched"] and r["numpy_checked"] == "all positions"
        assert r["numpy_seconds"] is not None and r["numpy_seconds"] > 0
        assert len(r["timings"]) == len(report["isas"]) * len({1, os.cpu_count() or 1})
        assert all(t["seconds"] > 0 for t in r["timings"])
        assert r["space_factor"] > 1.0 and r["bits_per_kept"] > r["cell_bits"]
    assert (tmp_path / "out.json").stat().st_size > 0
    assert "| LeNet-5 FC-0 800x500 | 8% |" in capsys.readouterr().out
