r"""Decays of a value $v$ over $T$ steps: cosine, linear, polynomial, exponential, step.

Each holds its final value after $T$ (the exponential and step decays have no end).

* **Cosine** (Loshchilov & Hutter, *SGDR*, arXiv:1608.03983), to a floor $v_{\min}$:
  $s(x) = v_{\min} + (v - v_{\min}) \tfrac12 \left(1 + \cos \frac{\pi \min(x, T)}{T}\right)$
  (``torch.optim.lr_scheduler.CosineAnnealingLR`` with $T_{\max} = T$, up to $T$).
* **Linear**: $s(x) = s_0 + (s_1 - s_0) \min(x, T) / T$ (``LinearLR`` with
  $s_0 = v \cdot \text{start\_factor}$, $s_1 = v \cdot \text{end\_factor}$).
* **Polynomial**: $s(x) = v_{\min} + (v - v_{\min}) (1 - \min(x, T)/T)^p$ (``PolynomialLR``
  with $v_{\min} = 0$).
* **Exponential**: $s(x) = v \gamma^x$ (``ExponentialLR``).
* **Step**: $s(x) = v \gamma^{\lfloor x / k \rfloor}$ (``StepLR`` with ``step_size`` $k$).
"""

from __future__ import annotations

import math
from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class Cosine(Schedule):
    """Half a cosine from ``value`` at step 0 to ``floor`` at ``total_steps``."""

    def __init__(self, value: float, total_steps: float, floor: float = 0.0):
        self.value = check_number("Cosine", "value", value)
        self.total_steps = check_number("Cosine", "total_steps", total_steps, low=0, low_open=True)
        self.floor = check_number("Cosine", "floor", floor)

    def __call__(self, x: float) -> float:
        r"""$v_{\min} + (v - v_{\min}) \frac12 (1 + \cos(\pi \min(x, T) / T))$."""
        progress = min(max(x, 0.0), self.total_steps) / self.total_steps
        return self.floor + (self.value - self.floor) * (1 + math.cos(math.pi * progress)) / 2

    def arguments(self) -> dict[str, Any]:
        """``value``, ``total_steps``, ``floor``."""
        return {"value": self.value, "total_steps": self.total_steps, "floor": self.floor}


class Linear(Schedule):
    """Linear from ``start`` at step 0 to ``end`` at ``total_steps``, then ``end``."""

    def __init__(self, start: float, end: float, total_steps: float):
        self.start = check_number("Linear", "start", start)
        self.end = check_number("Linear", "end", end)
        self.total_steps = check_number("Linear", "total_steps", total_steps, low=0, low_open=True)

    def __call__(self, x: float) -> float:
        """$s_0 + (s_1 - s_0) \\min(x, T) / T$."""
        return self.start + (self.end - self.start) * min(max(x, 0.0), self.total_steps) / self.total_steps

    def arguments(self) -> dict[str, Any]:
        """``start``, ``end``, ``total_steps``."""
        return {"start": self.start, "end": self.end, "total_steps": self.total_steps}


class Polynomial(Schedule):
    """``floor + (value - floor) * (1 - min(x, T) / T) ** power``."""

    def __init__(self, value: float, total_steps: float, power: float = 1.0, floor: float = 0.0):
        self.value = check_number("Polynomial", "value", value)
        self.total_steps = check_number("Polynomial", "total_steps", total_steps, low=0, low_open=True)
        self.power = check_number("Polynomial", "power", power, low=0, low_open=True)
        self.floor = check_number("Polynomial", "floor", floor)

    def __call__(self, x: float) -> float:
        """$v_{\\min} + (v - v_{\\min})(1 - \\min(x, T)/T)^p$."""
        remaining = 1 - min(max(x, 0.0), self.total_steps) / self.total_steps
        return self.floor + (self.value - self.floor) * remaining ** self.power

    def arguments(self) -> dict[str, Any]:
        """``value``, ``total_steps``, ``power``, ``floor``."""
        return {"value": self.value, "total_steps": self.total_steps, "power": self.power, "floor": self.floor}


class Exponential(Schedule):
    """``value * gamma ** x``."""

    def __init__(self, value: float, gamma: float):
        self.value = check_number("Exponential", "value", value)
        self.gamma = check_number("Exponential", "gamma", gamma, low=0, low_open=True)

    def __call__(self, x: float) -> float:
        r"""$v \gamma^x$."""
        return self.value * self.gamma ** max(x, 0.0)

    def arguments(self) -> dict[str, Any]:
        """``value``, ``gamma``."""
        return {"value": self.value, "gamma": self.gamma}


class Step(Schedule):
    """``value * gamma ** floor(x / step_size)``."""

    def __init__(self, value: float, step_size: float, gamma: float = 0.1):
        self.value = check_number("Step", "value", value)
        self.step_size = check_number("Step", "step_size", step_size, low=0, low_open=True)
        self.gamma = check_number("Step", "gamma", gamma, low=0, low_open=True)

    def __call__(self, x: float) -> float:
        r"""$v \gamma^{\lfloor x / k \rfloor}$."""
        return self.value * self.gamma ** math.floor(max(x, 0.0) / self.step_size)

    def arguments(self) -> dict[str, Any]:
        """``value``, ``step_size``, ``gamma``."""
        return {"value": self.value, "step_size": self.step_size, "gamma": self.gamma}
