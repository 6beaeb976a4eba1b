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

A call of one time step (generation) does not go through ``nn.LSTM``: on CPUs its oneDNN kernel,
twice as fast as torch's own over a batch of sequences, costs ~6 ms a call however short the
input. The step runs each layer's weights through ``torch.lstm_cell`` instead (the op
``nn.LSTMCell`` runs): the same equations, the same values to float rounding, and no
process-wide setting touched. A generated character of the Shakespeare experiment's 2x512
LSTM costs ~0.7 ms that way on one CPU thread, against ~6 ms through ``nn.LSTM``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LSTMLanguageModel", "LSTMState"]

LSTMState = tuple[torch.Tensor, torch.Tensor]
"""$(h, c)$, each ``[n_layers, B, d_hidden]``."""


class LSTMLanguageModel(nn.Module):
    """Embedding ``n_tokens -> d_embed``, ``n_layers`` LSTM layers of ``d_hidden`` units, linear to ``n_tokens`` logits.

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
        h, state = self._step(e, state) if len(x) == 1 else self.lstm(e, state)
        return self.head(self.dropout(h)), state

    def _step(self, e: torch.Tensor, state: LSTMState | None) -> tuple[torch.Tensor, LSTMState]:
        """``self.lstm(e, state)`` for one time step ``e`` ``[1, B, d_embed]``, a layer at a time with
        ``torch.lstm_cell`` (see the module's docstring), the dropout between layers as ``nn.LSTM`` applies it."""
        lstm = self.lstm
        if state is None:
            zeros = e.new_zeros(lstm.num_layers, e.shape[1], lstm.hidden_size)
            state = (zeros, zeros)
        h_prev, c_prev = state
        x, h, c = e[0], [], []
        for l, (W, U, b_W, b_U) in enumerate(lstm.all_weights):
            # $i, f, g, o$ from $W x_t + b_W + U h_{t-1} + b_U$; $c_t = f c_{t-1} + i g$, $h_t = o \tanh(c_t)$.
            h_l, c_l = torch.lstm_cell(x, (h_prev[l], c_prev[l]), W, U, b_W, b_U)
            h.append(h_l)
            c.append(c_l)
            x = F.dropout(h_l, lstm.dropout, self.training) if l < lstm.num_layers - 1 else h_l
        return x[None], (torch.stack(h), torch.stack(c))
