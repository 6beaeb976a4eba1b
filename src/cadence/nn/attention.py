r"""Causal multi-head self-attention: each position attends to itself and the positions before it.

Vaswani et al., *Attention Is All You Need*, NeurIPS 2017 (Section 3.2), masked as a decoder's:

$$
\mathrm{Attn}(x) = W_O [\mathrm{head}_1; \dots; \mathrm{head}_H], \qquad
\mathrm{head}_j = \mathrm{softmax}\Big(\frac{Q_j K_j^\top}{\sqrt{d/H}} + M\Big) V_j, \qquad
M_{ts} = \begin{cases} 0 & s \le t \\ -\infty & s > t \end{cases}
$$

with $Q_j, K_j, V_j$ the $j$-th slices of width $d/H$ of one projection $x W_{QKV}$. The
product runs in torch's ``scaled_dot_product_attention`` (a fused kernel where one exists).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalSelfAttention"]


class CausalSelfAttention(nn.Module):
    r"""Multi-head self-attention where position $t$ attends to positions $\le t$ only.

    Args:
        d_model: the width $d$ of the input and output.
        n_heads: the number of heads $H$; $d / H$ features each.
        dropout: dropped from the attention weights and from the output, in training.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` to ``[B, T, d]``."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.residual_dropout(self.out(y.transpose(1, 2).reshape(B, T, d)))
