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
in the official implementation and labml_nn) multiplies the step by RAdam's $r_t$ once
$\rho_t$ passes the threshold and, before that, takes the un-adapted step
$\alpha \hat{m}_t$ (``degenerate_to_sgd``) or none; see :mod:`cadence.optim.radam`.
"""

from __future__ import annotations

from typing import Any

import torch

from cadence.optim.generic import Params
from cadence.optim.radam import RAdam
from cadence.optim.weight_decay import Scalar, WeightDecay


class AdaBelief(RAdam):
    """AdaBelief with labml_nn's arguments (``eps`` defaults to the paper's $10^{-16}$)."""

    state_names_adam = ("exp_avg", "exp_avg_var")
    state_names_amsgrad = ("exp_avg", "exp_avg_var", "max_exp_avg_var")

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-16, weight_decay: WeightDecay | None = None, amsgrad: bool = False,
                 degenerate_to_sgd: bool = True, rectify: bool = True, rho_threshold: float = 5.0,
                 defaults: dict[str, Any] | None = None, *, fused: bool = False):
        self.rectify = bool(rectify)
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, degenerate_to_sgd, rho_threshold, defaults,
                         fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""RAdam's scalars (without ``rectify``, every step is an adapted step with $r_t = 1$), with the
        scalar factors of the step folded into one step size each, as the end of Section 2 of the Adam
        paper does: since
        $\hat{m}_t / (\sqrt{\hat{s}_t} + \epsilon) = \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \cdot m_t / (\sqrt{s_t} + \epsilon\sqrt{1 - \beta_2^t})$,
        an adapted step takes $\alpha r_t \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)$ and
        $\hat{\epsilon}_t = \epsilon \sqrt{1 - \beta_2^t}$, an un-adapted one $\alpha / (1 - \beta_1^t)$.
        (Per element, a division costs as much as the whole memory traffic of the update; folded,
        the update divides once per element.)"""
        scalars = super().scalars(group, step)
        if not self.rectify:
            scalars.update(r=1.0, rectified=True)
        lr, r, bias_correction1 = scalars.pop("lr"), scalars.pop("r"), scalars.pop("bias_correction1")
        sqrt_bias_correction2 = scalars.pop("sqrt_bias_correction2")
        return {**scalars, "step_size": lr * r * sqrt_bias_correction2 / bias_correction1,
                "eps_hat": scalars["eps"] * sqrt_bias_correction2, "sgd_step_size": lr / bias_correction1}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
               s_max: torch.Tensor | None = None, *, beta1: Scalar, beta2: Scalar, eps: Scalar, eps_hat: Scalar,
               step_size: Scalar, sgd_step_size: Scalar, rectified: bool, sgd: bool, decay: Scalar | None,
               l2: Scalar | None) -> None:
        """One AdaBelief step, in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        m.lerp_(g, 1 - beta1)
        # $s_t \leftarrow \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_t)^2 + \epsilon$
        residual = g - m
        s.mul_(beta2).addcmul_(residual, residual, value=1 - beta2).add_(eps)
        if s_max is not None:
            torch.maximum(s_max, s, out=s_max)
            s = s_max
        if rectified:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha r_t \hat{m}_t / (\sqrt{\hat{s}_t} + \epsilon)$, with the bias
            # corrections in the step size and $\hat{\epsilon}_t$
            param.addcdiv_(m, s.sqrt().add_(eps_hat), value=-step_size)
        elif sgd:
            # $\theta_t \leftarrow \theta_{t-1} - \alpha \hat{m}_t$
            param.sub_(m * sgd_step_size)
