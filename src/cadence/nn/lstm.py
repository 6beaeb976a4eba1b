r"""An LSTM language model: embedding, stacked LSTM layers, and a linear layer to the next token's logits.

Hochreiter & Schmidhuber, *Long Short-Term Memory*, Neural Computation 9(8), 1997, with the
forget gate of Gers, Schmidhuber & Cummins, *Learning to Forget*, 2000; as a character model,
Graves, *Generating Sequences With Recurrent Neural Networks*, arXiv:1308.0850, 2013, and
Karpathy's char-rnn.

Each token $x_t$ is embedded and run through ``n_layers`` LSTM layers, each keeping a hidden
state $h$ and a cell $c$:

$$
\begin{aligned}
i_t &= \sigma(W_i x_t + U_i h_{t-1} + b_i), \quad f_t = \sigma(W_f x_t + U_f h_{t-1} + b_f), \quad
o_t = \sigma(W_o x_t + U_o h_{t-1} + b_o) \\
g_t &= \tanh(W_g x_t + U_g h_{t-1} + b_g) \\
c_t &= f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t)
\end{aligned}
$$

then a linear layer gives the logits of the next token from the top layer's $h_t$. Dropout
goes on the non-recurrent connections only (Zaremba, Sutskever & Vinyals, *Recurrent Neural
Network Regularization*, arXiv:1409.2329, 2014): the embeddings, between layers, and the top
layer's output.

The model is *stepped*: ``model(x, state) -> (logits, state)`` carries $(h, c)$ from one call
to the next, so truncated back-propagation through time feeds it consecutive batches of each
column, and :func:`~cadence.nn.generation.generate` feeds it one token at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

__all__ = ["LSTMLanguageModel", "LSTMState"]

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""$(h, c)$, each ``[n_layers, B, d_hidden]``."""


@contextlib.contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """Within the block, let torch use oneDNN (MKL-DNN) kernels on the CPU or not."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


class LSTMLanguageModel(nn.Module):
    """Embedding ``n_tokens -> d_embed``, ``n_layers`` LSTM layers of ``d_hidden`` units, linear ``d_hidden -> n_tokens``.

    ``dropout`` is applied to the embeddings, between the LSTM layers and to the top layer's
    output (on the non-recurrent connections only).
    """

    #: The state is carried from one batch to the next (truncated BPTT).
    carries_state: ClassVar[bool] = True

    def __init__(self, n_tokens: int, d_embed: int, d_hidden: int, n_layers: int, dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, d_embed)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(d_embed, d_hidden, n_layers, dropout=dropout if n_layers > 1 else 0.0)
        self.head = nn.Linear(d_hidden, n_tokens)

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Logits ``[T, B, n_tokens]`` of the token after each of ``x`` (int64 ``[T, B]``), and the new
        ``(h, c)``, each ``[n_layers, B, d_hidden]`` (``state`` ``None``: zeros)."""
        e = self.dropout(self.embedding(x))
        if len(x) == 1 and x.device.type == "cpu":
            # One character at a time (generation): oneDNN's LSTM kernel, twice as fast as torch's own on a batch
            # of sequences, costs ~6 ms a call however short the input; torch's own takes 0.4 ms for one step.
            with _onednn(False):
                h, state = self.lstm(e, state)
        else:
            h, state = self.lstm(e, state)
        return self.head(self.dropout(h)), state
