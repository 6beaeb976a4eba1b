"""The trainer's mode: a small nestable state that user code reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Mode:
    """What the trainer is doing now.

    * ``is_train``: in a training phase (gradients are computed and applied),
    * ``is_optimize``: this training batch ends a gradient-accumulation window, so the
      optimizer steps right after its backward pass.

    :meth:`update` sets values for the length of a ``with`` block and restores the previous
    ones on exit, so modes nest (a validation phase inside an experiment's own evaluation,
    say).
    """

    def __init__(self) -> None:
        self.is_train = False
        self.is_optimize = False

    @contextmanager
    def update(self, *, is_train: bool | None = None, is_optimize: bool | None = None) -> Iterator[Mode]:
        """Set the given flags inside the block; restore them after it, even on an exception."""
        saved = (self.is_train, self.is_optimize)
        if is_train is not None:
            self.is_train = is_train
        if is_optimize is not None:
            self.is_optimize = is_optimize
        try:
            yield self
        finally:
            self.is_train, self.is_optimize = saved

    def __repr__(self) -> str:
        return f"Mode(is_train={self.is_train}, is_optimize={self.is_optimize})"
