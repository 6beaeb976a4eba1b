r"""LAMB (Layer-wise Adaptive Moments for Batch training).

You et al., *Large Batch Optimization for Deep Learning: Training BERT in 76 minutes*,
ICLR 2020, arXiv:1904.00962, Algorithm 2.

Adam's direction, with weight decay inside it, rescaled per layer (here: per parameter
tensor) by a trust ratio, so that each layer moves by a fixed fraction of its own norm
however large the batch:

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
\hat{m}_t &= \frac{m_t}{1 - \beta_1^t}, \qquad \hat{v}_t = \frac{v_t}{1 - \beta_2^t} \\
r_t &= \frac{\hat{m}_t}{\sqrt{\hat{v}_t} + \epsilon} + \lambda \theta_{t-1} \\
\theta_t &\leftarrow \theta_{t-1} - \eta \, \frac{\phi(\lVert \theta_{t-1} \rVert)}{\lVert r_t \rVert} \, r_t
\end{aligned}
$$

with $\phi$ the identity, and a ratio of 1 when either norm is 0 (a freshly zeroed bias).
The norms make the update per tensor, not elementwise: LAMB has no fused path. On sharded
parameters (FSDP's DTensors) the update runs on the DTensors, and each norm is the whole
tensor's, its ranks' parts reduced by DTensor (:mod:`cadence.optim.sharded`).

The paper's decay is decoupled from the moments, as AdamW's is, and a float ``weight_decay``
means it; ``WeightDecay(λ, weight_decouple=False)`` adds $\lambda \theta_{t-1}$ to $g_t$
instead (coupled L2, and no $\lambda \theta_{t-1}$ in $r_t$).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import GenericAdaptiveOptimizer, Params, update_moment, update_squared_moment
from cadence.optim.weight_decay import WeightDecay


class LAMB(GenericAdaptiveOptimizer):
    """LAMB; a float ``weight_decay`` is the paper's $\\lambda$ inside $r_t$ (and so inside the trust ratio)."""

    state_names = ("exp_avg", "exp_avg_sq")
    elementwise = False
    decoupled_weight_decay = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float | WeightDecay = 0.0, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None):
        if isinstance(weight_decay, WeightDecay) and weight_decay.absolute:
            raise ValueError(f"LAMB: weight_decay={weight_decay!r}; LAMB scales its decay by the learning rate and "
                             f"the trust ratio, so it cannot be absolute: expected a float (the paper's decay in r_t) "
                             f"or WeightDecay(λ, weight_decouple=False) (coupled L2)")
        super().__init__(params, {}, lr, betas, eps, weight_decay, schedules=schedules)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\eta, \beta_1, \beta_2, \epsilon$, the bias corrections at step $t$, and the decay: $\lambda$ in $r_t$
        (decoupled) or ``l2`` (coupled)."""
        beta1, beta2 = group["betas"]
        decoupled = self.weight_decay.weight_decouple
        return {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "eps": group["eps"],
                "bias_correction1": 1 - beta1 ** step, "bias_correction2": 1 - beta2 ** step,
                "lam": group["weight_decay"] if decoupled else 0.0,
                "l2": None if decoupled else self.weight_decay.scalars(group)["l2"]}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, lr: float,
               beta1: float, beta2: float, eps: float, bias_correction1: float, bias_correction2: float,
               lam: float, l2: float | None) -> None:
        """One LAMB step on one tensor, in place."""
        g = WeightDecay.apply(param, grad, None, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$
        update_squared_moment(v, g, beta2)
        # $r_t = \hat{m}_t / (\sqrt{\hat{v}_t} + \epsilon) + \lambda \theta_{t-1}$
        r = (m / bias_correction1) / ((v / bias_correction2).sqrt_().add_(eps))
        if lam != 0:
            r.add_(param, alpha=lam)
        # $\phi(\lVert \theta_{t-1} \rVert) / \lVert r_t \rVert$, 1 when either is 0
        theta_norm, r_norm = torch.linalg.vector_norm(param), torch.linalg.vector_norm(r)
        trust_ratio = torch.where((theta_norm > 0) & (r_norm > 0), theta_norm / r_norm, torch.ones_like(r_norm))
        # $\theta_t \leftarrow \theta_{t-1} - \eta \cdot \text{trust ratio} \cdot r_t$
        param.sub_(r.mul_(trust_ratio * lr))
