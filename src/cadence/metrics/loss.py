r"""The mean loss over the samples of an epoch.

A batch $b$ of $n_b$ samples reports its mean loss $\ell_b$; over the batches so far
the mean over samples is

$$
\bar{\ell} = \frac{\sum_b n_b \, \ell_b}{\sum_b n_b},
$$

which weighs a short last batch by its size (a plain mean over batches would not).
With no batch counted it is $0/0$, and :meth:`MeanLoss.compute` returns NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cadence.metrics.state import Metric


@dataclass
class MeanLossState:
    """The running sums of one phase, as 0-d tensors on the device of the updates."""

    #: $\sum_b n_b \ell_b$, in at least ``float32``
    weighted_sum: torch.Tensor
    #: $\sum_b n_b$
    count: torch.Tensor


class MeanLoss(Metric[MeanLossState]):
    """The sample-weighted mean of the batches' mean losses."""

    def create_state(self) -> MeanLossState:
        """Nothing summed over no samples."""
        return MeanLossState(weighted_sum=torch.zeros(()), count=torch.zeros((), dtype=torch.long))

    def update(self, loss: torch.Tensor, count: int | torch.Tensor = 1) -> None:
        """Add a batch whose mean loss is ``loss`` (a 0-d floating-point tensor) over ``count`` samples
        (an int, or a 0-d integer tensor on the loss's device)."""
        # Half-precision losses are summed in float32.
        dtype = torch.promote_types(loss.dtype, torch.float32)
        # $\sum_b n_b \ell_b$ and $\sum_b n_b$
        self.state.weighted_sum = self.state.weighted_sum.to(loss.device, dtype) + loss.detach().to(dtype) * count
        self.state.count = self.state.count.to(loss.device) + count

    def compute(self) -> torch.Tensor:
        r"""$\bar{\ell}$, a 0-d tensor (NaN when nothing was counted)."""
        return self.state.weighted_sum / self.state.count

    def reset(self) -> None:
        """Zero both sums, on the device they are on."""
        self.state.weighted_sum = torch.zeros_like(self.state.weighted_sum)
        self.state.count = torch.zeros_like(self.state.count)
