r"""The one-cycle schedule.

Smith & Topin, *Super-Convergence: Very Fast Training of Neural Networks Using Large
Learning Rates*, arXiv:1708.07120. From $v_0 = v_{\max} / d$ up to $v_{\max}$ over the first
``pct_start`` of the $T$ steps, then down to $v_{\min} = v_0 / d_f$ (``three_phase``: back
to $v_0$ over as many steps, then down to $v_{\min}$). Within a phase from $a$ to $b$ at
progress $p \in [0, 1]$ the value is

$$
\text{cos: } b + \frac{a - b}{2}\left(1 + \cos \pi p\right), \qquad \text{linear: } a + (b - a)\, p .
$$

The phase boundaries are those of ``torch.optim.lr_scheduler.OneCycleLR`` (phase ends at
steps $\text{pct\_start} \cdot T - 1$, $2\,\text{pct\_start} \cdot T - 2$, and $T - 1$), whose
values this equals at every step; after $T - 1$ the value holds.
"""

from __future__ import annotations

import math
from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class OneCycle(Schedule):
    """One cycle of ``total_steps`` peaking at ``max_value``; arguments as torch's ``OneCycleLR``."""

    def __init__(self, max_value: float, total_steps: int, pct_start: float = 0.3, anneal: str = "cos",
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False):
        where = "OneCycle"
        self.max_value = check_number(where, "max_value", max_value)
        self.total_steps = int(check_number(where, "total_steps", total_steps, low=1))
        self.pct_start = check_number(where, "pct_start", pct_start, low=0, high=1, low_open=True, high_open=True)
        if anneal not in ("cos", "linear"):
            raise ValueError(f"{where}: anneal={anneal!r}; expected 'cos' or 'linear'")
        self.anneal = anneal
        self.div_factor = check_number(where, "div_factor", div_factor, low=0, low_open=True)
        self.final_div_factor = check_number(where, "final_div_factor", final_div_factor, low=0, low_open=True)
        self.three_phase = bool(three_phase)
        v0 = self.max_value / self.div_factor
        v_min = v0 / self.final_div_factor
        T, pct = self.total_steps, self.pct_start
        if self.three_phase:
            self._phases = [(pct * T - 1, v0, self.max_value), (2 * pct * T - 2, self.max_value, v0), (T - 1, v0, v_min)]
        else:
            self._phases = [(pct * T - 1, v0, self.max_value), (T - 1, self.max_value, v_min)]

    def __call__(self, x: float) -> float:
        """The value in the phase that holds step ``x``."""
        x = min(max(x, 0.0), self.total_steps - 1)
        start = 0.0
        for i, (end, a, b) in enumerate(self._phases):
            if x <= end or i == len(self._phases) - 1:
                p = (x - start) / (end - start) if end > start else 1.0
                if self.anneal == "cos":
                    return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)
                return (b - a) * p + a
            start = end
        raise AssertionError("unreachable: the last phase always answers")

    def arguments(self) -> dict[str, Any]:
        """The constructor's arguments."""
        return {"max_value": self.max_value, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "anneal": self.anneal, "div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "three_phase": self.three_phase}
