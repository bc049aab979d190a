"""Where the C API lives in the installed package, for C and Cython code built against it.

Like numpy.get_include(): an extension that cimports weightless.c_api (or includes
weightless_c.h; cythonize(..., include_path=[weightless.get_cython_include()])) compiles with
get_include() and links libweightless_c, a shared library of the C
API with the core linked in, that the package ships in get_library_dirs():

    Extension("reader", ["reader.pyx"],
              include_dirs=[weightless.get_include()],
              library_dirs=weightless.get_library_dirs(),
              runtime_library_dirs=weightless.get_library_dirs(),  # finds it at run time (RPATH)
              libraries=weightless.get_libraries())

runtime_library_dirs records the absolute directory of this installation; an extension shipped
elsewhere must bring its own copy of the library or set its own RPATH.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def get_include() -> str:
    """The directory holding weightless_c.h."""
    return str(_PACKAGE / "include")


def get_library_dirs() -> list[str]:
    """The directories holding libweightless_c (for library_dirs and runtime_library_dirs)."""
    return [str(_PACKAGE / "lib")]


def get_cython_include() -> str:
    """The directory to put on Cython's include_path so `cimport weightless.c_api` finds the .pxd
    (needed for an editable install, which Cython's search of sys.path does not see)."""
    return str(_PACKAGE.parent)


def get_libraries() -> list[str]:
    """The libraries to link (for libraries=): the C API with the core linked in."""
    return ["weightless_c"]
