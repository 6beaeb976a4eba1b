r"""Group Normalization.

Wu & He, *Group Normalization*, ECCV 2018, arXiv:1803.08494.

Every normalization of the family computes (Eq. 1-2)

$$
\hat{x}_i = \frac{x_i - \mu_i}{\sigma_i}, \qquad
\mu_i = \frac{1}{m} \sum_{k \in \mathcal{S}_i} x_k, \qquad
\sigma_i = \sqrt{\frac{1}{m} \sum_{k \in \mathcal{S}_i} (x_k - \mu_i)^2 + \epsilon}
$$

and they differ in the set $\mathcal{S}_i$ of the $m$ values that share the statistics
of value $i = (i_N, i_C, i_H, i_W)$. Batch normalization takes the channel across the
batch ($k_C = i_C$), layer normalization the whole sample ($k_N = i_N$), instance
normalization one channel of one sample. Group normalization splits the $C$ channels
into $G$ groups of $C/G$ and takes one group of one sample (Eq. 7):

$$
\mathcal{S}_i = \Big\{k \;\Big|\; k_N = i_N,\ \Big\lfloor \frac{k_C}{C/G} \Big\rfloor
= \Big\lfloor \frac{i_C}{C/G} \Big\rfloor \Big\}
$$

followed by a scale and shift per channel, $y_i = \gamma_{i_C} \hat{x}_i + \beta_{i_C}$.
$G = 1$ is layer normalization with a per-channel affine; $G = C$ instance normalization.
No statistic depends on the batch, so training and evaluation compute the same.

The reference path subtracts $\mu_i$ before squaring (the stable two-pass variance);
the fast path is PyTorch's native kernel (``torch.nn.functional.group_norm``). Both
match ``torch.nn.GroupNorm``, whose parameter names (``weight`` $= \gamma$, ``bias``
$= \beta$) this layer shares; float16 and bfloat16 inputs have float32 statistics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.common import (channel_view, check_channels, upcast,
                                    register_affine, reset_affine)


def check_groups(groups: int, channels: int, where: str) -> None:
    """Refuse a group count $G$ that does not divide the channels $C$."""
    if channels % groups:
        divisors = ", ".join(str(g) for g in range(1, channels + 1) if channels % g == 0)
        raise ValueError(f"{where}: groups={groups} does not divide channels={channels}; expected a divisor of "
                         f"{channels} ({divisors})")


def grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``x`` ``[B, C, *]`` viewed as ``[B, G, C/G * prod(*)]``: one row per sample and group (empty batches too)."""
    return x.reshape(x.shape[0], groups, math.prod(x.shape[1:]) // groups)


def group_normalized(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    r"""$\hat{x}$ of ``x`` ``[B, C, *]`` normalized per sample and group (float32 for low-precision ``x``).

    The reference equations, with $\mu_i$ subtracted before squaring (the stable two-pass variance).
    """
    # ``[B, G, m]``: the set $\mathcal{S}_i$ is one row
    x_g = grouped(upcast(x), groups)
    # $\mu_i = \frac{1}{m} \sum_{k \in \mathcal{S}_i} x_k$
    mu = x_g.mean(dim=-1, keepdim=True)
    centered = x_g - mu
    # $\sigma_i = \sqrt{\frac{1}{m} \sum_{k \in \mathcal{S}_i} (x_k - \mu_i)^2 + \epsilon}$
    sigma = torch.sqrt(centered.square().mean(dim=-1, keepdim=True) + eps)
    # $\hat{x}_i = \frac{x_i - \mu_i}{\sigma_i}$
    return (centered / sigma).reshape(x.shape)


class GroupNorm(nn.Module):
    r"""Group normalization of inputs ``[B, C, *]``: $G$ groups of $C/G$ channels per sample.

    * ``groups``: $G$, which must divide ``channels``,
    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sigma_i$,
    * ``affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``) per channel,
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, groups: int, channels: int, *, eps: float = 1e-5, affine: bool = True,
                 reference: bool = False):
        super().__init__()
        self.groups = check_number("GroupNorm", "groups", groups, low=1, integer=True)
        self.channels = check_number("GroupNorm", "channels", channels, low=1, integer=True)
        check_groups(groups, channels, "GroupNorm")
        self.eps = check_number("GroupNorm", "eps", eps, low=0, low_open=True)
        self.affine = bool(affine)
        self.reference = bool(reference)
        #: The layer as its input errors name it, built once: ``forward`` formats a message only when it raises.
        self.where = f"GroupNorm({self.groups}, {self.channels})"
        # $\gamma$ and $\beta$
        register_affine(self, (channels,), self.affine)

    def reset_parameters(self) -> None:
        r"""Set $\gamma = 1$ and $\beta = 0$."""
        reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *]``; the output has the shape and dtype of ``x``."""
        check_channels(x, self.channels, self.where)
        if self.reference:
            return self._reference(x)
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        x_hat = group_normalized(x, self.groups, self.eps)
        if self.affine:
            # $y_i = \gamma_{i_C} \hat{x}_i + \beta_{i_C}$
            x_hat = channel_view(self.weight, x.dim()) * x_hat + channel_view(self.bias, x.dim())
        return x_hat.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return f"{self.groups}, {self.channels}, eps={self.eps}, affine={self.affine}, reference={self.reference}"
