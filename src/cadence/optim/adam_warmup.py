r"""Adam with a linear warm-up of the learning rate.

Early in training Adam's second-moment estimate rests on a few gradients and its steps can
be large and erratic; ramping the learning rate up over the first $w$ steps (Goyal et al.,
*Accurate, Large Minibatch SGD*, arXiv:1706.02677; for Adam, e.g. Liu et al., *On the
Variance of the Adaptive Learning Rate and Beyond*, arXiv:1908.03265) tames them:

$$
\alpha_t = \begin{cases} 10^{-8} + t \, \alpha / w & t < w \\ \alpha & t \ge w \end{cases}
$$

(labml_nn's form: the $10^{-8}$ keeps the very first rate non-zero). Everything else is
:class:`~cadence.optim.amsgrad.AMSGrad` (with ``amsgrad=False`` by default, i.e. Adam).
"""

from __future__ import annotations

from typing import Any

from cadence.checks import check_number
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay


class AdamWarmup(AMSGrad):
    """Adam (or AMSGrad) whose learning rate rises linearly over ``warmup`` steps."""

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: WeightDecay | None = None, optimized_update: bool = True,
                 amsgrad: bool = False, warmup: int = 0, defaults: dict[str, Any] | None = None, *,
                 fused: bool = False):
        defaults = {**(defaults or {}), "warmup": warmup}
        super().__init__(params, lr, betas, eps, weight_decay, optimized_update, amsgrad, defaults, fused=fused)

    def validate_group(self, group: dict[str, Any]) -> None:
        """Adam's checks, and ``warmup >= 0``."""
        super().validate_group(group)
        group["warmup"] = check_number(type(self).__name__, "warmup", group["warmup"], low=0, integer=True)

    def get_lr(self, group: dict[str, Any], step: int) -> float:
        r"""$\alpha_t = 10^{-8} + t \alpha / w$ during the warm-up, then $\alpha$."""
        if step < group["warmup"]:
            return 1e-8 + step * group["lr"] / group["warmup"]
        return group["lr"]
