r"""Instance Normalization.

Ulyanov, Vedaldi & Lempitsky, *Instance Normalization: The Missing Ingredient for Fast
Stylization*, arXiv:1607.08022, 2016.

A stylized image should not depend on the contrast of its content image, so each
channel $i$ of each image $t$ of the batch is normalized on its own, over its $H W$
spatial positions (Eq. 2):

$$
\begin{aligned}
\mu_{ti} &= \frac{1}{HW} \sum_{l=1}^H \sum_{m=1}^W x_{tilm} \\
\sigma_{ti}^2 &= \frac{1}{HW} \sum_{l=1}^H \sum_{m=1}^W (x_{tilm} - \mu_{ti})^2 \\
y_{tijk} &= \gamma_i \frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}} + \beta_i
\end{aligned}
$$

with, optionally, a scale $\gamma_i$ and shift $\beta_i$ per channel. The paper
normalizes at test time too; with ``track_running_stats`` the layer also keeps, as
PyTorch does, running estimates averaged over the instances of each mini-batch,

$$
\mathrm{E}[x]_i \leftarrow (1 - \rho)\, \mathrm{E}[x]_i + \rho\, \frac{1}{B} \sum_t \mu_{ti}, \qquad
\mathrm{Var}[x]_i \leftarrow (1 - \rho)\, \mathrm{Var}[x]_i + \rho\, \frac{1}{B} \sum_t
\frac{n}{n - 1}\, \sigma_{ti}^2
$$

($n = HW$ values per instance, unbiased variance), and normalizes with them in
evaluation. Inputs are ``[B, C, *spatial]`` with one or more spatial dimensions
(``torch.nn.InstanceNorm1d/2d/3d`` alike).

The reference path subtracts $\mu_{ti}$ before squaring (the stable two-pass
variance); the fast path is PyTorch's native kernel
(``torch.nn.functional.instance_norm``). Both match torch's layers, whose parameter and
buffer names (``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``) this layer shares; float16 and bfloat16 inputs have float32
statistics. Unlike torch's (but as labml_nn's), ``affine`` defaults to True, and
``num_batches_tracked`` counts the training mini-batches (torch's stays at 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cadence.nn.norm.common import (channel_view, check_channels, check_count, check_eps, check_momentum,
                                    upcast, register_affine, register_running_stats, reset_affine,
                                    reset_estimates)


class InstanceNorm(nn.Module):
    r"""Instance normalization of inputs ``[B, C, *spatial]``: each channel of each sample on its own.

    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sqrt{\sigma_{ti}^2 + \epsilon}$,
    * ``affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``) per channel,
    * ``momentum``: $\rho$ of the running estimates,
    * ``track_running_stats``: keep running estimates and normalize with them in evaluation,
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, affine: bool = True, momentum: float = 0.1,
                 track_running_stats: bool = False, reference: bool = False):
        super().__init__()
        self.channels = check_count(channels, "channels", "InstanceNorm")
        self.eps = check_eps(eps, "InstanceNorm")
        self.momentum = check_momentum(momentum, "InstanceNorm")
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.reference = bool(reference)
        # $\gamma$ and $\beta$
        register_affine(self, (channels,), self.affine)
        # $\mathrm{E}[x]$, $\mathrm{Var}[x]$ and the number of training mini-batches
        register_running_stats(self, channels, self.track_running_stats)

    def reset_running_stats(self) -> None:
        r"""Start the running estimates afresh: $\mathrm{E}[x] = 0$, $\mathrm{Var}[x] = 1$, no batches."""
        reset_estimates(self)

    def reset_parameters(self) -> None:
        r"""Reset the running estimates and set $\gamma = 1$, $\beta = 0$."""
        reset_estimates(self)
        reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *spatial]``; the output has the shape and dtype of ``x``."""
        where = f"InstanceNorm({self.channels})"
        check_channels(x, self.channels, where, min_rank=3)
        # The statistics of each instance, unless evaluating with running estimates
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats and math.prod(x.shape[2:]) == 1:
            raise ValueError(f"{where}: input of shape {list(x.shape)} has 1 spatial value per instance; "
                             f"instance statistics (training, or track_running_stats=False) need more than 1")
        update = self.training and self.track_running_stats
        if update:
            self.num_batches_tracked.add_(1)
        # The native kernel fails on an empty batch, which the reference path passes through.
        if self.reference or x.shape[0] == 0:
            return self._reference(x, use_input_stats, update)
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats,
                               self.momentum, self.eps)

    def _reference(self, x: torch.Tensor, use_input_stats: bool, update: bool) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        x_in = upcast(x)
        # Instance $(t, i)$ is ``x[t, i, ...]``: reduce over the spatial dimensions
        dims = tuple(range(2, x.dim()))
        if use_input_stats:
            # $\mu_{ti}$
            mu = x_in.mean(dim=dims, keepdim=True)
            centered = x_in - mu
            # $\sigma_{ti}^2$, after subtracting $\mu_{ti}$
            sigma2 = centered.square().mean(dim=dims, keepdim=True)
            # An empty batch leaves the estimates as they are.
            if update and x.shape[0] > 0:
                n = math.prod(x.shape[2:])
                rho = self.momentum
                with torch.no_grad():
                    # $\mathrm{E}[x]_i \leftarrow (1 - \rho) \mathrm{E}[x]_i + \rho \frac{1}{B} \sum_t \mu_{ti}$
                    self.running_mean.mul_(1 - rho).add_(rho * mu.flatten(1).mean(0))
                    # $\mathrm{Var}[x]_i \leftarrow (1 - \rho) \mathrm{Var}[x]_i + \rho \frac{1}{B} \sum_t \frac{n}{n-1} \sigma_{ti}^2$
                    self.running_var.mul_(1 - rho).add_(rho * n / (n - 1) * sigma2.flatten(1).mean(0))
        else:
            centered = x_in - channel_view(self.running_mean, x.dim())
            sigma2 = channel_view(self.running_var, x.dim())
        # $\frac{x_{tijk} - \mu_{ti}}{\sqrt{\sigma_{ti}^2 + \epsilon}}$
        x_hat = centered / torch.sqrt(sigma2 + self.eps)
        if self.affine:
            # $y_{tijk} = \gamma_i \hat{x}_{tijk} + \beta_i$
            x_hat = channel_view(self.weight, x.dim()) * x_hat + channel_view(self.bias, x.dim())
        return x_hat.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return (f"{self.channels}, eps={self.eps}, affine={self.affine}, momentum={self.momentum}, "
                f"track_running_stats={self.track_running_stats}, reference={self.reference}")
