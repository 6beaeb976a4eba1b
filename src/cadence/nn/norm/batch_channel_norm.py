r"""Batch-Channel Normalization.

Qiao, Wang, Liu, Shen & Yuille, *Micro-Batch Training with Batch-Channel Normalization
and Weight Standardization*, arXiv:1903.10520, 2019 (Section 5), as labml_nn implements it.

Channel-based normalizations (group, layer) keep no batch statistics, which helps
micro-batches but lets a network drift into *elimination singularities*: channels that
are always inactive. Batch-Channel Normalization puts a batch normalization, which
keeps every channel's activations centred over the data, before a channel (group)
normalization:

$$
\mathrm{BCN}(X) = \mathrm{CN}\big(\mathrm{BN}(X)\big)
$$

**Estimated batch normalization.** With micro-batches the statistics of one batch are
too noisy, so the batch normalization uses running estimates $\hat{\mu}_c$,
$\hat{\sigma}^2_c$ in training too, moved towards each batch's statistics with rate
$r$ before normalizing, and not differentiated:

$$
\begin{aligned}
\hat{\mu}_c &\leftarrow (1 - r)\, \hat{\mu}_c + r\, \frac{1}{BHW} \sum_{b,h,w} X_{b,c,h,w} \\
\hat{\sigma}^2_c &\leftarrow (1 - r)\, \hat{\sigma}^2_c + r\, \frac{1}{BHW}
    \sum_{b,h,w} \big(X_{b,c,h,w} - \mu_c\big)^2 \\
\dot{X}_{\cdot,c} &= \gamma_c \frac{X_{\cdot,c} - \hat{\mu}_c}{\sqrt{\hat{\sigma}^2_c + \epsilon}} + \beta_c
\end{aligned}
$$

with $\mu_c$ the batch's mean (subtracted before squaring: the stable two-pass
variance, where labml_nn takes $\mathrm{E}[X^2] - \mathrm{E}[X]^2$). ``estimate=False``
uses an ordinary :class:`~cadence.nn.norm.BatchNorm` instead.

**Channel normalization** is group normalization (see
:mod:`cadence.nn.norm.group_norm`) with the scale and shift per *group*,
$y = \gamma_g \hat{x} + \beta_g$, rather than per channel.

Every layer has a reference path (these equations in autograd) and a fast path built on
PyTorch's native kernels (``batch_norm_update_stats``, ``batch_norm`` with the
estimates, ``group_norm``); the two agree. The estimates' names follow PyTorch's
(``running_mean``, ``running_var``), as do the scales' and shifts' (``weight``, ``bias``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.batch_norm import BatchNorm
from cadence.nn.norm.common import (RunningStatsNorm, channel_view, check_channels,
                                    register_affine, reset_affine, upcast)
from cadence.nn.norm.group_norm import check_groups, group_normalized, grouped


class EstimatedBatchNorm(RunningStatsNorm):
    r"""Batch normalization of ``[B, C, *]`` with running estimates $\hat{\mu}_c$, $\hat{\sigma}^2_c$ in training too.

    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sqrt{\hat{\sigma}^2_c + \epsilon}$,
    * ``momentum``: $r$, the rate of the estimates; ``None`` for their cumulative average,
    * ``affine``: learn $\gamma_c$ (``weight``) and $\beta_c$ (``bias``),
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernels; the two agree.

    The estimates are ``running_mean`` and ``running_var``, counted by ``num_batches_tracked``
    (a ``torch.nn.BatchNorm2d``'s state dict loads).
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 reference: bool = False):
        super().__init__(channels, eps, momentum, affine, True, reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *]`` with the estimates (updated first in training)."""
        check_channels(x, self.channels, self.where)
        # An empty batch leaves the estimates as they are.
        if self.training and x.numel() > 0:
            self._update_estimates(upcast(x), self.count_batch())
        if self.reference:
            return self._reference(x)
        # The evaluation-mode kernel normalizes with the statistics it is given; under autograd, copies of
        # the estimates, which it keeps for the backward pass, so that a later update cannot change them.
        mu_hat, sigma2_hat = self.running_mean, self.running_var
        if torch.is_grad_enabled():
            mu_hat, sigma2_hat = mu_hat.clone(), sigma2_hat.clone()
        return F.batch_norm(x, mu_hat, sigma2_hat, self.weight, self.bias, False, 0.0, self.eps)

    @torch.no_grad()
    def _update_estimates(self, x: torch.Tensor, r: float) -> None:
        if self.reference:
            # Every dimension but the channels'
            dims = [0, *range(2, x.dim())]
            # $\mu_c = \frac{1}{BHW} \sum_{b,h,w} X_{b,c,h,w}$
            mu = x.mean(dim=dims)
            # $\frac{1}{BHW} \sum_{b,h,w} (X_{b,c,h,w} - \mu_c)^2$
            sigma2 = (x - channel_view(mu, x.dim())).square().mean(dim=dims)
        else:
            # PyTorch's batch-statistics kernel (two passes, no output): the mean and the biased variance
            mu, sigma2 = torch.batch_norm_update_stats(x, None, None, 0.0)
        # $\hat{\mu}_c \leftarrow (1 - r) \hat{\mu}_c + r \mu_c$
        self.running_mean.mul_(1 - r).add_(r * mu)
        # $\hat{\sigma}^2_c \leftarrow (1 - r) \hat{\sigma}^2_c + r \frac{1}{BHW} \sum (X - \mu_c)^2$
        self.running_var.mul_(1 - r).add_(r * sigma2)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's equations, differentiated by autograd (not through the estimates)."""
        mu_hat, sigma2_hat = channel_view(self.running_mean, x.dim()), channel_view(self.running_var, x.dim())
        # $\frac{X_{\cdot,c} - \hat{\mu}_c}{\sqrt{\hat{\sigma}^2_c + \epsilon}}$
        x_hat = (upcast(x) - mu_hat) / torch.sqrt(sigma2_hat + self.eps)
        if self.affine:
            # $\dot{X}_{\cdot,c} = \gamma_c \hat{X}_{\cdot,c} + \beta_c$
            x_hat = channel_view(self.weight, x.dim()) * x_hat + channel_view(self.bias, x.dim())
        return x_hat.to(x.dtype)


