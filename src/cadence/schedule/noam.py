r"""The Transformer's learning rate ("Noam").

Vaswani et al., *Attention Is All You Need*, NeurIPS 2017, arXiv:1706.03762, Section 5.3:

$$
s(x) = v \cdot d_{\text{model}}^{-0.5} \cdot \min\left(x^{-0.5},\; x \cdot w^{-1.5}\right)
$$

rising linearly for $w$ warm-up steps and decaying as $x^{-0.5}$ after. $s(0) = 0$. This is
the rate of labml_nn's ``NoamOpt(model_size, factor, warmup, optimizer)`` with $v$ = factor,
and of :class:`cadence.optim.noam.Noam`.
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.schedule.base import Schedule


class Noam(Schedule):
    """``value * d_model ** -0.5 * min(x ** -0.5, x * warmup ** -1.5)``."""

    def __init__(self, value: float, d_model: float, warmup: float):
        self.value = check_number("Noam", "value", value)
        self.d_model = check_number("Noam", "d_model", d_model, low=0, low_open=True)
        self.warmup = check_number("Noam", "warmup", warmup, low=0, low_open=True)

    def __call__(self, x: float) -> float:
        r"""$v \, d_{\text{model}}^{-0.5} \min(x^{-0.5}, x w^{-1.5})$, and 0 at $x \le 0$."""
        if x <= 0:
            return 0.0
        return self.value * self.d_model ** -0.5 * min(x ** -0.5, x * self.warmup ** -1.5)

    def arguments(self) -> dict[str, Any]:
        """``value``, ``d_model``, ``warmup``."""
        return {"value": self.value, "d_model": self.d_model, "warmup": self.warmup}
