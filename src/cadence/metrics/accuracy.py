r"""Classification accuracy: the fraction of counted samples that are hits.

Over the samples $j$ of all batches so far whose target $t_j$ is not ``ignore_index``,

$$
\text{accuracy} = \frac{\sum_j h_j}{\#\{j\}},
$$

where the hit $h_j$ depends on what the model gives:

* :class:`Accuracy`, logits $z_j \in \mathbb{R}^C$: the target is among the $k$ best
  classes (``top_k``, 1 by default). With $r_j$ the number of classes ranked before the
  target,
  $$
  r_j = \#\{c : z_{jc} \not\le z_{jt_j}\} + \#\{c < t_j : z_{jc} = z_{jt_j}\},
  \qquad h_j = [r_j < k],
  $$
  ties go to the lower class index and a NaN logit ranks above every number, as in
  ``torch.argmax``; for $k = 1$ the hit is $[\arg\max_c z_{jc} = t_j]$.
* :class:`AccuracyDirect`, predicted classes $\hat{y}_j$: $h_j = [\hat{y}_j = t_j]$.
* :class:`BinaryAccuracy`, one logit $z_j$ against $t_j \in \{0, 1\}$: $h_j = [[z_j > 0] = t_j]$.

The counts are ``int64`` tensors on the device of the updates. With no sample counted (an
empty phase, or every target ignored) the ratio is $0/0$ and :meth:`compute` returns NaN:
scikit-learn has no answer there (it refuses empty input), and checking the count would
read it from the device.
"""

from __future__ import annotations

import torch

from cadence.checks import check_number
from cadence.metrics.base import Metric, check_logits, counted


class _HitRate(Metric):
    """The states and value the accuracies share: hits over counted samples."""

    def __init__(self) -> None:
        super().__init__()
        #: $\sum_j h_j$
        self.add_state("correct", torch.zeros((), dtype=torch.long))
        #: $\#\{j\}$, the samples counted
        self.add_state("total", torch.zeros((), dtype=torch.long))

    def compute(self) -> torch.Tensor:
        r"""$\sum_j h_j / \#\{j\}$, a 0-d ``float64`` tensor (NaN when nothing was counted)."""
        return self.correct.double() / self.total


class Accuracy(_HitRate):
    """The fraction of samples whose target is among the ``top_k`` highest logits.

    * ``top_k``: how many of the best classes may hold the target (1: the highest only),
    * ``ignore_index``: a target value whose samples are not counted at all (padding,
      for instance); ``None`` counts every sample.
    """

    def __init__(self, top_k: int = 1, ignore_index: int | None = None):
        #: $k$
        self.top_k = check_number("Accuracy", "top_k", top_k, low=1, integer=True)
        #: Target value of the samples left out.
        self.ignore_index = None if ignore_index is None else check_number("Accuracy", "ignore_index", ignore_index,
                                                                            integer=True)
        super().__init__()

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits ``output`` of shape ``[..., C]`` against class indices ``target`` ``[...]``."""
        check_logits("Accuracy.update", output, target)
        keep = counted(target, self.ignore_index)
        # An ignored sample's target is read as class 0; its hit is not counted.
        t = target.where(keep, 0).unsqueeze(-1)
        # $z_{jt_j}$
        z_t = output.gather(-1, t)
        c = torch.arange(output.shape[-1], device=output.device)
        # $r_j = \#\{c : z_{jc} \not\le z_{jt_j}\} + \#\{c < t_j : z_{jc} = z_{jt_j}\}$
        r = (~(output <= z_t) | ((output == z_t) & (c < t))).sum(dim=-1)
        # $h_j = [r_j < k]$
        hit = (r < self.top_k) & keep
        self.correct = self.correct + hit.sum()
        self.total = self.total + keep.sum()


class AccuracyDirect(_HitRate):
    """The fraction of samples whose predicted class (already an index, not logits) is the target.

    * ``ignore_index``: a target value whose samples are not counted at all.
    """

    def __init__(self, ignore_index: int | None = None):
        #: Target value of the samples left out.
        self.ignore_index = None if ignore_index is None else check_number("AccuracyDirect", "ignore_index",
                                                                            ignore_index, integer=True)
        super().__init__()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: predicted classes ``pred`` against class indices ``target``, of one shape."""
        if pred.shape != target.shape:
            raise ValueError(f"AccuracyDirect.update: pred of shape {list(pred.shape)} and target of shape "
                             f"{list(target.shape)}; expected the same shape")
        keep = counted(target, self.ignore_index)
        # $h_j = [\hat{y}_j = t_j]$
        hit = (pred == target) & keep
        self.correct = self.correct + hit.sum()
        self.total = self.total + keep.sum()


class BinaryAccuracy(_HitRate):
    """The fraction of samples whose logit is on the side of its 0/1 target: positive for 1, not for 0."""

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits ``output`` against targets ``target`` (0/1, any dtype), of one shape."""
        if output.shape != target.shape:
            raise ValueError(f"BinaryAccuracy.update: output of shape {list(output.shape)} and target of shape "
                             f"{list(target.shape)}; expected the same shape")
        # $h_j = [[z_j > 0] = t_j]$
        hit = (output > 0) == target.bool()
        self.correct = self.correct + hit.sum()
        self.total = self.total + hit.numel()
