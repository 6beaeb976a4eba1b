"""Argument checks, one signature for every layer: ``check_number(where, name, value, ...)``.

Every constructor and config boundary checks its numbers with :func:`check_number`, so a bad
value fails where it enters, with one kind of message naming the owner, the argument, the
value and what was expected::

    Adam: lr=-0.001 is out of range; expected lr >= 0
    Adam: betas[0]=1.5 is out of range; expected betas[0] in [0, 1)
    GroupNorm: groups=2.0 is a float; expected an integer

Checks run at construction and at config boundaries, never per batch: the hot paths of the
library trust what was checked when it was built. This module is plain Python (no torch),
below every layer, so each of them can use it.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = ["check_number"]


def check_number(where: str, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False, integer: bool = False) -> Any:
    """``value`` as a finite ``float`` (an ``int`` with ``integer=True``) in the interval, else an error.

    * ``where`` names the owner (``"Adam"``, ``"InMemoryLoader"``), ``name`` the argument
      (``"lr"``, ``"betas[0]"``);
    * the interval is ``[low, high]``; ``low_open`` / ``high_open`` leave an end out;
    * ``integer`` asks for a whole number (an ``int``, or a float such as ``2.0`` would be refused).

    A one-element tensor counts as its value. Raises ``TypeError`` for a value that is not a
    number (a string, a bool, a float where an integer is expected) and ``ValueError`` for a
    number outside the interval, NaN or infinite.
    """
    if hasattr(value, "numel") and not isinstance(value, (Real, bool)) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Integral if integer else Real):
        raise TypeError(f"{where}: {name}={value!r} is a {type(value).__name__}; "
                        f"expected {'an integer' if integer else 'a real number'}")
    number = int(value) if integer else float(value)
    finite = math.isfinite(number)
    if finite and not ((number <= low if low_open else number < low) or (number >= high if high_open else number > high)):
        return number
    bounds = _interval(low, high, low_open, high_open)  # the message is made only for a value refused
    expected = f"expected {name} {bounds}" if bounds else "expected a finite number"
    if not finite:
        raise ValueError(f"{where}: {name}={value!r} is not a finite number; {expected}")
    raise ValueError(f"{where}: {name}={value!r} is out of range; {expected}")


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """``"in [0, 1)"``, ``">= 0"``, ``"< 1"``, or ``""`` for no bounds."""
    if low == -math.inf and high == math.inf:
        return ""
    if high == math.inf:
        return f"{'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
