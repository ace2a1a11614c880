"""Unpickling that runs no code: only the globals a numeric dataset release needs resolve.

Plain ``pickle.load`` calls whatever a file names (a ``__reduce__`` payload runs a shell command),
so a dataset file downloaded from a mirror is code. The CIFAR python release and the
tieredImageNet pickles hold only dicts, lists, strings, bytes and numpy arrays / scalars; this
unpickler resolves exactly numpy's array, dtype and scalar reconstructors and ``_codecs.encode``
(how Python 2 pickles of bytes read under Python 3), and refuses any other global with
``pickle.UnpicklingError`` naming it.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any

import numpy as np


def _allowed_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, any version
    scalar = np.int64(0).__reduce__()[0]  # numpy's scalar reconstructor, any version
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class DataUnpickler(pickle.Unpickler):
    """Resolves only :func:`_allowed_globals`; ``what`` names the file kind in the refusal."""

    allowed = _allowed_globals()

    def __init__(self, file: Any, what: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"it references {module}.{name}, which a {self.what} never contains"
            )
        return found


def loads(raw: bytes, what: str, encoding: str = "bytes") -> Any:
    """Unpickle ``raw`` with :class:`DataUnpickler`."""
    return DataUnpickler(io.BytesIO(raw), what, encoding).load()
