r"""AMSGrad.

Reddi, Kale & Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018, arXiv:1904.09237.

Adam's effective step $\alpha / \sqrt{v_t}$ can grow when $v_t$ shrinks, and the paper
builds a convex problem on which Adam then converges to the worst point. AMSGrad keeps
the largest second moment seen so far and divides by it, so the step never grows:

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
v_t &\leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
\hat{v}^{\max}_t &\leftarrow \max(\hat{v}^{\max}_{t-1}, v_t) \\
\theta_t &\leftarrow \theta_{t-1} - \text{step\_size} \cdot \frac{m_t}{\sqrt{\hat{v}^{\max}_t} / c_t + \epsilon}
\end{aligned}
$$

with Adam's bias corrections in $\text{step\_size}$ and $c_t$ (see :mod:`cadence.optim.adam`),
as ``torch.optim.Adam(amsgrad=True)`` computes it. ``amsgrad=False`` (labml_nn's flag) keeps no
maximum: the update is then Adam's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import (GenericAdaptiveOptimizer, Params, adam_denominator, adam_scalars, running_max,
                                   update_moment, update_squared_moment)
from cadence.optim.weight_decay import Scalar, WeightDecay


class AMSGrad(GenericAdaptiveOptimizer):
    """AMSGrad, with labml_nn's arguments (:class:`~cadence.optim.adam.Adam`'s, and ``amsgrad``)."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True,
                 amsgrad: bool = True, *, schedules: Mapping[str, Callable[[float], float]] | None = None,
                 fused: bool = False):
        self.optimized_update = bool(optimized_update)
        self.state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
        super().__init__(params, {}, lr, betas, eps, weight_decay, schedules=schedules, fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""Adam's scalars at step $t$: $\beta_1, \beta_2, \epsilon$, the step size, $c_t$, the weight-decay terms."""
        return {**adam_scalars(group, step, self.optimized_update), **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
               v_max: torch.Tensor | None = None, *, beta1: Scalar, beta2: Scalar, eps: Scalar,
               step_size: Scalar, c: Scalar | None, decay: Scalar | None, l2: Scalar | None) -> None:
        """One AMSGrad step (without ``v_max``, ``amsgrad=False``, it keeps no maximum), in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$
        update_squared_moment(v, g, beta2)
        if v_max is not None:
            # $\hat{v}^{\max}_t \leftarrow \max(\hat{v}^{\max}_{t-1}, v_t)$
            v = running_max(v_max, v)
        # $\theta_t \leftarrow \theta_{t-1} - \text{step\_size} \cdot m_t / (\sqrt{\hat{v}^{\max}_t} / c_t + \epsilon)$
        param.addcdiv_(m, adam_denominator(v, c, eps), value=-step_size)
