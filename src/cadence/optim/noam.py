r"""Adam with the learning rate of the Transformer paper ("Noam").

Vaswani et al., *Attention Is All You Need*, NeurIPS 2017, arXiv:1706.03762, Section 5.3:
the rate rises linearly for $w$ warm-up steps, then decays with the inverse square root
of the step, scaled by the model width $d_{\text{model}}$:

$$
\alpha_t = \alpha \cdot d_{\text{model}}^{-0.5} \cdot \min\left(t^{-0.5},\; t \cdot w^{-1.5}\right)
$$

(the paper has $\alpha = 1$; here ``lr`` is the factor $\alpha$). The two branches meet at
$t = w$. Everything else is :class:`~cadence.optim.amsgrad.AMSGrad` (Adam by default).
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay


class Noam(AMSGrad):
    """Adam (or AMSGrad) with the Noam rate; ``warmup`` $w \\ge 1$, ``d_model`` $\\ge 1$."""

    def __init__(self, params: Params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.98),
                 eps: float = 1e-9, weight_decay: WeightDecay | None = None, optimized_update: bool = True,
                 amsgrad: bool = False, warmup: int = 4000, d_model: int = 512,
                 defaults: dict[str, Any] | None = None, *, fused: bool = False):
        defaults = {**(defaults or {}), "warmup": warmup, "d_model": d_model}
        super().__init__(params, lr, betas, eps, weight_decay, optimized_update, amsgrad, defaults, fused=fused)

    def validate_group(self, group: dict[str, Any]) -> None:
        """Adam's checks, ``warmup >= 1`` and ``d_model >= 1``."""
        super().validate_group(group)
        group["warmup"] = check_number(type(self).__name__, "warmup", group["warmup"], low=1, integer=True)
        group["d_model"] = check_number(type(self).__name__, "d_model", group["d_model"], low=1, integer=True)

    def get_lr(self, group: dict[str, Any], step: int) -> float:
        r"""$\alpha \cdot d_{\text{model}}^{-0.5} \cdot \min(t^{-0.5}, t \cdot w^{-1.5})$."""
        return group["lr"] * group["d_model"] ** -0.5 * min(step ** -0.5, step * group["warmup"] ** -1.5)
