r"""Linear warm-up.

From ``start`` to ``value`` over the first $w$ steps, then ``value``:

$$
s(x) = \begin{cases} s_0 + (v - s_0)\, x / w & x < w \\ v & x \ge w \end{cases}
$$

(Goyal et al., *Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour*, arXiv:1706.02677.)
Compose it with a decay through :class:`~cadence.schedule.compose.Sequential`.
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class LinearWarmup(Schedule):
    """Linear from ``start`` at step 0 to ``value`` at step ``warmup``, then constant."""

    def __init__(self, value: float, warmup: float, start: float = 0.0):
        self.value = check_number("LinearWarmup", "value", value)
        self.warmup = check_number("LinearWarmup", "warmup", warmup, low=0)
        self.start = check_number("LinearWarmup", "start", start)

    def __call__(self, x: float) -> float:
        """$s_0 + (v - s_0) x / w$ during the warm-up, then $v$."""
        if x >= self.warmup:
            return self.value
        return self.start + (self.value - self.start) * max(x, 0.0) / self.warmup

    def arguments(self) -> dict[str, Any]:
        """``value``, ``warmup``, ``start``."""
        return {"value": self.value, "warmup": self.warmup, "start": self.start}
