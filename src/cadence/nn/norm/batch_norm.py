r"""Batch Normalization.

Ioffe & Szegedy, *Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift*, ICML 2015, arXiv:1502.03167.

Each channel $k$ of a layer's input is normalized with the statistics of the
mini-batch. For an input of shape ``[B, C, *]`` the mini-batch $\mathcal{B}$ of
channel $k$ is its $m = B \cdot \prod *$ values $x_1, \dots, x_m$ (over the batch and
every trailing position: a convolution's feature map shares one normalization per
channel, Section 3.2), and Algorithm 1 of the paper is

$$
\begin{aligned}
\mu_\mathcal{B} &\leftarrow \frac{1}{m} \sum_{i=1}^m x_i \\
\sigma_\mathcal{B}^2 &\leftarrow \frac{1}{m} \sum_{i=1}^m (x_i - \mu_\mathcal{B})^2 \\
\hat{x}_i &\leftarrow \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma_\mathcal{B}^2 + \epsilon}} \\
y_i &\leftarrow \gamma \hat{x}_i + \beta
\end{aligned}
$$

with a learned scale $\gamma$ and shift $\beta$ per channel, so that the layer can
still represent the identity. Gradients flow through $\mu_\mathcal{B}$ and
$\sigma_\mathcal{B}^2$ as well as through $x_i$ (normalizing with statistics held
outside the gradient lets parameters grow without bound, Section 2).

**Inference** (Algorithm 2) replaces the mini-batch statistics by estimates over the
training data, kept here, as in PyTorch, as exponential moving averages with
``momentum`` $\rho$, and with the unbiased variance of each mini-batch:

$$
\begin{aligned}
\mathrm{E}[x] &\leftarrow (1 - \rho)\, \mathrm{E}[x] + \rho\, \mu_\mathcal{B} \\
\mathrm{Var}[x] &\leftarrow (1 - \rho)\, \mathrm{Var}[x] + \rho\, \frac{m}{m - 1}\, \sigma_\mathcal{B}^2 \\
\hat{x} &= \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}}
\end{aligned}
$$

With ``momentum=None`` the estimates are the cumulative average of all mini-batches
seen, $\rho = 1/n$ at the $n$-th (as in PyTorch). Without running estimates
(``track_running_stats=False``) the mini-batch statistics are used in evaluation too.

**Computing the variance.** The textbook identity
$\sigma^2 = \mathrm{E}[x^2] - \mathrm{E}[x]^2$ subtracts two nearly equal large
numbers when $|\mu| \gg \sigma$: for values near $10^4$ with unit variance both terms
are near $10^8$, where ``float32`` resolves steps of 8, and the difference is noise of
order 1 or negative (a NaN after the square root). The reference path below follows
the paper's second line literally, subtracting $\mu_\mathcal{B}$ before squaring
(two passes over the data); the fast path is PyTorch's native kernel
(``torch.nn.functional.batch_norm``), which is stable as well. Both match
``torch.nn.BatchNorm1d/2d/3d``, whose parameter and buffer names (``weight`` $= \gamma$,
``bias`` $= \beta$, ``running_mean``, ``running_var``, ``num_batches_tracked``) this
layer shares, so their state dicts load into it. Both paths keep a ``channels_last``
input's memory format, and accumulate the statistics of float16 and bfloat16 inputs in
float32 (the output has the input's dtype).

As in PyTorch, batch statistics of a single value per channel (one sample of shape
``[1, C]`` in training) are undefined, and refused with a ``ValueError``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cadence.nn.norm.common import RunningStatsNorm, channel_view, check_channels, upcast


class BatchNorm(RunningStatsNorm):
    r"""Batch normalization over the channels (dimension 1) of inputs ``[B, C, *]`` of any rank >= 2.

    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sqrt{\sigma^2 + \epsilon}$,
    * ``momentum``: $\rho$ of the running estimates $\mathrm{E}[x]$ and $\mathrm{Var}[x]$; ``None``
      for their cumulative average,
    * ``affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``); without, $y = \hat{x}$,
    * ``track_running_stats``: keep $\mathrm{E}[x]$ and $\mathrm{Var}[x]$ and normalize
      with them in evaluation; without, every forward uses the mini-batch statistics,
    * ``reference``: compute with the readable reference implementation (the paper's
      equations in autograd) instead of PyTorch's native kernel; the two agree.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, reference: bool = False):
        super().__init__(channels, eps, momentum, affine, track_running_stats, reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *]``; the output has the shape, dtype and memory format of ``x``."""
        check_channels(x, self.channels, self.where)
        # Mini-batch statistics in training, and in evaluation when no estimates are kept
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats and x.numel() // self.channels == 1:
            raise ValueError(f"{self.where}: input of shape {list(x.shape)} has 1 value per channel; "
                             f"batch statistics (training, or track_running_stats=False) need more than 1")
        # $\rho$, the weight of this mini-batch in the running estimates; None when they stay as they are
        rho = self.count_batch() if self.training and self.track_running_stats else None
        if self.reference:
            return self._reference(x, use_batch_stats, rho)
        # Native kernel: it updates the running estimates in place when given them in training.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch_stats, 0.0 if rho is None else rho, self.eps)

    def _reference(self, x: torch.Tensor, use_batch_stats: bool, rho: float | None) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        x_in = upcast(x)
        # Channel $k$'s mini-batch is ``x[:, k, ...]``: reduce over every dimension but 1
        dims = [0, *range(2, x.dim())]
        m = x.numel() // self.channels
        if use_batch_stats:
            # $\mu_\mathcal{B} = \frac{1}{m} \sum_i x_i$
            mu_B = x_in.mean(dim=dims, keepdim=True)
            # $x_i - \mu_\mathcal{B}$, subtracted before squaring (the stable two-pass variance)
            centered = x_in - mu_B
            # $\sigma_\mathcal{B}^2 = \frac{1}{m} \sum_i (x_i - \mu_\mathcal{B})^2$
            sigma2_B = centered.square().mean(dim=dims, keepdim=True)
            # An empty batch leaves the estimates as they are, as in PyTorch.
            if rho is not None and m > 0:
                with torch.no_grad():
                    # $\mathrm{E}[x] \leftarrow (1 - \rho) \mathrm{E}[x] + \rho \mu_\mathcal{B}$
                    self.running_mean.mul_(1 - rho).add_(rho * mu_B.flatten())
                    # $\mathrm{Var}[x] \leftarrow (1 - \rho) \mathrm{Var}[x] + \rho \frac{m}{m-1} \sigma_\mathcal{B}^2$
                    self.running_var.mul_(1 - rho).add_(rho * m / (m - 1) * sigma2_B.flatten())
        else:
            # $x - \mathrm{E}[x]$ and $\mathrm{Var}[x]$
            centered = x_in - channel_view(self.running_mean, x.dim())
            sigma2_B = channel_view(self.running_var, x.dim())
        # $\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma_\mathcal{B}^2 + \epsilon}}$
        x_hat = centered / torch.sqrt(sigma2_B + self.eps)
        if self.affine:
            gamma, beta = channel_view(self.weight, x.dim()), channel_view(self.bias, x.dim())
            # $y_i = \gamma \hat{x}_i + \beta$
            return (gamma * x_hat + beta).to(x.dtype)
        return x_hat.to(x.dtype)
