r"""The schedule: a value as a function of the training step.

A schedule is a function $s : x \mapsto s(x)$ from a step $x$ (an ``int`` or a
``float``: optimizer steps, epochs or fractions of them) to a hyper-parameter value,
such as the learning rate $\alpha_t = s(t)$. The trainer calls the schedule once per
optimizer step and writes the value into the optimizer's parameter groups.

Schedules are plain Python (no torch), so every layer may use them. Each schedule
is defined by its constructor arguments: its ``repr`` spells them out so that
``eval(repr(s))`` rebuilds an equal schedule, and two schedules are equal when they
are of the same class with equal arguments.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cadence.checks import check_number


class Schedule(ABC):
    """A value $s(x)$ of the step $x$.

    A subclass implements :meth:`__call__` and :meth:`arguments`; :meth:`__repr__` and
    :meth:`__eq__` follow from the arguments.
    """

    @abstractmethod
    def __call__(self, x: float) -> float:
        """The value $s(x)$ at step ``x``."""

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this schedule: ``type(s)(**s.arguments()) == s``."""

    def __repr__(self) -> str:
        """``ClassName(name=value, ...)``, which ``eval`` turns back into an equal schedule."""
        arguments = ", ".join(f"{name}={value!r}" for name, value in self.arguments().items())
        return f"{type(self).__name__}({arguments})"

    def plot(self, steps: int, path: str | os.PathLike) -> Path:
        """Write a PNG of the curve over steps ``0 .. steps`` to ``path`` (matplotlib, imported here)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = int(check_number(f"{type(self).__name__}.plot", "steps", steps, low=1))
        xs = list(range(steps + 1))
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(xs, [self(x) for x in xs])
        axes.set_xlabel("step")
        axes.set_title(repr(self), fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, format="png")
        plt.close(figure)
        return path

    def __eq__(self, other: object) -> bool:
        """Same class and equal :meth:`arguments`."""
        if not isinstance(other, Schedule):
            return NotImplemented
        return type(self) is type(other) and self.arguments() == other.arguments()

