r"""Perplexity and bits per character: the mean cross-entropy of a language model, in two units.

For logits $z_j \in \mathbb{R}^C$ over the tokens $j$ of all batches so far whose target
$t_j$ is not ``ignore_index``, the model gives the target the log-probability
$\log p_j(t_j) = z_{jt_j} - \log \sum_c e^{z_{jc}}$, and the mean cross-entropy in nats is

$$
H = \frac{1}{\#\{j\}} \sum_j -\log p_j(t_j).
$$

:class:`Perplexity` is $e^{H}$, the number of equally likely tokens the model is as unsure
as; :class:`BitsPerCharacter` is $H / \ln 2$, the cross-entropy in bits (per character for
a character-level model). Both keep the exact sum $\sum_j -\log p_j(t_j)$ in ``float64``
and the count in ``int64``, so the value over a phase is that of all its tokens at once,
not a mean of batch means. With no token counted $H$ is $0/0$: both return NaN.
"""

from __future__ import annotations

import math

import torch

from cadence.checks import check_number
from cadence.metrics.base import Metric, check_logits, counted


class _CrossEntropy(Metric):
    """The sum of the targets' negative log-probabilities and the count of tokens, shared by the two units."""

    def __init__(self, ignore_index: int | None = None):
        #: Target value of the tokens left out (padding).
        self.ignore_index = None if ignore_index is None else check_number(type(self).__name__, "ignore_index",
                                                                            ignore_index, integer=True)
        super().__init__()
        #: $\sum_j -\log p_j(t_j)$, in nats
        self.add_state("nll", torch.zeros((), dtype=torch.float64))
        #: $\#\{j\}$, the tokens counted
        self.add_state("count", torch.zeros((), dtype=torch.long))

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Count one batch: logits ``output`` of shape ``[..., C]`` against class indices ``target`` ``[...]``."""
        check_logits(f"{type(self).__name__}.update", output, target)
        keep = counted(target, self.ignore_index)
        # An ignored token's target is read as class 0; its term is not counted.
        t = target.where(keep, 0).unsqueeze(-1)
        # Half-precision logits are normalised in float32.
        z = output.to(torch.promote_types(output.dtype, torch.float32))
        # $-\log p_j(t_j) = \log \sum_c e^{z_{jc}} - z_{jt_j}$
        nll = z.logsumexp(dim=-1) - z.gather(-1, t).squeeze(-1)
        self.nll = self.nll + nll.where(keep, 0).sum(dtype=torch.float64)
        self.count = self.count + keep.sum()

    def cross_entropy(self) -> torch.Tensor:
        r"""$H$, the mean cross-entropy in nats (NaN when nothing was counted)."""
        return self.nll / self.count


class Perplexity(_CrossEntropy):
    r"""$e^{H}$: the exponential of the mean cross-entropy of the counted tokens.

    * ``ignore_index``: a target value whose tokens are not counted at all (padding).
    """

    def compute(self) -> torch.Tensor:
        r"""$e^{H}$, a 0-d ``float64`` tensor (NaN when nothing was counted)."""
        return torch.exp(self.cross_entropy())


class BitsPerCharacter(_CrossEntropy):
    r"""$H / \ln 2$: the mean cross-entropy of the counted tokens (characters), in bits.

    * ``ignore_index``: a target value whose tokens are not counted at all (padding).
    """

    def compute(self) -> torch.Tensor:
        r"""$H / \ln 2$, a 0-d ``float64`` tensor (NaN when nothing was counted)."""
        return self.cross_entropy() / math.log(2)
