r"""The learning-rate schedule the built-in experiments share: linear warm-up, then half a cosine.

$$
\eta(t) = \begin{cases}
\eta_{\max}\, t / w & t < w \\
\eta_{\min} + (\eta_{\max} - \eta_{\min}) \tfrac12 \left(1 + \cos \pi \frac{t - w}{T - w}\right) & w \le t \le T
\end{cases}
$$

over the $T$ optimizer steps of a run, with $w$ warm-up steps (Goyal et al. 2017, "Accurate,
Large Minibatch SGD") and the cosine of SGDR (Loshchilov & Hutter 2017) without restarts.
Built from :mod:`cadence.schedule`'s pieces, so it is recorded and printed as one.
"""

from __future__ import annotations

from cadence.schedule import Cosine, LinearWarmup, Schedule, Sequential

__all__ = ["warmup_cosine"]


def warmup_cosine(lr: float, warmup: int, total_steps: int, min_lr: float = 0.0, *, where: str = "config") -> Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup`` steps, then half a cosine to ``min_lr`` at ``total_steps``.

    ``where`` names the config in the error of a warm-up that does not fit in the run.
    """
    if warmup >= total_steps:
        raise ValueError(f"{where}: warmup={warmup} steps is not shorter than the run's {total_steps} steps; "
                         f"expected a warm-up shorter than the run (fewer warmup steps, or more epochs)")
    decay = Cosine(lr, total_steps - warmup, floor=min_lr)
    return Sequential([LinearWarmup(lr, warmup), decay], [warmup]) if warmup else decay
