"""Builds the C++ tests with CMake and runs them with ctest, so one pytest run covers both."""

import os
import shutil
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def test_cpp_core_tests_pass(tmp_path_factory):
    cmake = shutil.which("cmake")
    ctest = shutil.which("ctest")
    assert cmake and ctest, "cmake/ctest not found: install the test extras (pip install -e '.[test]')"
    build = tmp_path_factory.mktemp("cpp-build")
    jobs = str(os.cpu_count() or 2)
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build), "-DWL_BUILD_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True)
    built = subprocess.run([cmake, "--build", str(build), "--parallel", jobs], capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    ran = subprocess.run([ctest, "--output-on-failure"], cwd=build, capture_output=True, text=True)
    print(ran.stdout)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert "100% tests passed" in ran.stdout
