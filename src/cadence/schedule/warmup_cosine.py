r"""Linear warm-up, then half a cosine to a floor: the learning rate of most training recipes.

$$
s(t) = \begin{cases}
v \, t / w & t < w \\
v_{\min} + (v - v_{\min}) \tfrac12 \left(1 + \cos \pi \frac{\min(t, T) - w}{T - w}\right) & t \ge w
\end{cases}
$$

rising linearly from 0 to $v$ over $w$ warm-up steps (Goyal et al., *Accurate, Large Minibatch
SGD*, arXiv:1706.02677), then the cosine of SGDR (Loshchilov & Hutter, arXiv:1608.03983),
without restarts, down to the floor $v_{\min}$ at step $T$, where it stays. Without a warm-up
($w = 0$) it is the cosine alone. It is built from :class:`~cadence.schedule.LinearWarmup`,
:class:`~cadence.schedule.Cosine` and :class:`~cadence.schedule.Sequential`, so it prints, and
parses back, as them.
"""

from __future__ import annotations

from cadence.checks import check_number
from cadence.schedule.base import Schedule
from cadence.schedule.compose import Sequential
from cadence.schedule.decay import Cosine
from cadence.schedule.warmup import LinearWarmup


def warmup_cosine(value: float, warmup: float, total_steps: float, floor: float = 0.0, *,
                  where: str = "warmup_cosine") -> Schedule:
    """Linear from 0 to ``value`` over ``warmup`` steps, then half a cosine to ``floor`` at ``total_steps``.

    ``where`` names the caller in the errors (a warm-up not shorter than ``total_steps``, a negative count).
    """
    warmup = check_number(where, "warmup", warmup, low=0)
    total_steps = check_number(where, "total_steps", total_steps, low=0, low_open=True)
    if warmup >= total_steps:
        raise ValueError(f"{where}: warmup={warmup:g} steps is not shorter than total_steps={total_steps:g}; expected "
                         f"a warm-up that ends before the cosine does (fewer warm-up steps, or more steps in all)")
    # $v_{\min} + (v - v_{\min}) \frac12 (1 + \cos \pi (t - w) / (T - w))$ from $t = w$
    decay = Cosine(value, total_steps - warmup, floor=floor)
    # $v t / w$ before
    return Sequential([LinearWarmup(value, warmup), decay], [warmup]) if warmup else decay
