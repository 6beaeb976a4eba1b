r"""The flat schedule: one value at every step, $s(x) = c$."""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class Flat(Schedule):
    r"""The constant schedule $s(x) = c$ with $c$ = ``value``."""

    def __init__(self, value: float):
        #: $c$
        self.value = check_number("Flat", "value", value)

    def __call__(self, x: float) -> float:
        """$c$, whatever the step."""
        return self.value

    def arguments(self) -> dict[str, Any]:
        """``{"value": c}``."""
        return {"value": self.value}
