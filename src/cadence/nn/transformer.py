r"""A decoder-only transformer language model with pre-norm residual blocks.

Radford et al., *Language Models are Unsupervised Multitask Learners* (GPT-2), 2019; Xiong et
al., *On Layer Normalization in the Transformer Architecture*, ICML 2020, on why the
normalization goes before each sub-layer. For tokens $x_1 \dots x_T$, with token and learned
position embeddings $E$ and $P$,

$$
x^0_t = E[x_t] + P[t], \qquad
a^l = x^{l-1} + \mathrm{Attn}(\mathrm{LN}(x^{l-1})), \qquad x^l = a^l + \mathrm{MLP}(\mathrm{LN}(a^l)),
\qquad \text{logits} = \mathrm{LN}(x^L) E^\top,
$$

with causal multi-head self-attention (:class:`~cadence.nn.attention.CausalSelfAttention`) and
a GELU MLP of width $4d$; the output layer shares the embedding's weights (Press & Wolf, *Using
the Output Embedding to Improve Language Models*, EACL 2017). Weights start as GPT-2's:
$\mathcal{N}(0, 0.02)$, the projections into the residual stream scaled by $1/\sqrt{2L}$.

The model sees ``context`` tokens at most. It is *stepped* like
:class:`~cadence.nn.lstm.LSTMLanguageModel` (``model(x, state) -> (logits, state)``); its state is
the tokens read so far, cropped to the context, so that
:func:`~cadence.nn.generation.generate` can feed it one token at a time.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from cadence.nn.attention import CausalSelfAttention
from cadence.nn.norm import LayerNorm

__all__ = ["TransformerBlock", "TransformerLanguageModel"]


class TransformerBlock(nn.Module):
    r"""A pre-norm block: $a = x + \mathrm{Attn}(\mathrm{LN}(x))$, then $a + \mathrm{MLP}(\mathrm{LN}(a))$."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.norm1 = LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, n_heads, dropout)
        self.norm2 = LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` to ``[B, T, d]``."""
        a = x + self.attention(self.norm1(x))
        return a + self.mlp(self.norm2(a))


class TransformerLanguageModel(nn.Module):
    """Token and position embeddings, ``n_layers`` pre-norm blocks, a final layer norm and the tied output layer.

    It attends over ``context`` tokens at most.

    Raises:
        ValueError: ``d_model`` is not a multiple of ``n_heads``.
    """

    #: Batches are independent windows: nothing is carried from one to the next in training.
    carries_state: ClassVar[bool] = False

    def __init__(self, n_tokens: int, d_model: int, n_layers: int, n_heads: int, context: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"TransformerLanguageModel: d_model={d_model} is not a multiple of n_heads={n_heads}; "
                             f"expected each head to take d_model / n_heads features")
        self.context = context
        self.embedding = nn.Embedding(n_tokens, d_model)
        self.position = nn.Embedding(context, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_tokens, bias=False)
        self.head.weight = self.embedding.weight
        # GPT-2's initialisation: N(0, 0.02), and the projections into the residual stream scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("attention.out.weight", "mlp.2.weight")) \
                    else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[T', B, n_tokens]`` of the token after each of the last ``T'`` of ``x`` (int64 ``[T, B]``).

        ``state`` is the tokens before ``x`` (``None``: none), as the previous call returned them:
        the model reads them and ``x``, cropped to the last ``context``, gives the logits of the
        last ``T' = min(T, context)`` positions, and returns the last ``context - 1`` tokens read
        as the next state. In training ``T = context`` and there is no state: one window, all of
        its logits. :func:`~cadence.nn.generation.generate` steps it one token at a time.
        """
        n = min(len(x), self.context)
        if state is not None:
            x = torch.cat([state, x])
        x = x[-self.context:]
        state = x[max(len(x) - self.context + 1, 0):]
        tokens = x.t()
        h = self.dropout(self.embedding(tokens) + self.position(torch.arange(tokens.shape[1], device=x.device)))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, -n:])).transpose(0, 1), state
