r"""Cosine annealing with warm restarts (SGDR).

Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts*, ICLR 2017,
arXiv:1608.03983, Eq. 5. Cycle $i$ lasts $T_i = T_0 \, m^i$ steps; within it, at
$T_{\text{cur}}$ steps since the last restart,

$$
s(x) = v_{\min} + (v - v_{\min}) \tfrac12 \left(1 + \cos \frac{\pi T_{\text{cur}}}{T_i}\right)
$$

equal to ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)``.
"""

from __future__ import annotations

import math
from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class CosineWarmRestarts(Schedule):
    """Cosine cycles of ``t_0``, ``t_0 * t_mult``, ... steps from ``value`` down to ``floor``."""

    def __init__(self, value: float, t_0: int, t_mult: int = 1, floor: float = 0.0):
        self.value = check_number("CosineWarmRestarts", "value", value)
        self.t_0 = int(check_number("CosineWarmRestarts", "t_0", t_0, low=1))
        self.t_mult = int(check_number("CosineWarmRestarts", "t_mult", t_mult, low=1))
        self.floor = check_number("CosineWarmRestarts", "floor", floor)

    def __call__(self, x: float) -> float:
        r"""The cosine of the current cycle at $T_{\text{cur}} / T_i$."""
        t_cur, t_i = max(x, 0.0), float(self.t_0)
        if self.t_mult == 1:
            t_cur = t_cur % t_i
        else:
            while t_cur >= t_i:
                t_cur -= t_i
                t_i *= self.t_mult
        return self.floor + (self.value - self.floor) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    def arguments(self) -> dict[str, Any]:
        """``value``, ``t_0``, ``t_mult``, ``floor``."""
        return {"value": self.value, "t_0": self.t_0, "t_mult": self.t_mult, "floor": self.floor}
