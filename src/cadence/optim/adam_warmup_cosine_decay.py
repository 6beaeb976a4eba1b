r"""Adam with a linear warm-up, then a cosine decay of the learning rate to a floor: a preset.

The warm-up of :mod:`cadence.optim.adam_warmup`, followed by the half-cosine of SGDR
(Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm Restarts*,
arXiv:1608.03983) from $\alpha$ down to the floor $\alpha_{\min}$ at step $T$:

$$
\alpha_t = \begin{cases}
t \, \alpha / w & t < w \\
\alpha_{\min} + (\alpha - \alpha_{\min}) \cdot \tfrac12 \left(1 + \cos(\pi p_t)\right),
\quad p_t = \frac{\min(t, T) - w}{T - w} & t \ge w
\end{cases}
$$

With $\alpha_{\min} = 0$ this is labml_nn's ``AdamWarmupCosineDecay``; after $T$ the rate
stays at the floor. The rate is the schedule :func:`cadence.schedule.warmup_cosine`
``(lr, warmup, total_steps, min_lr)``, the one a config's ``optimizer.schedule=cosine`` names
too, which the optimizer applies to its groups' ``lr`` itself (see
:mod:`cadence.optim.adam_warmup`).
"""

from __future__ import annotations

from cadence.checks import check_number
from cadence.optim.adam import Adam
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay
from cadence.schedule import warmup_cosine


def AdamWarmupCosineDecay(params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                          eps: float = 1e-8, weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True,
                          amsgrad: bool = False, warmup: int = 0, total_steps: int = int(1e10), min_lr: float = 0.0,
                          *, fused: bool = False) -> Adam | AMSGrad:
    """Adam (AMSGrad with ``amsgrad``) with ``warmup`` steps of linear warm-up, then cosine decay to
    ``min_lr`` at ``total_steps`` (later than ``warmup``).

    labml_nn's name and arguments, and ``min_lr``; the other arguments are :class:`~cadence.optim.adam.Adam`'s.
    """
    where = "AdamWarmupCosineDecay"
    lr = check_number(where, "lr", lr, low=0.0)
    warmup = check_number(where, "warmup", warmup, low=0, integer=True)
    total_steps = check_number(where, "total_steps", total_steps, low=1, integer=True)
    min_lr = check_number(where, "min_lr", min_lr, low=0.0, high=lr)
    # $t \alpha / w$, then $\alpha_{\min} + (\alpha - \alpha_{\min}) \frac12 (1 + \cos \pi p_t)$ from $t = w$
    schedule = warmup_cosine(lr, warmup, total_steps, min_lr, where=where)
    return (AMSGrad if amsgrad else Adam)(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          optimized_update=optimized_update, schedules={"lr": schedule}, fused=fused)
