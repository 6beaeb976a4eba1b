r"""The weighted mean of a scalar over an epoch: a loss, or anything a step reports.

A batch $b$ reports a value $x_b$ (its mean loss, say) over $n_b$ samples; over the
batches so far the mean over samples is

$$
\bar{x} = \frac{\sum_b n_b \, x_b}{\sum_b n_b},
$$

which weighs a short last batch by its size (a plain mean over batches would not). The sum
is kept in ``float64`` and the count in ``int64``, whatever the values' dtype (half-precision
losses included). With nothing counted it is $0/0$, and :meth:`Mean.compute` returns NaN.
"""

from __future__ import annotations

import torch

from cadence.metrics.base import Metric


class Mean(Metric):
    """The count-weighted mean of scalars."""

    def __init__(self) -> None:
        super().__init__()
        #: $\sum_b n_b x_b$
        self.add_state("weighted_sum", torch.zeros((), dtype=torch.float64))
        #: $\sum_b n_b$
        self.add_state("count", torch.zeros((), dtype=torch.long))

    def update(self, value: float | torch.Tensor, count: int | torch.Tensor = 1) -> None:
        """Add a value ``value`` (a number or a 0-d tensor) that stands for ``count`` samples
        (an int, or a 0-d integer tensor on the value's device)."""
        # $\sum_b n_b x_b$ and $\sum_b n_b$
        self.weighted_sum = self.weighted_sum + torch.as_tensor(value).double() * count
        self.count = self.count + count

    def compute(self) -> torch.Tensor:
        r"""$\bar{x}$, a 0-d ``float64`` tensor (NaN when nothing was counted)."""
        return self.weighted_sum / self.count


class MeanLoss(Mean):
    """:class:`Mean` under the name the trainer and earlier code use for the mean loss: ``update(loss, count)``."""
