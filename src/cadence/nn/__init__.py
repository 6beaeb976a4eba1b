"""Layers: the normalization family in :mod:`cadence.nn.norm`, and language models with their generation.

- :class:`LSTMLanguageModel` (:mod:`cadence.nn.lstm`): embedding, stacked LSTM layers, next-token logits;
  it carries its hidden and cell states from one call to the next.
- :class:`TransformerLanguageModel`, :class:`TransformerBlock` (:mod:`cadence.nn.transformer`): a
  decoder-only pre-norm transformer, on :class:`CausalSelfAttention` (:mod:`cadence.nn.attention`).
- :func:`generate`, :func:`sample_next`, :func:`check_sampling` (:mod:`cadence.nn.generation`):
  sampling with a temperature and top-k, one token at a time through a model's carried state.
"""

from cadence.nn import norm
from cadence.nn.attention import CausalSelfAttention
from cadence.nn.generation import check_sampling, generate, sample_next
from cadence.nn.lstm import LSTMLanguageModel
from cadence.nn.norm import BatchNorm
from cadence.nn.transformer import TransformerBlock, TransformerLanguageModel

__all__ = ["BatchNorm", "CausalSelfAttention", "LSTMLanguageModel", "TransformerBlock", "TransformerLanguageModel",
           "check_sampling", "generate", "norm", "sample_next"]
