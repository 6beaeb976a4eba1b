r"""Generation from an autoregressive language model: sampling with a temperature and top-k, one token at a time.

A language model gives, after the tokens $x_{<t}$, logits $z \in \mathbb{R}^V$ over the next
token. Sampling draws $x_t$ from

$$
p(x_t = i \mid x_{<t}) = \frac{e^{z_i / \tau}}{\sum_{j \in K} e^{z_j / \tau}}, \quad i \in K,
$$

where $\tau > 0$ is the *temperature* ($\tau < 1$ sharpens the distribution, $\tau = 1$ is the
model's own, $\tau \to 0$ tends to the most likely token) and $K$ is the set of the $k$ tokens of
largest logit (*top-k* sampling, Fan et al. 2018, "Hierarchical Neural Story Generation"), or every
token when $k = 0$. $\tau = 0$ and $k = 1$ both mean greedy decoding, $x_t = \arg\max_i z_i$.
Tokens listed in ``banned`` (a vocabulary's reserved padding and unknown tokens) are never drawn.

A model here is *stepped*: ``model(x, state) -> (logits, state)`` with ``x`` time-major token ids
``[T, B]`` and ``logits`` ``[T, B, V]``; ``state`` is whatever the model carries from one call to
the next (:class:`~cadence.nn.lstm.LSTMLanguageModel`'s hidden and cell states,
:class:`~cadence.nn.transformer.TransformerLanguageModel`'s preceding tokens). :func:`generate`
feeds the prompt once, then one token at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from cadence.checks import check_number

__all__ = ["check_sampling", "generate", "sample_next"]

Stepped = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
"""A model called as ``model(x [T, B], state) -> (logits [T, B, V], state)``."""


def check_sampling(where: str, temperature: float, top_k: int) -> tuple[float, int]:
    """``(temperature, top_k)`` checked: a temperature >= 0 and a top-k >= 0 (0: every token)."""
    return (check_number(where, "temperature", temperature, low=0),
            check_number(where, "top_k", top_k, low=0, integer=True))


def sample_next(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0,
                banned: Sequence[int] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw one token per row of ``logits`` ``[B, V]``; return int64 ``[B]``.

    $\tau = 0$ or $k = 1$: the arg max (no random number is drawn). Otherwise a draw from
    $\mathrm{softmax}(z / \tau)$ restricted to the top $k$ tokens (all when $k = 0$), through
    ``generator``, so the same generator state gives the same tokens.
    """
    z = logits.float()
    if banned:
        z = z.index_fill(-1, torch.tensor(list(banned), device=z.device), -torch.inf)
    if temperature == 0 or top_k == 1:
        return z.argmax(-1)
    z = z / temperature
    if 0 < top_k < z.shape[-1]:
        # $K$: the k largest logits; every other token gets probability 0.
        kth = z.topk(top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, -torch.inf)
    p = torch.softmax(z, dim=-1)
    return torch.multinomial(p, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Stepped, prompt: torch.Tensor, length: int, *, temperature: float = 1.0, top_k: int = 0,
             banned: Sequence[int] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    """``length`` tokens sampled after ``prompt`` (integer ids ``[T]``, at least one); return int64 ``[length]``.

    The prompt is fed in one call, then each drawn token in its own call with the state the model
    returned: the cost of a token is one step of the model, not a pass over everything so far.
    """
    check_number("generate", "length", length, low=0, integer=True)
    temperature, top_k = check_sampling("generate", temperature, top_k)
    if prompt.dim() != 1 or len(prompt) == 0:
        raise ValueError(f"generate: prompt of shape {list(prompt.shape)}; expected at least one token id, [T]")
    out = torch.empty(length, dtype=torch.int64)
    x, state = prompt.long().view(-1, 1), None
    for t in range(length):
        logits, state = model(x, state)
        token = sample_next(logits[-1], temperature=temperature, top_k=top_k, banned=banned, generator=generator)
        out[t] = token[0]
        x = token.view(1, 1)
    return out
