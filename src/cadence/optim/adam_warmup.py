r"""Adam with a linear warm-up of the learning rate: a preset.

Early in training Adam's second-moment estimate rests on a few gradients and its steps can
be large and erratic; ramping the learning rate up over the first $w$ steps (Goyal et al.,
*Accurate, Large Minibatch SGD*, arXiv:1706.02677; for Adam, e.g. Liu et al., *On the
Variance of the Adaptive Learning Rate and Beyond*, arXiv:1908.03265) tames them:

$$
\alpha_t = \begin{cases} t \, \alpha / w & t < w \\ \alpha & t \ge w \end{cases}
$$

at step $t$, counted from 1 (labml_nn adds $10^{-8}$, which only kept $\alpha_0$ non-zero,
and step 0 is never taken). The rate is the schedule
:class:`~cadence.schedule.LinearWarmup` ``(lr, warmup)``, which the optimizer applies to its
groups' ``lr`` itself, by the one mechanism that binds schedules to hyper-parameters (see
:mod:`cadence.optim.generic`); the update is :class:`~cadence.optim.adam.Adam`'s, or
:class:`~cadence.optim.amsgrad.AMSGrad`'s with ``amsgrad=True``.
"""

from __future__ import annotations

from cadence.checks import check_number
from cadence.optim.adam import Adam
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay
from cadence.schedule import LinearWarmup


def AdamWarmup(params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True, amsgrad: bool = False,
               warmup: int = 0, *, fused: bool = False) -> Adam | AMSGrad:
    """Adam (AMSGrad with ``amsgrad``) whose learning rate rises linearly to ``lr`` over ``warmup`` steps.

    labml_nn's name and arguments; the other arguments are :class:`~cadence.optim.adam.Adam`'s.
    """
    lr = check_number("AdamWarmup", "lr", lr, low=0.0)
    warmup = check_number("AdamWarmup", "warmup", warmup, low=0, integer=True)
    # $\alpha_t = t \alpha / w$ for $t < w$, then $\alpha$
    schedule = LinearWarmup(lr, warmup)
    return (AMSGrad if amsgrad else Adam)(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          optimized_update=optimized_update, schedules={"lr": schedule}, fused=fused)
