r"""The confusion matrix, and the precision, recall and F1 score read from it.

Over the samples $j$ of all batches so far whose target $t_j$ is not ``ignore_index``,
with predicted class $\hat{y}_j = \arg\max_c z_{jc}$ from logits $z_j \in \mathbb{R}^C$,
the confusion matrix counts each pair of true and predicted class (rows true, columns
predicted, as scikit-learn's):

$$
M_{ab} = \#\{j : t_j = a,\ \hat{y}_j = b\}.
$$

Each class $c$ then has its true positives, predictions and support,

$$
TP_c = M_{cc}, \qquad P_c = \sum_a M_{ac}, \qquad S_c = \sum_b M_{cb},
$$

and each score is a ratio $r_c = n_c / d_c$ of them, with $0/0 = 0$ (a class never
predicted has precision 0, as scikit-learn's ``zero_division=0``, without a warning):

$$
\text{precision}_c = \frac{TP_c}{P_c}, \qquad
\text{recall}_c = \frac{TP_c}{S_c}, \qquad
F_{1,c} = \frac{2\,TP_c}{P_c + S_c}
\quad \Bigl(= \frac{2\,\text{precision}_c\,\text{recall}_c}{\text{precision}_c + \text{recall}_c}\Bigr).
$$

``average`` combines them over the classes $K$, every class but ``ignore_index``:

* ``"micro"``: $\sum_{c \in K} n_c / \sum_{c \in K} d_c$ (for single-label data without an
  ignored class, precision, recall and F1 all equal the accuracy),
* ``"macro"``: the mean of $r_c$ over the classes of $K$ that occur (as a target or a
  prediction), as scikit-learn averages over the labels it sees,
* ``"weighted"``: $\sum_{c \in K} S_c\, r_c / \sum_{c \in K} S_c$,
* ``"binary"`` (``num_classes=2``): $r_1$, the positive class's score,
* ``None``: the vector of every $r_c$, NaN at ``ignore_index``.

Leaving ``ignore_index`` out of $K$ is what makes a macro average with an ignored class
right: its samples are not counted, so it would otherwise enter the mean with a score of 0
(torchmetrics' issues #1691 and #2441). It is then scikit-learn's answer for the samples
not ignored with ``labels`` set to the classes of $K$.

The matrix is an ``int64`` tensor on the device of the updates. With no sample counted (an
empty phase, or every target ignored) every score is NaN (scikit-learn refuses empty input)
and the matrix is zeros.

A model with one logit $z$ per sample (positive for $z > 0$) gives these metrics the logits
$(0, z)$: ``torch.stack((torch.zeros_like(z), z), -1)``.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch

from cadence.checks import check_number
from cadence.metrics.base import Metric, check_logits, counted

#: The values of ``average``.
AVERAGES = ("micro", "macro", "weighted", "binary", None)


class ConfusionMatrix(Metric):
    """The ``num_classes`` x ``num_classes`` counts $M_{ab}$ of samples of class $a$ predicted as $b$.

    * ``ignore_index``: a target value whose samples are not counted at all.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        where = type(self).__name__
        #: $C$
        self.num_classes = check_number(where, "num_classes", num_classes, low=1, integer=True)
        #: Target value of the samples left out.
        self.ignore_index = None if ignore_index is None else check_number(where, "ignore_index", ignore_index,
                                                                            integer=True)
        super().__init__()
        #: $M$
        self.add_state("matrix", torch.zeros(self.num_classes, self.num_classes, dtype=torch.long))

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits ``output`` of shape ``[..., C]`` against class indices ``target`` ``[...]``."""
        C = self.num_classes
        check_logits(f"{type(self).__name__}.update", output, target, C)
        keep = counted(target, self.ignore_index)
        # An ignored sample's target is read as class 0; it adds 0 to the count.
        t = target.where(keep, 0)
        # $\hat{y}_j = \arg\max_c z_{jc}$
        y_hat = output.argmax(dim=-1)
        # $M_{t_j \hat{y}_j} \mathrel{+}= 1$ for every counted $j$ (index_add, unlike bincount, never reads the device)
        self.matrix = self.matrix.flatten().index_add(0, (t * C + y_hat).flatten(), keep.flatten().long()).view(C, C)

    def compute(self) -> torch.Tensor:
        """$M$, an ``int64`` tensor ``[C, C]`` (a copy: rows are true classes, columns predicted ones)."""
        return self.matrix.clone()


class _ClassScore(ConfusionMatrix):
    """A per-class ratio $r_c = n_c / d_c$ of the confusion matrix's counts, averaged as ``average`` says."""

    def __init__(self, num_classes: int, average: str | None = "macro", ignore_index: int | None = None):
        super().__init__(num_classes, ignore_index)
        where = type(self).__name__
        if average not in AVERAGES:
            raise ValueError(f"{where}: average={average!r} is not one of {', '.join(map(repr, AVERAGES))}")
        if average == "binary" and self.num_classes != 2:
            raise ValueError(f"{where}: average='binary' scores the positive class of two; got num_classes="
                             f"{self.num_classes}, expected num_classes=2")
        #: How the classes' scores combine.
        self.average = average

    @abstractmethod
    def ratio(self, tp: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """$(n_c, d_c)$ from $TP_c$, $P_c$ and $S_c$."""

    def compute(self) -> torch.Tensor:
        """The score: a 0-d ``float64`` tensor, or ``[C]`` for ``average=None`` (NaN when nothing was counted)."""
        M = self.matrix.double()
        # $TP_c$, $P_c$, $S_c$
        tp, p, s = M.diagonal(), M.sum(dim=0), M.sum(dim=1)
        n, d = self.ratio(tp, p, s)
        # $r_c = n_c / d_c$, with $0/0 = 0$
        r = _ratio(n, d)
        # $[c \in K]$
        K = counted(torch.arange(self.num_classes, device=M.device), self.ignore_index)
        if self.average == "micro":
            value = _ratio((n * K).sum(), (d * K).sum())
        elif self.average == "macro":
            occurring = K & (s + p > 0)
            value = (r * occurring).sum() / occurring.sum()
        elif self.average == "weighted":
            value = (s * K * r).sum() / (s * K).sum()
        else:
            value = r.where(K, math.nan)
            if self.average == "binary":
                value = value[1]
        # Nothing counted: NaN, whatever the average.
        return value.where(s.sum() > 0, math.nan)


def _ratio(n: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """$n / d$, with $0/0 = 0$."""
    return torch.where(d > 0, n / d, 0.0)


class Precision(_ClassScore):
    r"""Of the samples predicted as a class, the fraction that are of it: $TP_c / P_c$, averaged over classes.

    * ``num_classes``: $C$, the last dimension of the logits,
    * ``average``: ``"micro"``, ``"macro"`` (default), ``"weighted"``, ``"binary"`` (positive class
      of two) or ``None`` (per class),
    * ``ignore_index``: a target value whose samples are not counted, and a class left out of
      the average.
    """

    def ratio(self, tp: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""$\text{precision}_c = TP_c / P_c$"""
        return tp, p


class Recall(_ClassScore):
    r"""Of the samples of a class, the fraction predicted as it: $TP_c / S_c$, averaged over classes.

    Arguments as :class:`Precision`'s.
    """

    def ratio(self, tp: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""$\text{recall}_c = TP_c / S_c$"""
        return tp, s


class F1(_ClassScore):
    r"""The harmonic mean of precision and recall, $2\,TP_c / (P_c + S_c)$, averaged over classes.

    Arguments as :class:`Precision`'s.
    """

    def ratio(self, tp: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""$F_{1,c} = 2\,TP_c / (P_c + S_c)$"""
        return 2 * tp, p + s
