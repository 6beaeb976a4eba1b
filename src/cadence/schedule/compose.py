r"""Composition: schedules in sequence, and products of schedules.

* :class:`Sequential`: schedule $s_i$ runs on $[b_{i-1}, b_i)$ (with $b_{-1} = 0$, the last one
  to infinity) and sees the step counted from the start of its span, $s(x) = s_i(x - b_{i-1})$.
  A warm-up then a cosine decay is
  ``Sequential([LinearWarmup(1e-3, 1000), Cosine(1e-3, 9000)], [1000])``.
* :class:`Product`: $s(x) = \prod_i s_i(x)$, e.g. a schedule scaled by a constant
  (``Product([Cosine(1.0, 1000), Flat(3e-4)])``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


def _schedules(schedules: Any, where: str) -> list[Schedule]:
    if not isinstance(schedules, Sequence) or not schedules or not all(isinstance(s, Schedule) for s in schedules):
        raise TypeError(f"{where}: schedules={schedules!r}; expected a non-empty list of schedules")
    return list(schedules)


class Sequential(Schedule):
    """``schedules[i]`` on ``[boundaries[i-1], boundaries[i])``, each counting steps from its start."""

    def __init__(self, schedules: Sequence[Schedule], boundaries: Sequence[float]):
        self.schedules = _schedules(schedules, "Sequential")
        self.boundaries = [check_number("Sequential", f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        if len(self.boundaries) != len(self.schedules) - 1:
            raise ValueError(f"Sequential: {len(self.schedules)} schedules need {len(self.schedules) - 1} boundaries, "
                             f"got boundaries={list(boundaries)!r}")
        if any(b <= a for a, b in zip([0.0, *self.boundaries], self.boundaries)):
            raise ValueError(f"Sequential: boundaries={list(boundaries)!r}; expected strictly increasing values > 0")

    def __call__(self, x: float) -> float:
        """The schedule whose span holds ``x``, at ``x`` minus the span's start."""
        i = bisect.bisect_right(self.boundaries, x)
        return self.schedules[i](x - (self.boundaries[i - 1] if i else 0.0))

    def arguments(self) -> dict[str, Any]:
        """``schedules``, ``boundaries``."""
        return {"schedules": self.schedules, "boundaries": self.boundaries}


class Product(Schedule):
    """The product of the schedules' values."""

    def __init__(self, schedules: Sequence[Schedule]):
        self.schedules = _schedules(schedules, "Product")

    def __call__(self, x: float) -> float:
        r"""$\prod_i s_i(x)$."""
        return math.prod(s(x) for s in self.schedules)

    def arguments(self) -> dict[str, Any]:
        """``schedules``."""
        return {"schedules": self.schedules}
