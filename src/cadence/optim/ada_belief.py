r"""AdaBelief.

Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
Gradients*, NeurIPS 2020, arXiv:2010.07468.

Adam divides by the EMA of $g_t^2$; AdaBelief divides by the EMA of the squared deviation
of $g_t$ from its own EMA $m_t$, the "belief" in the gradient: a gradient close to what
was expected gets a large step, a surprising one a small step. Algorithm 2 of the paper:

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
s_t &\leftarrow \beta_2 s_{t-1} + (1 - \beta_2) (g_t - m_t)^2 + \epsilon \\
\hat{m}_t &\leftarrow \frac{m_t}{1 - \beta_1^t}, \qquad \hat{s}_t \leftarrow \frac{s_t}{1 - \beta_2^t} \\
\theta_t &\leftarrow \theta_{t-1} - \alpha \, \frac{\hat{m}_t}{\sqrt{\hat{s}_t} + \epsilon}
\end{aligned}
$$

``amsgrad=True`` divides by the running maximum of $s_t$. ``rectify=True`` (the default, as
in the official implementation and labml_nn) multiplies the step by RAdam's $r_t$
(:func:`~cadence.optim.generic.rectification`) once $\rho_t$ passes the threshold and,
before that, takes the un-adapted step $\alpha \hat{m}_t$ (``degenerate_to_sgd``) or none;
see :mod:`cadence.optim.radam`.

The scalar factors of a step fold into one step size each, as the end of Section 2 of the
Adam paper does: since
$\hat{m}_t / (\sqrt{\hat{s}_t} + \epsilon) = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \cdot m_t / (\sqrt{s_t} + \epsilon\sqrt{1 - \beta_2^t})$,
an adapted step takes $\alpha r_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)$ and
$\hat{\epsilon}_t = \epsilon \sqrt{1 - \beta_2^t}$, an un-adapted one $\alpha / (1 - \beta_1^t)$.
(Per element, a division costs as much as the whole memory traffic of the update; folded,
the update divides once per element.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import (GenericAdaptiveOptimizer, Params, rectification, running_max, update_moment,
                                   update_squared_moment)
from cadence.optim.weight_decay import Scalar, WeightDecay


class AdaBelief(GenericAdaptiveOptimizer):
    """AdaBelief with labml_nn's arguments (``eps`` defaults to the paper's $10^{-16}$)."""

    ranges = {"rho_threshold": {"low": 0.0, "low_open": True}}

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-16, weight_decay: float | WeightDecay = 0.0, amsgrad: bool = False,
                 degenerate_to_sgd: bool = True, rectify: bool = True, rho_threshold: float = 5.0, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        self.degenerate_to_sgd = bool(degenerate_to_sgd)
        self.rectify = bool(rectify)
        self.state_names = ("exp_avg", "exp_avg_var", "max_exp_avg_var") if amsgrad else ("exp_avg", "exp_avg_var")
        super().__init__(params, {"rho_threshold": rho_threshold}, lr, betas, eps, weight_decay, schedules=schedules,
                         fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\beta_1, \beta_2, \epsilon$, $\hat{\epsilon}_t$, the step size of an adapted step (``None`` before
        $\rho_t$ passes the threshold) and of an un-adapted one (``None`` without ``degenerate_to_sgd``),
        and the weight-decay terms; folded as the module docstring says."""
        beta1, beta2 = group["betas"]
        alpha, eps = group["lr"], group["eps"]
        bias_correction1 = 1 - beta1 ** step
        sqrt_bias_correction2 = math.sqrt(1 - beta2 ** step)
        # RAdam's $r_t$; without ``rectify`` every step is an adapted step with $r_t = 1$
        r = rectification(beta2, step, group["rho_threshold"]) if self.rectify else 1.0
        return {"beta1": beta1, "beta2": beta2, "eps": eps,
                # $\alpha r_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)$ and $\hat{\epsilon}_t = \epsilon \sqrt{1 - \beta_2^t}$
                "step_size": None if r is None else alpha * r * sqrt_bias_correction2 / bias_correction1,
                "eps_hat": eps * sqrt_bias_correction2,
                # $\alpha / (1 - \beta_1^t)$
                "sgd_step_size": alpha / bias_correction1 if self.degenerate_to_sgd else None,
                **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
               s_max: torch.Tensor | None = None, *, beta1: Scalar, beta2: Scalar, eps: Scalar, eps_hat: Scalar,
               step_size: Scalar | None, sgd_step_size: Scalar | None, decay: Scalar | None,
               l2: Scalar | None) -> None:
        """One AdaBelief step, in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $s_t \leftarrow \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_t)^2 + \epsilon$
        update_squared_moment(s, g - m, beta2).add_(eps)
        if s_max is not None:
            # $\hat{s}^{\max}_t \leftarrow \max(\hat{s}^{\max}_{t-1}, s_t)$
            s = running_max(s_max, s)
        if step_size is not None:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha r_t \hat{m}_t / (\sqrt{\hat{s}_t} + \epsilon)$, with the bias
            # corrections in the step size and $\hat{\epsilon}_t$
            param.addcdiv_(m, s.sqrt().add_(eps_hat), value=-step_size)
        elif sgd_step_size is not None:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha \hat{m}_t$
            param.sub_(m * sgd_step_size)
