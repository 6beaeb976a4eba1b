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

Without running estimates (``track_running_stats=False``) the mini-batch statistics
are used in evaluation too.

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
layer shares, so their state dicts load into it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.Module):
    r"""Batch normalization over the channels (dimension 1) of inputs ``[B, C, *]``.

    * ``channels``: $C$,
    * ``eps``: $\epsilon$ in $\sqrt{\sigma^2 + \epsilon}$,
    * ``momentum``: $\rho$ of the running estimates $\mathrm{E}[x]$ and $\mathrm{Var}[x]$,
    * ``affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``); without, $y = \hat{x}$,
    * ``track_running_stats``: keep $\mathrm{E}[x]$ and $\mathrm{Var}[x]$ and normalize
      with them in evaluation; without, every forward uses the mini-batch statistics,
    * ``reference``: compute with the readable reference implementation (the paper's
      equations in autograd) instead of PyTorch's native kernel; the two agree.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, reference: bool = False):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"BatchNorm: channels={channels!r}; expected an integer >= 1")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"BatchNorm: eps={eps!r}; expected a finite number > 0")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
            raise ValueError(f"BatchNorm: momentum={momentum!r}; expected a number in [0, 1]")
        self.channels = channels
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.reference = bool(reference)
        if self.affine:
            # $\gamma$ and $\beta$
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            # $\mathrm{E}[x]$, $\mathrm{Var}[x]$ and the number of mini-batches averaged into them
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        r"""Start the running estimates afresh: $\mathrm{E}[x] = 0$, $\mathrm{Var}[x] = 1$, no batches."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        r"""Reset the running estimates and set $\gamma = 1$, $\beta = 0$ (the identity on $\hat{x}$)."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[B, C, *]``; the output has the shape of ``x``."""
        self._check_input(x)
        # Mini-batch statistics in training, and in evaluation when no estimates are kept
        use_batch_stats = self.training or not self.track_running_stats
        update_running_stats = self.training and self.track_running_stats
        # $m$, the values per channel
        m = x.numel() // self.channels
        if use_batch_stats and m == 1:
            raise ValueError(f"BatchNorm({self.channels}): input of shape {list(x.shape)} has 1 value per channel; "
                             f"batch statistics (training, or track_running_stats=False) need more than 1")
        if update_running_stats:
            self.num_batches_tracked.add_(1)
        if self.reference:
            return self._reference(x, use_batch_stats, update_running_stats)
        # Native kernel: it updates the running estimates in place when given them in training.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            use_batch_stats, self.momentum, self.eps)

    def _reference(self, x: torch.Tensor, use_batch_stats: bool, update_running_stats: bool) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        # View ``[B, C, *]`` as ``[B, C, n]``: channel $k$'s mini-batch is ``x3[:, k, :]``
        x3 = x.reshape(x.shape[0], self.channels, math.prod(x.shape[2:]))
        m = x3.shape[0] * x3.shape[2]
        if use_batch_stats:
            # $\mu_\mathcal{B} = \frac{1}{m} \sum_i x_i$
            mu_B = x3.mean(dim=(0, 2), keepdim=True)
            # $x_i - \mu_\mathcal{B}$, subtracted before squaring (the stable two-pass variance)
            centered = x3 - mu_B
            # $\sigma_\mathcal{B}^2 = \frac{1}{m} \sum_i (x_i - \mu_\mathcal{B})^2$
            sigma2_B = centered.square().mean(dim=(0, 2), keepdim=True)
            # An empty batch leaves the estimates as they are, as in PyTorch.
            if update_running_stats and m > 0:
                with torch.no_grad():
                    rho = self.momentum
                    # $\mathrm{E}[x] \leftarrow (1 - \rho) \mathrm{E}[x] + \rho \mu_\mathcal{B}$
                    self.running_mean.mul_(1 - rho).add_(rho * mu_B.flatten())
                    # $\mathrm{Var}[x] \leftarrow (1 - \rho) \mathrm{Var}[x] + \rho \frac{m}{m-1} \sigma_\mathcal{B}^2$
                    self.running_var.mul_(1 - rho).add_(rho * m / (m - 1) * sigma2_B.flatten())
        else:
            # $x - \mathrm{E}[x]$ and $\mathrm{Var}[x]$
            centered = x3 - self.running_mean.view(1, -1, 1)
            sigma2_B = self.running_var.view(1, -1, 1)
        # $\hat{x}_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma_\mathcal{B}^2 + \epsilon}}$
        x_hat = centered / torch.sqrt(sigma2_B + self.eps)
        if self.affine:
            gamma, beta = self.weight.view(1, -1, 1), self.bias.view(1, -1, 1)
            # $y_i = \gamma \hat{x}_i + \beta$
            return (gamma * x_hat + beta).reshape(x.shape)
        return x_hat.reshape(x.shape)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"BatchNorm({self.channels}): input of shape {list(x.shape)} has rank {x.dim()}; "
                             f"expected [batch, {self.channels}, *] of rank >= 2")
        if x.shape[1] != self.channels:
            raise ValueError(f"BatchNorm({self.channels}): input of shape {list(x.shape)} has {x.shape[1]} "
                             f"channels in dimension 1; expected {self.channels}")

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return (f"{self.channels}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, reference={self.reference}")
