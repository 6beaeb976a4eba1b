"""Validation of optimizer hyper-parameters.

Every optimizer checks each hyper-parameter of each parameter group when the group is
added, so that a bad value fails at construction with a message naming the optimizer,
the hyper-parameter, its value and the allowed range, never later inside a step.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def check_number(where: str, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """Check that ``value`` is a finite real number in the given interval and return it.

    ``where`` names the owner (``"Adam"``), ``name`` the hyper-parameter (``"betas[0]"``).
    The interval is ``[low, high]``; ``low_open`` / ``high_open`` exclude an end.
    Raises ``TypeError`` for a non-number (a string, a tensor with several elements)
    and ``ValueError`` for a number outside the interval or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        if hasattr(value, "numel") and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{where}: {name}={value!r} is a {type(value).__name__}; expected a real number")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if math.isnan(value) or below or above:
        raise ValueError(f"{where}: {name}={value!r} is out of range; expected {name} in "
                         f"{_interval(low, high, low_open, high_open)}")
    return value


def check_betas(where: str, betas: Any) -> tuple[float, float]:
    """Check that ``betas`` is a pair ``(beta1, beta2)`` with each value in ``[0, 1)``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{where}: betas={betas!r}; expected a pair (beta1, beta2), each in [0, 1)")
    return (check_number(where, "betas[0]", betas[0], low=0.0, high=1.0, high_open=True),
            check_number(where, "betas[1]", betas[1], low=0.0, high=1.0, high_open=True))


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"({low}, inf)" if low_open else f"[{low}, inf)"
    if low == -math.inf:
        return f"(-inf, {high})" if high_open else f"(-inf, {high}]"
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
