r"""Layer Normalization.

Ba, Kiros & Hinton, *Layer Normalization*, arXiv:1607.06450, 2016.

Batch normalization needs the statistics of a mini-batch; layer normalization takes
them over the $H$ summed inputs $a_1, \dots, a_H$ of one layer for one sample instead,
so it behaves alike in training and evaluation, at any batch size, and in recurrent
networks step by step (Section 3):

$$
\begin{aligned}
\mu &= \frac{1}{H} \sum_{i=1}^H a_i \\
\sigma^2 &= \frac{1}{H} \sum_{i=1}^H (a_i - \mu)^2 \\
\hat{a}_i &= \frac{a_i - \mu}{\sqrt{\sigma^2 + \epsilon}} \\
y_i &= \gamma_i \hat{a}_i + \beta_i
\end{aligned}
$$

with a gain $\gamma$ and a bias $\beta$ per element (``elementwise_affine``). Here the
"layer" is the trailing ``normalized_shape`` of the input ``[*, *normalized_shape]``:
``[d]`` for a sequence of embeddings ``[L, B, d]``, ``[C, H, W]`` for images.

The reference path subtracts $\mu$ before squaring (the stable two-pass variance, see
:mod:`cadence.nn.norm.batch_norm`); the fast path is PyTorch's native kernel
(``torch.nn.functional.layer_norm``). Both match ``torch.nn.LayerNorm``, whose parameter
names (``weight`` $= \gamma$, ``bias`` $= \beta$) this layer shares; the statistics of
float16 and bfloat16 inputs are accumulated in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.common import (check_normalized_shape, check_trailing, upcast,
                                    register_affine, reset_affine)


class LayerNorm(nn.Module):
    r"""Layer normalization over the trailing ``normalized_shape`` of inputs ``[*, *normalized_shape]``.

    * ``normalized_shape``: the shape $S$ of a layer (an int for one dimension),
    * ``eps``: $\epsilon$ in $\sqrt{\sigma^2 + \epsilon}$,
    * ``elementwise_affine``: learn $\gamma$ (``weight``) and $\beta$ (``bias``) of shape $S$,
    * ``bias``: with ``elementwise_affine``, learn $\beta$ too (as ``torch.nn.LayerNorm``),
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, normalized_shape: int | Sequence[int], *, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, reference: bool = False):
        super().__init__()
        self.normalized_shape = check_normalized_shape(normalized_shape, "LayerNorm")
        self.eps = check_number("LayerNorm", "eps", eps, low=0, low_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        self.reference = bool(reference)
        #: The layer as its input errors name it, built once: ``forward`` formats a message only when it raises.
        self.where = f"LayerNorm({list(self.normalized_shape)})"
        # $\gamma$ and $\beta$
        register_affine(self, self.normalized_shape, self.elementwise_affine, bias)

    def reset_parameters(self) -> None:
        r"""Set $\gamma = 1$ and $\beta = 0$."""
        reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[*, *normalized_shape]``; the output has the shape and dtype of ``x``."""
        check_trailing(x, self.normalized_shape, self.where)
        if self.reference:
            return self._reference(x)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        a = upcast(x)
        # The $H$ elements of a layer: the trailing ``normalized_shape``
        dims = tuple(range(-len(self.normalized_shape), 0))
        # $\mu = \frac{1}{H} \sum_i a_i$
        mu = a.mean(dim=dims, keepdim=True)
        # $a_i - \mu$, subtracted before squaring
        centered = a - mu
        # $\sigma^2 = \frac{1}{H} \sum_i (a_i - \mu)^2$
        sigma2 = centered.square().mean(dim=dims, keepdim=True)
        # $\hat{a}_i = \frac{a_i - \mu}{\sqrt{\sigma^2 + \epsilon}}$
        a_hat = centered / torch.sqrt(sigma2 + self.eps)
        if self.weight is not None:
            # $y_i = \gamma_i \hat{a}_i + \beta_i$
            a_hat = self.weight * a_hat
        if self.bias is not None:
            a_hat = a_hat + self.bias
        return a_hat.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return (f"{list(self.normalized_shape)}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}, reference={self.reference}")
