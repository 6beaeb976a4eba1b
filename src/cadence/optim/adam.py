r"""Adam.

Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015, arXiv:1412.6980.

With gradient $g_t$, learning rate $\alpha$, decay rates $\beta_1, \beta_2$ and
$\epsilon$, Algorithm 1 of the paper is

$$
\begin{aligned}
m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
v_t &\leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
\hat{m}_t &\leftarrow \frac{m_t}{1 - \beta_1^t} \\
\hat{v}_t &\leftarrow \frac{v_t}{1 - \beta_2^t} \\
\theta_t &\leftarrow \theta_{t-1} - \alpha \frac{\hat{m}_t}{\sqrt{\hat{v}_t} + \epsilon}
\end{aligned}
$$

The end of Section 2 folds the bias corrections into the step size, saving two
elementwise operations:

$$
\alpha_t = \alpha \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}, \qquad
\theta_t \leftarrow \theta_{t-1} - \alpha_t \frac{m_t}{\sqrt{v_t} + \hat{\epsilon}}
$$

**The two updates differ in where $\epsilon$ sits.** The textbook update
(``optimized_update=False``) adds $\epsilon$ to $\sqrt{\hat{v}_t}$, exactly as
``torch.optim.Adam`` does. The folded update (``optimized_update=True``, labml_nn's
default) adds $\hat{\epsilon} = \epsilon$ to $\sqrt{v_t}$, which equals the textbook update
with $\epsilon\sqrt{1 - \beta_2^t}$ in place of $\epsilon$: a slightly smaller $\epsilon$
early in training, the same one as $t$ grows. Both reduce to one elementwise form,

$$
\theta_t \leftarrow \theta_{t-1} - \text{step\_size} \cdot
\frac{m_t}{\sqrt{v_t} / c_t + \epsilon}
$$

with $(\text{step\_size}, c_t) = \left(\frac{\alpha}{1 - \beta_1^t}, \sqrt{1 - \beta_2^t}\right)$
for the textbook update and $(\alpha_t, 1)$ for the folded one (whose division by 1 is
skipped). The operations are the ones ``torch.optim.Adam`` performs, in its order, so that
the textbook update rounds as torch's does: a long run then stays within float32 noise of
torch's instead of drifting apart.

Weight decay is the pluggable :class:`~cadence.optim.weight_decay.WeightDecay`: coupled
(a float, as ``torch.optim.Adam(weight_decay=λ)`` reads it) or decoupled
(``WeightDecay(λ)``, ``torch.optim.AdamW``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from cadence.optim.generic import (GenericAdaptiveOptimizer, Params, adam_denominator, adam_scalars, update_moment,
                                   update_squared_moment)
from cadence.optim.weight_decay import Scalar, WeightDecay


class Adam(GenericAdaptiveOptimizer):
    """Adam, with labml_nn's arguments.

    * ``lr``: $\\alpha$; ``betas``: $(\\beta_1, \\beta_2)$; ``eps``: $\\epsilon$ (default ``1e-8``,
      torch's; labml_nn used ``1e-16``),
    * ``weight_decay``: a float $\\lambda$ is torch's coupled L2, as in ``torch.optim.Adam(weight_decay=λ)``;
      ``WeightDecay(λ)`` is decoupled (``torch.optim.AdamW``), ``absolute=True`` without the rate,
    * ``optimized_update``: fold the bias corrections into the step size (see the module
      docstring for how this moves $\\epsilon$); ``False`` gives torch's textbook update,
    * ``schedules``: hyper-parameter schedules the optimizer applies itself (see the template),
    * ``fused``: one compiled update per group on flat buffers instead of one per parameter.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        self.optimized_update = bool(optimized_update)
        super().__init__(params, {}, lr, betas, eps, weight_decay, schedules=schedules, fused=fused)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        r"""$\beta_1, \beta_2, \epsilon$, the step size and $c_t$ at step $t$, and the weight-decay terms."""
        return {**adam_scalars(group, step, self.optimized_update), **self.weight_decay.scalars(group)}

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *,
               beta1: Scalar, beta2: Scalar, eps: Scalar, step_size: Scalar, c: Scalar | None,
               decay: Scalar | None, l2: Scalar | None) -> None:
        """One Adam step on ``param`` with first moment ``m`` and second moment ``v``, in place."""
        g = WeightDecay.apply(param, grad, decay, l2)
        # $m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t$
        update_moment(m, g, beta1)
        # $v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2$
        update_squared_moment(v, g, beta2)
        # $\theta_t \leftarrow \theta_{t-1} - \text{step\_size} \cdot m_t / (\sqrt{v_t} / c_t + \epsilon)$
        param.addcdiv_(m, adam_denominator(v, c, eps), value=-step_size)
