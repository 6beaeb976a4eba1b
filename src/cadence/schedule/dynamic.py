r"""The dynamic schedule: a value set from outside the training loop.

$s(x) = c$, where $c$ is changed while training runs (from a user interface, a
hyper-parameter controller, or by hand) with :meth:`Dynamic.set_value`, and kept
within a declared range $[c_{\min}, c_{\max}]$.
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class Dynamic(Schedule):
    r"""$s(x) = c$, with $c$ = ``value`` set by :meth:`set_value` within ``range_`` $= (c_{\min}, c_{\max})$.

    ``range_=None`` leaves $c$ unbounded.
    """

    def __init__(self, value: float, range_: tuple[float, float] | None = None):
        if range_ is None:
            self.range_: tuple[float, float] | None = None
        else:
            if not isinstance(range_, (tuple, list)) or len(range_) != 2:
                raise ValueError(f"Dynamic: range_={range_!r}; expected a pair (min, max)")
            low = check_number("Dynamic", "range_[0]", range_[0])
            high = check_number("Dynamic", "range_[1]", range_[1])
            if low > high:
                raise ValueError(f"Dynamic: range_={range_!r} has min > max; expected min <= max")
            #: $(c_{\min}, c_{\max})$, or ``None`` for no bounds
            self.range_ = (low, high)
        self.value = self._checked(value, "Dynamic")

    def _checked(self, value: Any, where: str) -> float:
        value = check_number(where, "value", value)
        if self.range_ is not None and not self.range_[0] <= value <= self.range_[1]:
            raise ValueError(f"{where}: value={value!r} is outside range_={self.range_!r}; "
                             f"expected {self.range_[0]!r} <= value <= {self.range_[1]!r}")
        return value

    def set_value(self, value: float) -> None:
        """Set $c$; a value outside ``range_`` raises ``ValueError`` and leaves $c$ unchanged."""
        self.value = self._checked(value, "Dynamic.set_value")

    def __call__(self, x: float) -> float:
        """The current $c$, whatever the step."""
        return self.value

    def arguments(self) -> dict[str, Any]:
        """``{"value": c, "range_": (c_min, c_max)}``: the current value, so the repr is a snapshot."""
        return {"value": self.value, "range_": self.range_}
