r"""Lion (EvoLved Sign Momentum).

Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023, arXiv:2302.06675,
Algorithm 2.

Found by program search, Lion keeps a single momentum and steps by the *sign* of an
interpolation between it and the gradient, so every coordinate moves by exactly the
learning rate $\eta$ (plus decoupled weight decay $\lambda$):

$$
\begin{aligned}
c_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
\theta_t &\leftarrow \theta_{t-1} - \eta \left(\operatorname{sign}(c_t) + \lambda \theta_{t-1}\right) \\
m_t &\leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t
\end{aligned}
$$

The update direction uses $\beta_1$, the momentum kept uses the slower $\beta_2$. Its
update has a larger norm than Adam's, so the paper uses a learning rate 3-10x smaller and a
weight decay 3-10x larger (defaults here: $\eta = 10^{-4}$, $\beta = (0.9, 0.99)$). The
weight decay is the pluggable :class:`~cadence.optim.weight_decay.WeightDecay`, decoupled
by default as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import GenericAdaptiveOptimizer, Params, update_moment
from cadence.optim.weight_decay import Scalar, WeightDecay


class Lion(GenericAdaptiveOptimizer):
    """Lion: ``lr`` $\\eta$, ``betas`` $(\\beta_1, \\beta_2)$, ``weight_decay`` (a float is decoupled, as in
    the paper)."""

    decoupled_weight_decay = True

    state_names = ("exp_avg",)

    def __init__(self, params: Params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float | WeightDecay = 0.0, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        super().__init__(params, {}, lr, betas, 0.0, weight_decay, schedules=schedules, fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\eta$, $\beta_1$, $\beta_2$ and the weight-decay terms (Lion has no bias correction)."""
        beta1, beta2 = group["betas"]
        return {"lr": group["lr"], "beta1": beta1, "beta2": beta2, **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, *, lr: Scalar, beta1: Scalar,
               beta2: Scalar, decay: Scalar, l2: Scalar) -> None:
        """One Lion step, in place."""
        # $\theta \leftarrow \theta (1 - \eta \lambda)$ (decoupled), or $g_t + \lambda \theta$ (coupled)
        g = WeightDecay.apply(param, grad, decay, l2)
        # $c_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        c = m.lerp(g, 1 - beta1)
        # $\theta_t \leftarrow \theta_{t-1} - \eta \operatorname{sign}(c_t)$
        param.sub_(c.sign_().mul_(lr))
        # $m_t \leftarrow \beta_2 m_{t-1} + (1 - \beta_2) g_t$
        update_moment(m, g, beta2)
