"""Runs the C++ tests (tests/cpp, the fuzz replays, wl-decode's smoke tests) with ctest, so one
pytest run covers both languages. The build is the session's shared one (conftest.cpp_build)."""

import shutil
import subprocess


def test_cpp_core_tests_pass(cpp_build):
    ctest = shutil.which("ctest")
    assert ctest, "ctest not found beside cmake"
    ran = subprocess.run([ctest, "--output-on-failure"], cwd=cpp_build, capture_output=True, text=True)
    print(ran.stdout)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "100% tests passed" in ran.stdout
