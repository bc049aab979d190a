"""Build the C++ core with CMake (the pybind11 cmake_example pattern).

CMakeLists.txt is the single source of truth for the C++ build; this file only
tells setuptools to run it, which targets the package ships and where they go:
`weightless._core`, and for C/Cython code built against the installed package
(weightless/c_api.pxd) the C API as weightless/lib/libweightless_c.so with its
header in weightless/include/.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: str = "") -> None:
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


#: What the build writes beside weightless._core, relative to its package directory.
SHIPPED = ["lib/libweightless_c" + (".dylib" if sys.platform == "darwin" else ".so"), "include/weightless_c.h"]


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
            "-DWL_BUILD_SHARED_C=ON",
            f"-DWL_C_LIBRARY_DIR={extdir / 'lib'}",
        ]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
        # Only what the package ships (not wl-decode, which CMake always configures).
        targets = ["--target", "_core", "weightless_c_shared"]
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs, *targets], cwd=build_temp, check=True)
        include = extdir / "include"
        include.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(ext.sourcedir) / "csrc" / "weightless_c.h", include / "weightless_c.h")

    def copy_extensions_to_source(self) -> None:
        # Editable installs build in a temporary directory and copy back only the extension
        # modules: copy the C API's library and header too.
        super().copy_extensions_to_source()
        for ext in self.extensions:
            built = (Path(self.build_lib) / self.get_ext_filename(self.get_ext_fullname(ext.name))).parent
            inplace = Path(self.get_ext_fullpath(ext.name)).parent
            for relative in SHIPPED:
                (inplace / relative).parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(built / relative), str(inplace / relative))


setup(
    ext_modules=[CMakeExtension("weightless._core")],
    cmdclass={"build_ext": CMakeBuild},
)
