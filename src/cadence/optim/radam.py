r"""Rectified Adam (RAdam).

Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond*, ICLR 2020,
arXiv:1908.03265.

Early in training the adaptive rate $1/\sqrt{\hat{v}_t}$ rests on few gradients and its
variance is large (unbounded in the first steps). The paper approximates the length of
the simple moving average that the exponential one stands for,

$$
\rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
\rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},
$$

and, while $\rho_t$ is too small for the variance to be tractable ($\rho_t \le \rho_{\text{threshold}}$),
takes an un-adapted momentum step (or none). Afterwards it multiplies the adaptive step by
the rectification term $r_t$ that equalises its variance:

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad \hat{m}_t = \frac{m_t}{1 - \beta_1^t} \\
r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
\theta_t &\leftarrow \begin{cases}
\theta_{t-1} - \alpha \, \hat{m}_t \, \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt{v_t} + \epsilon} \, r_t & \rho_t > \rho_{\text{threshold}} \\
\theta_{t-1} - \alpha \, \hat{m}_t & \text{otherwise, with } \texttt{degenerate\_to\_sgd}
\end{cases}
\end{aligned}
$$

The threshold defaults to 5, as in ``torch.optim.RAdam`` (the paper's Algorithm 2 uses 4;
labml_nn uses $\rho_t \ge 5$), and the operations follow torch's, including $\epsilon$ added
to $\sqrt{v_t}$, so the two compare. ``amsgrad=True`` divides by the running maximum of
$v_t$ instead, as in :mod:`cadence.optim.amsgrad`. The rectification term is computed by
:func:`~cadence.optim.generic.rectification`, which AdaBelief shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import (GenericAdaptiveOptimizer, Params, rectification, running_max, update_moment,
                                   update_squared_moment)
from cadence.optim.weight_decay import Scalar, WeightDecay


class RAdam(GenericAdaptiveOptimizer):
    """RAdam with labml_nn's arguments and ``rho_threshold`` (torch's 5 by default)."""

    ranges = {"rho_threshold": {"low": 0.0, "low_open": True}}

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0, amsgrad: bool = False,
                 degenerate_to_sgd: bool = True, rho_threshold: float = 5.0, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        self.degenerate_to_sgd = bool(degenerate_to_sgd)
        self.state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")
        super().__init__(params, {"rho_threshold": rho_threshold}, lr, betas, eps, weight_decay, schedules=schedules,
                         fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\beta_1, \beta_2, \epsilon, \alpha$, the bias corrections, $r_t$ (``None`` before $\rho_t$ passes the
        threshold), whether to step un-adapted before, and the weight-decay terms."""
        beta1, beta2 = group["betas"]
        return {"beta1": beta1, "beta2": beta2, "eps": group["eps"], "lr": group["lr"],
                "bias_correction1": 1 - beta1 ** step, "sqrt_bias_correction2": math.sqrt(1 - beta2 ** step),
                "r": rectification(beta2, step, group["rho_threshold"]), "sgd": self.degenerate_to_sgd,
                **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
               v_max: torch.Tensor | None = None, *, beta1: Scalar, beta2: Scalar, eps: Scalar, lr: Scalar,
               bias_correction1: Scalar, sqrt_bias_correction2: Scalar, r: Scalar | None, sgd: bool,
               decay: Scalar | None, l2: Scalar | None) -> None:
        """One RAdam step, in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$
        update_squared_moment(v, g, beta2)
        if v_max is not None:
            # $\hat{v}^{\max}_t \leftarrow \max(\hat{v}^{\max}_{t-1}, v_t)$
            v = running_max(v_max, v)
        if r is not None:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha \hat{m}_t \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) \cdot r_t$
            param.add_(m / bias_correction1 * lr * (sqrt_bias_correction2 / v.sqrt().add_(eps)) * r, alpha=-1.0)
        elif sgd:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha \hat{m}_t$
            param.add_(m / bias_correction1 * lr, alpha=-1.0)
