r"""Weight Standardization.

Qiao, Wang, Liu, Shen & Yuille, *Micro-Batch Training with Batch-Channel Normalization
and Weight Standardization*, arXiv:1903.10520, 2019 (Section 3).

Instead of the activations, standardize the weights: a convolution's weight
$W \in \mathbb{R}^{O \times I}$ ($O$ output channels, $I = C_{in} k_H k_W$ inputs to
each) is reparameterized row by row as (Eq. 5-7)

$$
\begin{aligned}
\mu_{W_{i,\cdot}} &= \frac{1}{I} \sum_{j=1}^I W_{i,j} \\
\sigma_{W_{i,\cdot}} &= \sqrt{\frac{1}{I} \sum_{j=1}^I \big(W_{i,j} - \mu_{W_{i,\cdot}}\big)^2 + \epsilon} \\
\hat{W}_{i,j} &= \frac{W_{i,j} - \mu_{W_{i,\cdot}}}{\sigma_{W_{i,\cdot}}} \\
y &= \hat{W} * x
\end{aligned}
$$

and the loss is optimized with respect to $W$, through the standardization. It smooths
the loss landscape (smaller Lipschitz constants of the loss and its gradients) at no
cost per sample, and needs no batch statistics, so it pairs with group or
batch-channel normalization for micro-batches. There is no affine transform: the
normalization layer after the convolution has one.

Here the standardization is a function (:func:`weight_standardization`), a module for
``torch.nn.utils.parametrize`` (:class:`WeightStandardization`) and a
``torch.nn.Conv2d`` whose weight it standardizes (:class:`Conv2d`). labml_nn and the
authors' code divide by the unbiased standard deviation plus $\epsilon$; this follows
the paper's equation above. The statistics of float16 and bfloat16 weights are taken
in float32.
"""

from __future__ import annotations

import torch
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.common import upcast


def weight_standardization(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""$\hat{W}$: each output channel's weights (dimension 0) standardized over the rest, differentiably."""
    # $W \in \mathbb{R}^{O \times I}$
    W = upcast(weight).reshape(weight.shape[0], -1)
    # $\mu_{W_{i,\cdot}} = \frac{1}{I} \sum_j W_{i,j}$
    mu = W.mean(dim=1, keepdim=True)
    centered = W - mu
    # $\sigma_{W_{i,\cdot}} = \sqrt{\frac{1}{I} \sum_j (W_{i,j} - \mu_{W_{i,\cdot}})^2 + \epsilon}$
    sigma = torch.sqrt(centered.square().mean(dim=1, keepdim=True) + eps)
    # $\hat{W}_{i,j} = \frac{W_{i,j} - \mu_{W_{i,\cdot}}}{\sigma_{W_{i,\cdot}}}$
    return (centered / sigma).reshape(weight.shape).to(weight.dtype)


class WeightStandardization(nn.Module):
    r"""$W \mapsto \hat{W}$ as a module, for ``torch.nn.utils.parametrize.register_parametrization``.

    ``register_parametrization(conv, "weight", WeightStandardization())`` standardizes the
    weight of any convolution or linear layer in place of :class:`Conv2d`.
    """

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = check_number("WeightStandardization", "eps", eps, low=0, low_open=True)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        r"""$\hat{W}$ of ``weight`` ``[O, *]``."""
        return weight_standardization(weight, self.eps)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return f"eps={self.eps}"


class Conv2d(nn.Conv2d):
    r"""``torch.nn.Conv2d`` computing $y = \hat{W} * x$ with its weight standardized at every call.

    Takes ``torch.nn.Conv2d``'s arguments, and ``eps`` ($\epsilon$ in $\sigma_{W_{i,\cdot}}$);
    its parameters are ``torch.nn.Conv2d``'s, so their state dicts load into each other.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *args,
                 eps: float = 1e-5, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, *args, **kwargs)
        self.eps = check_number("Conv2d", "eps", eps, low=0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""$\hat{W} * x$ (plus the bias) of ``x`` ``[B, C_{in}, H, W]``."""
        return self._conv_forward(x, weight_standardization(self.weight, self.eps), self.bias)

    def extra_repr(self) -> str:
        """``torch.nn.Conv2d``'s description and ``eps``."""
        return f"{super().extra_repr()}, eps={self.eps}"
