r"""Piecewise-linear schedules.

Given endpoints $(x_0, y_0), (x_1, y_1), \dots, (x_n, y_n)$ with
$x_0 < x_1 < \dots < x_n$, the schedule interpolates linearly between neighbours,

$$
s(x) = y_i + \frac{x - x_i}{x_{i+1} - x_i} \, (y_{i+1} - y_i)
\qquad \text{for } x_i \le x \le x_{i+1},
$$

and outside $[x_0, x_n]$ it holds the nearest end, $s(x) = y_0$ for $x < x_0$ and
$s(x) = y_n$ for $x > x_n$, unless an ``outside_value`` $y_{\text{out}}$ is given,
which then replaces both. A warm-up followed by a linear decay of the learning rate
is ``Piecewise([(0, 0.0), (1000, 1e-3), (10000, 1e-5)])``.

:class:`RelativePiecewise` places the endpoints at fractions $r_i \in [0, 1]$ of the
training length $T$: $x_i = r_i T$.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


def _pairs(endpoints: Any, name: str, where: str) -> tuple[tuple[float, float], ...]:
    """``endpoints`` as a non-empty tuple of ``(float, float)`` pairs with strictly increasing x.

    Anything else raises an error that names ``where``, ``name`` and the endpoints.
    """
    if not isinstance(endpoints, Sequence) or isinstance(endpoints, str) or len(endpoints) == 0:
        raise ValueError(f"{where}: {name}={endpoints!r}; expected a non-empty sequence of (x, y) pairs")
    pairs = []
    for i, pair in enumerate(endpoints):
        if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"{where}: {name}[{i}]={pair!r} in {name}={endpoints!r}; expected an (x, y) pair")
        pairs.append((check_number(where, f"{name}[{i}][0]", pair[0]),
                      check_number(where, f"{name}[{i}][1]", pair[1])))
    for i in range(1, len(pairs)):
        if not pairs[i - 1][0] < pairs[i][0]:
            raise ValueError(f"{where}: {name}={list(pairs)!r} have x[{i - 1}]={pairs[i - 1][0]!r} >= "
                             f"x[{i}]={pairs[i][0]!r}; expected strictly increasing x")
    return tuple(pairs)


class Piecewise(Schedule):
    r"""Linear interpolation between ``endpoints`` $(x_i, y_i)$, sorted by strictly increasing $x$.

    Before $x_0$ the value is $y_0$ and after $x_n$ it is $y_n$, or ``outside_value``
    on both sides when it is given. Unsorted or repeated $x$ raise ``ValueError``.
    """

    def __init__(self, endpoints: Sequence[tuple[float, float]], outside_value: float | None = None):
        #: $((x_0, y_0), \dots, (x_n, y_n))$
        self.endpoints = _pairs(endpoints, "endpoints", type(self).__name__)
        #: $y_{\text{out}}$, or ``None`` to hold $y_0$ and $y_n$
        self.outside_value = (None if outside_value is None
                              else check_number(type(self).__name__, "outside_value", outside_value))
        self._x = [x for x, _ in self.endpoints]

    def __call__(self, x: float) -> float:
        r"""$s(x)$: the nearest end or $y_{\text{out}}$ outside $[x_0, x_n]$, linear in between."""
        if math.isnan(x):
            raise ValueError(f"{self!r} called with x=nan; expected a step number")
        x_0, y_0 = self.endpoints[0]
        x_n, y_n = self.endpoints[-1]
        if x < x_0 or x > x_n:
            if self.outside_value is not None:
                return self.outside_value
            return y_0 if x < x_0 else y_n
        if x == x_n:
            return y_n
        # $i$ such that $x_i \le x < x_{i+1}$
        i = bisect.bisect_right(self._x, x) - 1
        (x_i, y_i), (x_next, y_next) = self.endpoints[i], self.endpoints[i + 1]
        # $s(x) = y_i + \frac{x - x_i}{x_{i+1} - x_i} (y_{i+1} - y_i)$
        y = y_i + (x - x_i) / (x_next - x_i) * (y_next - y_i)
        # Exact arithmetic keeps $s(x)$ between $y_i$ and $y_{i+1}$; clamp away the rounding.
        return min(max(y, min(y_i, y_next)), max(y_i, y_next))

    def arguments(self) -> dict[str, Any]:
        """``{"endpoints": [(x, y), ...], "outside_value": y_out}``."""
        return {"endpoints": list(self.endpoints), "outside_value": self.outside_value}


class RelativePiecewise(Piecewise):
    r"""A :class:`Piecewise` schedule with endpoints at fractions of the training length.

    ``relative_endpoints`` are pairs $(r_i, y_i)$ with $0 \le r_0 < \dots < r_n \le 1$;
    the schedule is ``Piecewise`` over $(r_i T, y_i)$ with $T$ = ``total_steps``.
    """

    def __init__(self, relative_endpoints: Sequence[tuple[float, float]], total_steps: int):
        where = "RelativePiecewise"
        pairs = _pairs(relative_endpoints, "relative_endpoints", where)
        for i, (r, _) in enumerate(pairs):
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"{where}: relative_endpoints[{i}] has x={r!r} in relative_endpoints="
                                 f"{list(pairs)!r}; expected a fraction of total_steps in [0, 1]")
        #: $((r_0, y_0), \dots, (r_n, y_n))$
        self.relative_endpoints = pairs
        #: $T$
        self.total_steps = check_number(where, "total_steps", total_steps, low=1, integer=True)
        # $x_i = r_i T$
        super().__init__([(r * total_steps, y) for r, y in pairs])

    def arguments(self) -> dict[str, Any]:
        """``{"relative_endpoints": [(r, y), ...], "total_steps": T}``."""
        return {"relative_endpoints": list(self.relative_endpoints), "total_steps": self.total_steps}
