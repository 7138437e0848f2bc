"""Unpickling of files that hold only numpy arrays and plain containers: a data or weight file
must never run code."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

try:  # numpy ≥ 2 moved the pickled array constructor
    from numpy._core.multiarray import _reconstruct as np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as np_reconstruct

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np_reconstruct,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed here")
        return _ALLOWED[module, name]


def load_numpy_pickle(data: bytes, encoding: str = "ASCII") -> Any:
    """Unpickle `data`, admitting numpy arrays and builtin containers only."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
