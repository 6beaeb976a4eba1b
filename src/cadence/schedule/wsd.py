r"""Warm-up, stable, decay (WSD).

Hu et al., *MiniCPM: Unveiling the Potential of Small Language Models with Scalable Training
Strategies*, arXiv:2404.06395, Section 4: a linear warm-up over $W$ steps, a long stable
phase at $v$ for $S$ steps, and a short decay over $D$ steps (linear here) to $v_{\min}$:

$$
s(x) = \begin{cases}
v \, x / W & x < W \\
v & W \le x < W + S \\
v + (v_{\min} - v) \, \min\!\left(1, \frac{x - W - S}{D}\right) & x \ge W + S
\end{cases}
$$

The stable phase can be extended, and the decay started from any checkpoint of it.
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class WarmupStableDecay(Schedule):
    """``warmup`` steps up to ``value``, ``stable`` steps at it, ``decay`` steps down to ``floor``."""

    def __init__(self, value: float, warmup: float, stable: float, decay: float, floor: float = 0.0):
        self.value = check_number("WarmupStableDecay", "value", value)
        self.warmup = check_number("WarmupStableDecay", "warmup", warmup, low=0)
        self.stable = check_number("WarmupStableDecay", "stable", stable, low=0)
        self.decay = check_number("WarmupStableDecay", "decay", decay, low=0, low_open=True)
        self.floor = check_number("WarmupStableDecay", "floor", floor)

    def __call__(self, x: float) -> float:
        """The warm-up, the plateau, then the linear decay; ``floor`` after."""
        if x < self.warmup:
            return self.value * max(x, 0.0) / self.warmup
        if x < self.warmup + self.stable:
            return self.value
        return self.value + (self.floor - self.value) * min(1.0, (x - self.warmup - self.stable) / self.decay)

    def arguments(self) -> dict[str, Any]:
        """``value``, ``warmup``, ``stable``, ``decay``, ``floor``."""
        return {"value": self.value, "warmup": self.warmup, "stable": self.stable, "decay": self.decay,
                "floor": self.floor}
