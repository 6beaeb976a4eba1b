r"""Adam with the learning rate of the Transformer paper ("Noam"): a preset.

Vaswani et al., *Attention Is All You Need*, NeurIPS 2017, arXiv:1706.03762, Section 5.3:
the rate rises linearly for $w$ warm-up steps, then decays with the inverse square root
of the step, scaled by the model width $d_{\text{model}}$:

$$
\alpha_t = \alpha \cdot d_{\text{model}}^{-0.5} \cdot \min\left(t^{-0.5},\; t \cdot w^{-1.5}\right)
$$

(the paper has $\alpha = 1$; here ``lr`` is the factor $\alpha$). The two branches meet at
$t = w$. The rate is the schedule :class:`~cadence.schedule.Noam` ``(lr, d_model, warmup)``,
which the optimizer applies to its groups' ``lr`` itself, at step $t$ counted from 1 (see
:mod:`cadence.optim.adam_warmup`); the update is :class:`~cadence.optim.adam.Adam`'s, or
:class:`~cadence.optim.amsgrad.AMSGrad`'s with ``amsgrad=True``.
"""

from __future__ import annotations

from cadence import schedule
from cadence.checks import check_number
from cadence.optim.adam import Adam
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.generic import Params
from cadence.optim.weight_decay import WeightDecay


def Noam(params: Params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-9,
         weight_decay: float | WeightDecay = 0.0, optimized_update: bool = True, amsgrad: bool = False,
         warmup: int = 4000, d_model: int = 512, *, fused: bool = False) -> Adam | AMSGrad:
    """Adam (AMSGrad with ``amsgrad``) with the Noam rate; ``warmup`` $w \\ge 1$, ``d_model`` $\\ge 1$.

    labml_nn's name, arguments and defaults; the other arguments are :class:`~cadence.optim.adam.Adam`'s.
    """
    lr = check_number("Noam", "lr", lr, low=0.0)
    warmup = check_number("Noam", "warmup", warmup, low=1, integer=True)
    d_model = check_number("Noam", "d_model", d_model, low=1, integer=True)
    # $\alpha \cdot d_{\text{model}}^{-0.5} \cdot \min(t^{-0.5}, t \cdot w^{-1.5})$
    rate = schedule.Noam(lr, d_model, warmup)
    return (AMSGrad if amsgrad else Adam)(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          optimized_update=optimized_update, schedules={"lr": rate}, fused=fused)
