"""LSTMLanguageModel: the state carried across a cut in the sequence."""

from __future__ import annotations

import torch

from cadence.nn import LSTMLanguageModel


def test_the_lstm_carries_its_state_exactly_across_a_cut_in_the_sequence():
    """Truncated BPTT loses gradients across a cut, never the forward computation: two halves with the state
    carried give the logits of the whole."""
    model = LSTMLanguageModel(20, 8, 16, 2).eval()
    x = torch.randint(0, 20, (24, 3))
    with torch.no_grad():
        whole, _ = model(x)
        first, state = model(x[:10])
        second, _ = model(x[10:], state)
    assert torch.allclose(torch.cat([first, second]), whole, atol=1e-6)
    assert [tuple(s.shape) for s in state] == [(2, 3, 16), (2, 3, 16)]
