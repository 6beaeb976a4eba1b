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

from cadence.nn.norm.common import RunningStatsNorm, channel_view, check_channels, upcast


class InstanceNorm(RunningStatsNorm):
    r"""Instance normalization of inputs ``[B, C, *spatial]``: each channel of each sample on its own.

    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sqrt{\sigma_{ti}^2 + \epsilon}$,
    * ``affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``) per channel,
    * ``momentum``: $\rho$ of the running estimates; ``None`` for their cumulative average,
    * ``track_running_stats``: keep running estimates and normalize with them in evaluation,
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, affine: bool = True, momentum: float | None = 0.1,
                 track_running_stats: bool = False, reference: bool = False):
        super().__init__(channels, eps, momentum, affine, track_running_stats, reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *spatial]``; the output has the shape and dtype of ``x``."""
        check_channels(x, self.channels, self.where, min_rank=3)
        # The statistics of each instance, unless evaluating with running estimates
        use_input_stats = self.training or not self.track_running_stats
        if use_input_stats and math.prod(x.shape[2:]) == 1:
            raise ValueError(f"{self.where}: input of shape {list(x.shape)} has 1 spatial value per instance; "
                             f"instance statistics (training, or track_running_stats=False) need more than 1")
        # $\rho$, the weight of this mini-batch in the running estimates; None when they stay as they are
        rho = self.count_batch() if self.training and self.track_running_stats else None
        # The native kernel fails on an empty batch, which the reference path passes through.
        if self.reference or x.shape[0] == 0:
            return self._reference(x, use_input_stats, rho)
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats,
                               0.0 if rho is None else rho, self.eps)

    def _reference(self, x: torch.Tensor, use_input_stats: bool, rho: float | None) -> torch.Tensor:
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
            if rho is not None and x.shape[0] > 0:
                n = math.prod(x.shape[2:])
                with torch.no_grad():
                    # $\mathrm{E}[x]_i \leftarrow (1 - \rho) \mathrm{E}[x]_i + \rho \frac{1}{B} \sum_t \mu_{ti}$
                    self.running_mean.mul_(1 - rho).add_(rho * mu.flatten(1).mean(0))
                    # $\mathrm{Var}[x]_i \leftarrow (1 - \rho) \mathrm{Var}[x]_i
                    #     + \rho \frac{1}{B} \sum_t \frac{n}{n-1} \sigma_{ti}^2$
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