class ChannelNorm(nn.Module):
    r"""Group normalization of inputs ``[B, C, *]`` with a scale $\gamma_g$ and shift $\beta_g$ per group.

    * ``channels``: $C$,
    * ``groups``: $G$, which must divide ``channels``,
    * ``eps``: $\epsilon$ under the square root,
    * ``affine``: learn $\gamma_g$ (``weight``) and $\beta_g$ (``bias``), $G$ of each,
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, channels: int, groups: int, *, eps: float = 1e-5, affine: bool = True,
                 reference: bool = False):
        super().__init__()
        self.channels = check_number("ChannelNorm", "channels", channels, low=1, integer=True)
        self.groups = check_number("ChannelNorm", "groups", groups, low=1, integer=True)
        check_groups(groups, channels, "ChannelNorm")
        self.eps = check_number("ChannelNorm", "eps", eps, low=0, low_open=True)
        self.affine = bool(affine)
        self.reference = bool(reference)
        #: The layer as its input errors name it, built once: ``forward`` formats a message only when it raises.
        self.where = f"ChannelNorm({self.channels}, {self.groups})"
        # $\gamma_g$ and $\beta_g$
        register_affine(self, (groups,), self.affine)

    def reset_parameters(self) -> None:
        r"""Set $\gamma_g = 1$ and $\beta_g = 0$."""
        reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *]`` per sample and group; the output has the shape and dtype of ``x``."""
        check_channels(x, self.channels, self.where)
        if self.reference:
            return self._reference(x)
        # Viewed as ``[B, G, C/G * ...]``, each group is one channel of the native group-norm kernel
        # (which has a fast path for spatial inputs), and $\gamma_g$, $\beta_g$ are that channel's.
        x_g = grouped(x, self.groups)
        return F.group_norm(x_g, self.groups, self.weight, self.bias, self.eps).reshape(x.shape)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """Group normalization's equations, then the affine per group, differentiated by autograd."""
        x_hat = group_normalized(x, self.groups, self.eps)
        if self.affine:
            # $y = \gamma_g \hat{x} + \beta_g$ on the view ``[B, G, C/G * ...]``
            x_g = grouped(x_hat, self.groups)
            x_hat = (self.weight.view(1, -1, 1) * x_g + self.bias.view(1, -1, 1)).reshape(x.shape)
        return x_hat.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return f"{self.channels}, {self.groups}, eps={self.eps}, affine={self.affine}, reference={self.reference}"


class BatchChannelNorm(nn.Module):
    r"""Batch-Channel Normalization of inputs ``[B, C, *]``: a batch normalization, then a channel normalization.

    * ``channels``: $C$,
    * ``groups``: $G$ of the channel normalization, which must divide ``channels``,
    * ``eps``: $\epsilon$ of both normalizations,
    * ``momentum``: the rate of the batch normalization's running estimates,
    * ``estimate``: use :class:`EstimatedBatchNorm` (running estimates in training too);
      else :class:`~cadence.nn.norm.BatchNorm`,
    * ``reference``: compute both with their readable reference implementations.
    """

    def __init__(self, channels: int, groups: int, *, eps: float = 1e-5, momentum: float = 0.1,
                 estimate: bool = True, reference: bool = False):
        super().__init__()
        if estimate:
            self.batch_norm = EstimatedBatchNorm(channels, eps=eps, momentum=momentum, reference=reference)
        else:
            self.batch_norm = BatchNorm(channels, eps=eps, momentum=momentum, reference=reference)
        self.channel_norm = ChannelNorm(channels, groups, eps=eps, reference=reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\mathrm{CN}(\mathrm{BN}(x))$ of ``x`` ``[B, C, *]``; a float16 or bfloat16 ``x`` in float32 throughout."""
        return self.channel_norm(self.batch_norm(upcast(x))).to(x.dtype)
