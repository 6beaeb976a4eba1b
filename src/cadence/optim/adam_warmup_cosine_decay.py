r"""Adam with a linear warm-up, then a cosine decay of the learning rate to a floor.

The warm-up of :mod:`cadence.optim.adam_warmup`, followed by the half-cosine of SGDR
(Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts*,
arXiv:1608.03983) from $\alpha$ down to the floor $\alpha_{\min}$ at step $T$:

$$
\alpha_t = \begin{cases}
10^{-8} + t \, \alpha / w & t < w \\
\alpha_{\min} + (\alpha - \alpha_{\min}) \cdot \tfrac12 \left(1 + \cos(\pi p_t)\right),
\quad p_t = \min\!\left(1, \frac{t - w}{\max(1, T - w)}\right) & t \ge w
\end{cases}
$$

With $\alpha_{\min} = 0$ this is labml_nn's ``AdamWarmupCosineDecay``; after $T$ the rate
stays at the floor.
"""

from __future__ import annotations

import math
from typing import Any

from cadence.checks import check_number
from cadence.optim.adam_warmup import AdamWarmup
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay


class AdamWarmupCosineDecay(AdamWarmup):
    """Adam (or AMSGrad) with ``warmup`` steps of linear warm-up, then cosine decay to ``min_lr`` at ``total_steps``."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: WeightDecay | None = None, optimized_update: bool = True,
                 amsgrad: bool = False, warmup: int = 0, total_steps: int = int(1e10), min_lr: float = 0.0,
                 defaults: dict[str, Any] | None = None, *, fused: bool = False):
        defaults = {**(defaults or {}), "total_steps": total_steps, "min_lr": min_lr}
        super().__init__(params, lr, betas, eps, weight_decay, optimized_update, amsgrad, warmup, defaults,
                         fused=fused)

    def validate_group(self, group: dict[str, Any]) -> None:
        """The warm-up's checks, ``total_steps >= 1`` and ``0 <= min_lr <= lr``."""
        super().validate_group(group)
        where = type(self).__name__
        group["total_steps"] = check_number(where, "total_steps", group["total_steps"], low=1, integer=True)
        group["min_lr"] = check_number(where, "min_lr", group["min_lr"], low=0.0, high=group["lr"])

    def get_lr(self, group: dict[str, Any], step: int) -> float:
        r"""The warm-up, then $\alpha_{\min} + (\alpha - \alpha_{\min}) \frac12 (1 + \cos \pi p_t)$."""
        warmup, alpha, alpha_min = group["warmup"], group["lr"], group["min_lr"]
        if step < warmup:
            return 1e-8 + step * alpha / warmup
        p = min(1.0, (step - warmup) / max(1.0, group["total_steps"] - warmup))
        return alpha_min + (alpha - alpha_min) * 0.5 * (1.0 + math.cos(math.pi * p))
