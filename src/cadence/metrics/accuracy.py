r"""Classification accuracy.

For logits $z_j \in \mathbb{R}^C$ and targets $t_j$ over the samples $j$ of all
batches counted so far, excluding those whose target is the ``ignore_index``,

$$
\text{accuracy} = \frac{\sum_j [\arg\max_c z_{jc} = t_j]}{\#\{j\}}.
$$

With no sample counted the ratio is $0/0$, and :meth:`Accuracy.compute` returns NaN
rather than raising: checking for zero would have to read the count from the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cadence.checks import check_number
from cadence.metrics.state import Metric


@dataclass
class AccuracyState:
    """The running counts of one phase, as 0-d ``int64`` tensors on the device of the updates."""

    #: $\sum_j [\arg\max_c z_{jc} = t_j]$
    correct: torch.Tensor
    #: $\#\{j\}$: the samples counted (targets equal to ``ignore_index`` are not)
    total: torch.Tensor


class Accuracy(Metric[AccuracyState]):
    """The fraction of samples whose highest logit is at the target class.

    * ``ignore_index``: a target value whose samples are not counted at all (padding,
      for instance); ``None`` counts every sample.
    """

    def __init__(self, ignore_index: int | None = None):
        #: Target value of the samples left out.
        self.ignore_index = None if ignore_index is None else check_number("Accuracy", "ignore_index", ignore_index,
                                                                            integer=True)
        super().__init__()

    def create_state(self) -> AccuracyState:
        """Zero correct out of zero."""
        return AccuracyState(correct=torch.zeros((), dtype=torch.long), total=torch.zeros((), dtype=torch.long))

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits ``output`` of shape ``[..., C]`` against class indices ``target`` ``[...]``."""
        if output.dim() < 1 or output.shape[-1] < 1 or output.shape[:-1] != target.shape:
            raise ValueError(f"Accuracy.update: output of shape {list(output.shape)} and target of shape "
                             f"{list(target.shape)}; expected logits [..., C] with C >= 1 and targets [...]")
        if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
            raise TypeError(f"Accuracy.update: target has dtype {target.dtype}; expected integer class indices")
        # $[\arg\max_c z_{jc} = t_j]$
        hit = output.argmax(dim=-1) == target
        if self.ignore_index is None:
            counted = torch.full((), target.numel(), dtype=torch.long, device=target.device)
        else:
            keep = target != self.ignore_index
            hit = hit & keep
            counted = keep.sum()
        self.state.correct = self.state.correct + hit.sum()
        self.state.total = self.state.total + counted

    def compute(self) -> torch.Tensor:
        """Correct over counted, a 0-d float tensor (NaN when nothing was counted)."""
        return self.state.correct / self.state.total

    def reset(self) -> None:
        """Zero both counts, on the device they are on."""
        self.state.correct = torch.zeros_like(self.state.correct)
        self.state.total = torch.zeros_like(self.state.total)
