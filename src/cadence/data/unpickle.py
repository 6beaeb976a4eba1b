"""A restricted unpickler for data files: only numpy arrays beside Python's plain containers.

Unpickling runs code: a pickle names callables by ``module`` and ``name`` (the ``GLOBAL``
and ``STACK_GLOBAL`` opcodes, resolved by :meth:`pickle.Unpickler.find_class`) and then calls
them (``REDUCE``, ``NEWOBJ``, ``BUILD``). A file that names ``os.system`` runs a shell command
on load. Plain data (dicts, lists, tuples, strings, bytes, numbers, ``None``) needs no global
at all; a numpy array needs exactly the three its ``__reduce__`` names:

| global | called as | makes |
| --- | --- | --- |
| ``numpy.core.multiarray._reconstruct`` | ``_reconstruct(ndarray, (0,), b"b")`` | an empty array |
| ``numpy.ndarray`` | passed to ``_reconstruct`` | |
| ``numpy.dtype`` | ``dtype("u1", False, True)`` | the element type |

and ``BUILD`` then gives the array its shape, dtype and bytes through ``ndarray.__setstate__``.

(numpy 2 writes ``numpy._core.multiarray._reconstruct``, the same function moved.)

So :class:`RestrictedUnpickler` resolves those names, and only those, to numpy's own objects
(never importing a module named by the file) and refuses every other global before anything
is called: the file fails with :class:`UnsafePickleError` and runs nothing. That covers the
CIFAR batches (written by Python 2's cPickle with numpy 1, protocol 2) and numpy arrays
pickled by Python 3 at protocols 3 and 4. (At protocol 5 numpy names ``_frombuffer``, and
at protocols 0 to 2 Python 3 pickles bytes, array data included, through ``_codecs.encode``:
neither occurs in the CIFAR files, so both are refused.)

Python 2 strings are decoded as Latin-1 (``encoding="latin1"``), which maps every byte to
one character: keys come out as ``str``, and numpy re-encodes array data it receives as
``str`` back to the original bytes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cadence.data.idx import DataFormatError

__all__ = ["ALLOWED_GLOBALS", "RestrictedUnpickler", "UnsafePickleError", "load_pickle"]

_reconstruct = np.empty(0).__reduce__()[0]
"""numpy's array reconstructor, taken from an array's own ``__reduce__`` (its module moved in numpy 2)."""

ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
"""``(module, name)`` a pickle may name -> the object it gets. Everything else is refused."""


class UnsafePickleError(DataFormatError):
    """A pickle named a global outside :data:`ALLOWED_GLOBALS`; it was refused before anything ran.

    ``path`` is the file, ``module`` and ``name`` the refused global.
    """

    def __init__(self, path: str | Path, module: str, name: str) -> None:
        self.module = module
        self.name = name
        allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
        super().__init__(
            path,
            f"pickle refers to {module}.{name}, which a data file has no use for: refused before anything ran "
            f"(a data pickle may hold plain containers, strings and numbers, and numpy arrays through {allowed})",
        )


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose :meth:`find_class` admits only :data:`ALLOWED_GLOBALS`.

    Args:
        file: the open pickle, in binary mode.
        path: the file's path, for messages.
    """

    def __init__(self, file: BinaryIO, path: str | Path) -> None:
        super().__init__(file, encoding="latin1")
        self.path = Path(path)

    def find_class(self, module: str, name: str) -> object:
        """numpy's object for an allowed ``(module, name)``; anything else raises :class:`UnsafePickleError`."""
        try:
            return ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise UnsafePickleError(self.path, module, name) from None


def load_pickle(path: str | Path) -> object:
    """Unpickle the file ``path`` with :class:`RestrictedUnpickler`.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle names a global outside :data:`ALLOWED_GLOBALS`.
        DataFormatError: the file is not a complete, valid pickle (the message names the
            path and the unpickler's error).
    """
    path = Path(path)
    with path.open("rb") as file:
        try:
            return RestrictedUnpickler(file, path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                OverflowError, MemoryError) as error:
            raise DataFormatError(path, f"not a valid pickle: {type(error).__name__}: {error}") from error
