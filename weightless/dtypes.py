"""Tensor dtypes by name, bfloat16 included.

numpy has no bfloat16, the dtype of most current checkpoints; the ml_dtypes package adds one
(`ml_dtypes.bfloat16`, which safetensors and JAX use too). It is imported only when a bfloat16
tensor has to become a numpy array, so the core keeps numpy as its one dependency; sizes and
names need no import.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ITEMSIZE", "BFLOAT16_HINT", "bfloat16", "numpy_dtype", "is_bfloat16"]

#: Bytes per element of every dtype a tensor may have, by numpy name.
ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
            "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}

BFLOAT16_HINT = "bfloat16 tensors need the ml_dtypes package: pip install ml_dtypes (or 'weightless[cli]')"


def bfloat16() -> np.dtype:
    """numpy's bfloat16 dtype from ml_dtypes; ImportError naming the package if it is missing."""
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(BFLOAT16_HINT) from None
    return np.dtype(ml_dtypes.bfloat16)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a dtype name ("float32", "bfloat16", ...)."""
    return bfloat16() if name == "bfloat16" else np.dtype(name)


def is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16" and dtype.itemsize == 2
