"""What the tests share: hypothesis profiles, markers for optional extras, the C++ build.

Hypothesis runs on one of three profiles, chosen by HYPOTHESIS_PROFILE, else "ci" when the CI
environment variable is set (as .ci/run runs) and "dev" otherwise:
- ci: derandomized (the same examples on every run, so a red CI is reproducible and a green one
  does not turn red by luck), a fixed budget, no deadline (the machines are shared and noisy),
  no example database;
- dev: random examples with the same budget, the failures kept in .hypothesis/ and replayed
  first; every failure a run finds becomes an @example on its test;
- long: a large budget, for a fuzzing session by hand.

An optional extra's tests skip with a reason naming the extra when its package is missing
(`requires`, `require_module`, or importorskip with a "pip install" reason), so the core's tests
run with numpy alone. WEIGHTLESS_REQUIRE_EXTRAS=1 (set by .ci/run for the full run) fails the run
if any test skipped for a missing package, so a broken install cannot pass as skipped tests.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the numpy-only run: tests that need hypothesis skip (requires("hypothesis"))
    pass
else:
    _common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    settings.register_profile("ci", max_examples=150, derandomize=True, database=None, print_blob=True, **_common)
    settings.register_profile("dev", max_examples=150, **_common)
    settings.register_profile("long", max_examples=20_000, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


#: Optional packages the tests use -> the extra of pyproject.toml that installs them.
EXTRAS = {
    "safetensors": "cli",
    "zstandard": "cli",
    "tqdm": "cli",
    "pureml": "demo",
    "zarr": "demo",
    "torch": "torch",
    "matplotlib": "repro",
    "hypothesis": "test",
    "ml_dtypes": "cli",
    "pytest_benchmark": "test",
    "distributed": "test",
    "Cython": "test",
    "setuptools": "test",
}


def _require_extras() -> bool:
    return os.environ.get("WEIGHTLESS_REQUIRE_EXTRAS", "") not in ("", "0")


_skipped_for_extras: list[str] = []


def _is_missing_package(reason: str) -> bool:
    return "pip install" in reason or "could not import" in reason


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple) and _is_missing_package(str(report.longrepr[2])):
        _skipped_for_extras.append(f"{report.nodeid}: {report.longrepr[2]}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple) and _is_missing_package(str(report.longrepr[2])):
        _skipped_for_extras.append(f"{report.nodeid}: {report.longrepr[2]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _require_extras() and _skipped_for_extras:
        print(f"\nWEIGHTLESS_REQUIRE_EXTRAS is set, but {len(_skipped_for_extras)} test(s) skipped for a missing "
              "package:\n  " + "\n  ".join(_skipped_for_extras))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def missing(*modules: str) -> list[str]:
    """The modules among these that cannot be imported."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _reason(modules: list[str]) -> str:
    extras = sorted({EXTRAS.get(m, "test") for m in modules})
    return f"needs {', '.join(modules)}: pip install -e '.[{','.join(extras)}]'"


def requires(*modules: str) -> pytest.MarkDecorator:
    """Mark a test (or a pytest.param) as needing optional packages: skipped, naming the extra to
    install, when one is missing."""
    absent = missing(*modules)
    return pytest.mark.skipif(bool(absent), reason=_reason(absent))


def require_module(*modules: str) -> None:
    """At the top of a test module whose every test needs these packages."""
    absent = missing(*modules)
    if absent:
        pytest.skip(_reason(absent), allow_module_level=True)


# --------------------------------------------------------------------------- the C++ build


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    """A CMake build of the C++ tests and wl-decode, shared by every test that needs them.

    Kept in build/pytest of the checkout and built incrementally, so the first run pays the
    compile and later runs only what changed; each ctest run still runs every C++ test.
    """
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("needs cmake: pip install -e '.[test]'")
    build = ROOT / "build" / "pytest"
    if not (build / "CMakeCache.txt").exists():
        configure = [cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DWL_BUILD_PYTHON=OFF",
                     "-DWL_BUILD_TESTS=ON", "-DWL_BUILD_TOOLS=OFF", "-DWL_STATIC_TOOLS=OFF"]
        done = subprocess.run(configure, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    done = subprocess.run([cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 2)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return build
