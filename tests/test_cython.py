"""Cython against the installed package: weightless/c_api.pxd declares the C API (the header and
library the package ships), and tests/cython/wl_reader.pyx, cythonized and built here as a user
would (without rebuilding the package), decodes every golden file to the bytes Python decodes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import requires

import weightless
from weightless import _native

HERE = Path(__file__).resolve().parent
# v1_basic.wl is a legacy version 1 file, which only the Python package reads (the C API
# refuses it as unsupported: tested below).
GOLDEN = sorted(p for p in (HERE / "data").glob("*.wl") if p.name != "v1_basic.wl")
PACKAGE = Path(weightless.__file__).resolve().parent

# Builds the extension in its working directory with the options given as JSON in argv[1].
BUILD = textwrap.dedent("""
    import json, sys
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    opts = json.loads(sys.argv[1])
    ext = Extension("wl_reader", ["wl_reader.pyx"], include_dirs=[opts["include"]],
                    library_dirs=opts["library_dirs"], runtime_library_dirs=opts["library_dirs"],
                    libraries=opts["libraries"])
    setup(name="wl_reader", ext_modules=cythonize([ext], include_path=[opts["pxd_path"]], quiet=True),
          script_args=["build_ext", "--inplace", "--build-temp", "build"])
""")


@pytest.fixture(scope="module")
def wl_reader(tmp_path_factory):
    """tests/cython/wl_reader.pyx built against this weightless (its include and library dirs)."""
    work = tmp_path_factory.mktemp("cython")
    shutil.copy(HERE / "cython" / "wl_reader.pyx", work)
    opts = {"include": _native.get_include(), "library_dirs": _native.get_library_dirs(),
            "libraries": _native.get_libraries(),
            # Where `cimport weightless.c_api` finds the .pxd: the directory holding this package
            # (an editable install is not on sys.path, where Cython looks by default).
            "pxd_path": str(PACKAGE.parent)}
    done = subprocess.run([sys.executable, "-c", BUILD, json.dumps(opts)], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    built = [p for p in work.glob("wl_reader*") if p.suffix in (".so", ".pyd")]
    assert len(built) == 1, sorted(p.name for p in work.iterdir())
    spec = importlib.util.spec_from_file_location("wl_reader", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_ships_the_header_and_the_library():
    assert (Path(_native.get_include()) / "weightless_c.h").is_file()
    libraries = [p for d in _native.get_library_dirs() for p in Path(d).glob("libweightless_c.*")]
    assert libraries, f"no libweightless_c in {_native.get_library_dirs()}"
    assert (PACKAGE / "c_api.pxd").is_file()


def test_pxd_declares_every_function_and_constant_of_the_header():
    header = (Path(_native.get_include()) / "weightless_c.h").read_text()
    header = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    pxd = (PACKAGE / "c_api.pxd").read_text()
    pxd = "\n".join(line.split("#")[0] for line in pxd.splitlines())
    functions = set(re.findall(r"\b(wl_\w+)\s*\(", header))
    constants = set(re.findall(r"\b(WL_[A-Z_]+)\s*=", header))
    assert len(functions) == 18 and len(constants) == 10
    assert functions == set(re.findall(r"\b(wl_\w+)\s*\(", pxd))
    assert constants <= set(re.findall(r"^\s+(WL_[A-Z_]+)\s*$", pxd, flags=re.M))
    assert 'cdef extern from "weightless_c.h" nogil:' in pxd


@requires("Cython", "setuptools")
@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_files_decode_to_the_bytes_python_decodes(wl_reader, path):
    expected = weightless.decompress(path)
    assert expected
    for source in (path, str(path), path.read_bytes()):
        reader = wl_reader.Reader(source)
        assert reader.names() == list(expected)
        for i, (name, want) in enumerate(expected.items()):
            got = reader.decode(i, threads=1 + i % 2)
            assert (got.dtype, got.shape) == (want.dtype, want.shape), name
            assert got.tobytes() == want.tobytes(), name
        every = reader.decode_all()
        assert list(every) == list(expected)
        for name, want in expected.items():
            assert (every[name].dtype, every[name].shape, every[name].tobytes()) == \
                (want.dtype, want.shape, want.tobytes()), name


@requires("Cython", "setuptools")
def test_errors_are_exceptions_with_the_c_api_message(wl_reader, tmp_path):
    missing = tmp_path / "no_such_file.wl"
    with pytest.raises(wl_reader.WlError) as info:
        wl_reader.Reader(missing)
    assert (info.value.status, info.value.status_name) == (2, "I/O error")  # WL_ERR_IO
    assert str(missing) in str(info.value)

    data = bytearray((HERE / "data" / "basic.wl").read_bytes())
    data[len(data) - 40] ^= 0xFF  # in the directory or metadata: their CRC-32 fails at open
    corrupt = tmp_path / "corrupt.wl"
    corrupt.write_bytes(bytes(data))
    for source in (corrupt, bytes(data), bytes(data[:20]), b""):
        with pytest.raises(wl_reader.WlError) as info:
            wl_reader.Reader(source)
        assert info.value.status_name == "format error", str(info.value)
        assert str(info.value), "no message"
    with pytest.raises(ValueError, match="not a .wl file|malformed|CRC|corrupt"):
        weightless.decompress(corrupt)  # the Python reader rejects it too

    with pytest.raises(wl_reader.WlError) as info:
        wl_reader.Reader(HERE / "data" / "v1_basic.wl")
    assert info.value.status_name == "unsupported" and "version 1" in str(info.value)

    reader = wl_reader.Reader(HERE / "data" / "basic.wl")
    with pytest.raises(IndexError):
        reader.decode(len(reader))
    assert np.array_equal(reader.decode(0), weightless.decompress(HERE / "data" / "basic.wl")[reader.names()[0]])
