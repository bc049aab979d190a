"""Build the C++ core with CMake (the pybind11 cmake_example pattern).

CMakeLists.txt is the single source of truth for the C++ build; this file only
tells setuptools to run it and where to put the resulting `weightless._core`.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: str = "") -> None:
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        ext_fullpath = Path.cwd() / self.get_ext_fullpath(ext.name)
        extdir = ext_fullpath.parent.resolve()
        cfg = "Debug" if os.environ.get("WEIGHTLESS_DEBUG") else "Release"
        import pybind11

        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            "-DWL_BUILD_PYTHON=ON",
            "-DWL_BUILD_TESTS=OFF",
            "-DWL_BUILD_TOOLS=OFF",
        ]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_temp, check=True)


setup(
    ext_modules=[CMakeExtension("weightless._core")],
    cmdclass={"build_ext": CMakeBuild},
)
