r"""Root Mean Square Layer Normalization.

Zhang & Sennrich, *Root Mean Square Layer Normalization*, NeurIPS 2019, arXiv:1910.07467.

Layer normalization re-centres (subtracts $\mu$) and re-scales (divides by $\sigma$).
The paper argues that the re-scaling invariance is what matters and drops the
re-centring: the $n$ summed inputs $a_1, \dots, a_n$ of a layer are divided by their
root mean square (Eq. 4),

$$
\begin{aligned}
\mathrm{RMS}(a) &= \sqrt{\frac{1}{n} \sum_{i=1}^n a_i^2 + \epsilon} \\
\bar{a}_i &= \frac{a_i}{\mathrm{RMS}(a)}\, g_i
\end{aligned}
$$

with a gain $g$ per element and no bias, which saves the mean's pass over the data.
As in ``torch.nn.RMSNorm``, $\epsilon$ sits under the square root and defaults to the
machine epsilon of the input's dtype (``eps=None``), and the gain is named ``weight``.

The reference path is these equations in autograd; the fast path is PyTorch's native
kernel (``torch.nn.functional.rms_norm``). The mean of squares of float16 and bfloat16
inputs is accumulated in float32. No variance is taken, so an input far from zero is
no harder than any other: its $\mathrm{RMS}$ is close to its mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.common import check_normalized_shape, check_trailing, upcast, reset_affine


class RMSNorm(nn.Module):
    r"""RMS normalization over the trailing ``normalized_shape`` of inputs ``[*, *normalized_shape]``.

    * ``normalized_shape``: the shape of a layer (an int for one dimension),
    * ``eps``: $\epsilon$ under the square root; ``None`` for ``torch.finfo(x.dtype).eps``,
    * ``elementwise_affine``: learn the gain $g$ (``weight``) of shape ``normalized_shape``,
    * ``reference``: compute with the readable reference implementation instead of
      PyTorch's native kernel; the two agree.
    """

    def __init__(self, normalized_shape: int | Sequence[int], *, eps: float | None = None,
                 elementwise_affine: bool = True, reference: bool = False):
        super().__init__()
        self.normalized_shape = check_normalized_shape(normalized_shape, "RMSNorm")
        self.eps = None if eps is None else check_number("RMSNorm", "eps", eps, low=0, low_open=True)
        self.elementwise_affine = bool(elementwise_affine)
        self.reference = bool(reference)
        #: The layer as its input errors name it, built once: ``forward`` formats a message only when it raises.
        self.where = f"RMSNorm({list(self.normalized_shape)})"
        # $g$
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        """Set $g = 1$."""
        reset_affine(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` of shape ``[*, *normalized_shape]``; the output has the shape and dtype of ``x``."""
        check_trailing(x, self.normalized_shape, self.where)
        if self.reference:
            return self._reference(x)
        g = self.weight
        # The native kernel fuses only a gain of the input's dtype (and accumulates in float32 either way).
        if g is not None and g.dtype != x.dtype:
            g = g.to(x.dtype)
        return F.rms_norm(x, self.normalized_shape, g, self.eps)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's equations, differentiated by autograd."""
        a = upcast(x)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        dims = tuple(range(-len(self.normalized_shape), 0))
        # $\mathrm{RMS}(a) = \sqrt{\frac{1}{n} \sum_i a_i^2 + \epsilon}$
        rms = torch.sqrt(a.square().mean(dim=dims, keepdim=True) + eps)
        # $\bar{a}_i = \frac{a_i}{\mathrm{RMS}(a)} g_i$
        a_bar = a / rms
        if self.weight is not None:
            a_bar = a_bar * self.weight
        return a_bar.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return (f"{list(self.normalized_shape)}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"reference={self.reference}")
