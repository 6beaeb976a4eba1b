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
as ``torch.optim.Adam(amsgrad=True)`` computes it. ``amsgrad=False`` falls back to Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.adam import Adam
from cadence.optim.generic import Params
from cadence.optim.weight_decay import Scalar, WeightDecay


class AMSGrad(Adam):
    """AMSGrad, with labml_nn's arguments; ``amsgrad=False`` is plain :class:`~cadence.optim.adam.Adam`."""

    #: The state tensors without and with the running maximum (a subclass renames them).
    state_names_adam = ("exp_avg", "exp_avg_sq")
    state_names_amsgrad = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: WeightDecay | None = None, optimized_update: bool = True,
                 amsgrad: bool = True, defaults: dict[str, Any] | None = None, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        self.amsgrad = bool(amsgrad)
        self.state_names = self.state_names_amsgrad if amsgrad else self.state_names_adam
        super().__init__(params, lr, betas, eps, weight_decay, optimized_update, defaults, schedules=schedules,
                         fused=fused)

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
               v_max: torch.Tensor | None = None, *, beta1: Scalar, beta2: Scalar, eps: Scalar,
               step_size: Scalar, c: Scalar | None, decay: Scalar | None, l2: Scalar | None) -> None:
        """One AMSGrad step (an Adam step when ``v_max`` is ``None``), in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        m.lerp_(g, 1 - beta1)
        # $v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if v_max is not None:
            # $\hat{v}^{\max}_t \leftarrow \max(\hat{v}^{\max}_{t-1}, v_t)$
            torch.maximum(v_max, v, out=v_max)
            v = v_max
        # $\theta_t \leftarrow \theta_{t-1} - \text{step\_size} \cdot m_t / (\sqrt{\hat{v}^{\max}_t} / c_t + \epsilon)$
        denominator = v.sqrt() if c is None else v.sqrt() / c  # $c_t = 1$ is ``None``: no division
        param.addcdiv_(m, denominator.add_(eps), value=-step_size)
