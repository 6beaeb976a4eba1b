r"""DeepNorm.

Wang, Ma, Dong, Huang, Zhang & Wei, *DeepNet: Scaling Transformers to 1,000 Layers*,
arXiv:2203.00555, 2022.

Post-LayerNorm Transformers train to better models than Pre-LayerNorm ones but diverge
when deep: early updates change each layer's output a lot, and the changes add up over
the layers. DeepNorm keeps the Post-LN form and bounds that change by up-weighting the
residual branch and down-scaling the initialisation of the sub-layers (Section 2):

$$
x_{l+1} = \mathrm{LN}\big(\alpha\, x_l + G_l(x_l, \theta_l)\big)
$$

where $G_l$ is the $l$-th sub-layer (attention or feed-forward) and LN is
:class:`~cadence.nn.norm.LayerNorm`; the weights of the feed-forward layers and of the
attention's value and output projections are initialised with Xavier's normal
initialisation of gain $\beta$ (the query and key projections keep gain 1). For an
$N$-layer encoder-only or decoder-only model (Table 1):

$$
\alpha = (2N)^{\frac{1}{4}}, \qquad \beta = (8N)^{-\frac{1}{4}}
$$

:class:`DeepNorm` is the normalization (``forward(x, gx)`` with $gx = G_l(x_l)$, as in
labml_nn); :class:`DeepNormBlock` wraps a sub-layer with it and applies the
$\beta$-scaled initialisation. labml_nn computes $\mathrm{LN}(x + \alpha\, gx)$; this
follows the paper's $\alpha\, x + gx$.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from cadence.checks import check_number
from cadence.nn.norm.common import upcast
from cadence.nn.norm.layer_norm import LayerNorm


def deep_norm_constants(layers: int) -> tuple[float, float]:
    r"""$(\alpha, \beta) = \big((2N)^{1/4}, (8N)^{-1/4}\big)$ of an encoder- or decoder-only model of $N$ ``layers``."""
    N = check_number("deep_norm_constants", "layers", layers, low=1, integer=True)
    return (2 * N) ** 0.25, (8 * N) ** -0.25


class DeepNorm(nn.Module):
    r"""$\mathrm{LN}(\alpha\, x + gx)$ over the trailing ``normalized_shape``.

    * ``alpha``: $\alpha$, the weight of the residual $x_l$,
    * ``normalized_shape``, ``eps``, ``elementwise_affine``: those of the
      :class:`~cadence.nn.norm.LayerNorm` (``layer_norm``),
    * ``reference``: the layer normalization's readable reference path.
    """

    def __init__(self, alpha: float, normalized_shape: int | Sequence[int], *, eps: float = 1e-5,
                 elementwise_affine: bool = True, reference: bool = False):
        super().__init__()
        self.alpha = check_number("DeepNorm", "alpha", alpha, low=0, low_open=True)
        self.layer_norm = LayerNorm(normalized_shape, eps=eps, elementwise_affine=elementwise_affine,
                                    reference=reference)

    def forward(self, x: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
        r"""$x_{l+1}$ of the residual ``x`` ($x_l$) and the sub-layer's output ``gx`` ($G_l(x_l, \theta_l)$)."""
        if x.shape != gx.shape:
            raise ValueError(f"DeepNorm: residual x of shape {list(x.shape)} and sub-layer output gx of shape "
                             f"{list(gx.shape)}; expected equal shapes")
        # $x_{l+1} = \mathrm{LN}(\alpha x_l + G_l(x_l, \theta_l))$, the sum in one kernel (in float32 for
        # float16 and bfloat16, rounded once at the end)
        return self.layer_norm(torch.add(upcast(gx), upcast(x), alpha=self.alpha)).to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor's $\\alpha$, for ``repr``."""
        return f"alpha={self.alpha}"


class DeepNormBlock(nn.Module):
    r"""A sub-layer $G_l$ with DeepNorm around it: ``forward(x, ...)`` is $\mathrm{LN}(\alpha x + G_l(x, \dots))$.

    * ``sublayer``: $G_l$, a module whose output has the shape of its first input,
    * ``alpha``, ``beta``: $\alpha$ and $\beta$ (see :func:`deep_norm_constants`),
    * ``normalized_shape``, ``eps``, ``elementwise_affine``, ``reference``: those of :class:`DeepNorm`,
    * ``scaled``: names (in ``sublayer``) of the weights to initialise with Xavier's normal
      initialisation of gain $\beta$; by default the weight of every ``nn.Linear`` in it (a
      feed-forward sub-layer). For attention, name the value and output projections; their
      query and key projections keep their own initialisation.
    """

    def __init__(self, sublayer: nn.Module, alpha: float, beta: float, normalized_shape: int | Sequence[int], *,
                 scaled: Iterable[str] | None = None, eps: float = 1e-5, elementwise_affine: bool = True,
                 reference: bool = False):
        super().__init__()
        self.beta = check_number("DeepNormBlock", "beta", beta, low=0, low_open=True)
        self.sublayer = sublayer
        self.deep_norm = DeepNorm(alpha, normalized_shape, eps=eps, elementwise_affine=elementwise_affine,
                                  reference=reference)
        params = dict(sublayer.named_parameters())
        if scaled is None:
            scaled = [f"{name}.weight" if name else "weight" for name, module in sublayer.named_modules()
                      if isinstance(module, nn.Linear)]
        for name in scaled:
            if name not in params or params[name].dim() < 2:
                matrices = [n for n, p in params.items() if p.dim() >= 2]
                raise ValueError(f"DeepNormBlock: scaled weight {name!r} is not a weight matrix of the sub-layer "
                                 f"{type(sublayer).__name__}; expected one of: {', '.join(matrices) or 'none'}")
            # Xavier's normal initialisation with gain $\beta$: $\mathcal{N}(0, \beta^2 \frac{2}{fan_{in} + fan_{out}})$
            nn.init.xavier_normal_(params[name], gain=self.beta)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        r"""$\mathrm{LN}(\alpha x + G_l(x, \dots))$; further arguments go to the sub-layer."""
        return self.deep_norm(x, self.sublayer(x, *args, **kwargs))

    def extra_repr(self) -> str:
        """The constructor's $\\beta$, for ``repr``."""
        return f"beta={self.beta}"
