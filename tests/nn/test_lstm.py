"""LSTMLanguageModel: the state carried across a cut, and the one-step path equal to nn.LSTM without global flags."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from cadence.nn import LSTMLanguageModel, generate


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


def through_nn_lstm(model: LSTMLanguageModel, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
    """The reference: the model's computation with every time step in ``nn.LSTM``."""
    h, state = model.lstm(model.dropout(model.embedding(x)), state)
    return model.head(model.dropout(h)), state


@pytest.mark.parametrize("with_state", [False, True])
def test_one_step_equals_nn_lstm(with_state):
    torch.manual_seed(1)
    model = LSTMLanguageModel(20, 8, 16, 3).eval()
    x = torch.randint(0, 20, (1, 4))
    state = (torch.randn(3, 4, 16), torch.randn(3, 4, 16)) if with_state else None
    with torch.no_grad():
        logits, (h, c) = model(x, state)
        expected, (expected_h, expected_c) = through_nn_lstm(model, x, state)
    assert logits.shape == expected.shape == (1, 4, 20)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert torch.allclose(h, expected_h, atol=1e-6) and torch.allclose(c, expected_c, atol=1e-6)


def test_stepping_a_token_at_a_time_gives_the_logits_and_state_of_one_pass():
    torch.manual_seed(2)
    model = LSTMLanguageModel(20, 8, 16, 2).eval()
    x = torch.randint(0, 20, (15, 3))
    with torch.no_grad():
        whole, (whole_h, whole_c) = through_nn_lstm(model, x)
        steps, state = [], None
        for t in range(len(x)):
            logits, state = model(x[t : t + 1], state)
            steps.append(logits)
    assert torch.allclose(torch.cat(steps), whole, atol=1e-5)
    assert torch.allclose(state[0], whole_h, atol=1e-5) and torch.allclose(state[1], whole_c, atol=1e-5)


def test_a_training_step_drops_between_layers_only_as_nn_lstm_does():
    """With dropout 1 every unit between layers is dropped, deterministically: the step must drop the outputs of
    each layer but the top one, as nn.LSTM does, and gradients flow through it."""
    model = LSTMLanguageModel(20, 8, 16, 3, dropout=1.0).train()
    model.dropout = torch.nn.Identity()  # leave only the LSTM's own dropout
    x = torch.randint(0, 20, (1, 4))
    state = (torch.randn(3, 4, 16), torch.randn(3, 4, 16))
    logits, _ = model(x, state)
    expected, _ = through_nn_lstm(model, x, state)
    assert torch.allclose(logits, expected, atol=1e-6) and not torch.allclose(logits, model.head.bias)
    logits.sum().backward()
    assert model.lstm.weight_hh_l2.grad.abs().sum() > 0


class MkldnnFlagSeen(TorchFunctionMode):
    """Records ``torch.backends.mkldnn.enabled`` at every torch function called within it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bool] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.add(torch.backends.mkldnn.enabled)
        return func(*args, **(kwargs or {}))


def test_generation_steps_without_nn_lstm_and_without_touching_a_global_flag():
    """One-token steps bypass nn.LSTM (whose oneDNN kernel costs milliseconds a call) and change no process-wide
    setting on the way: every torch call of the generation sees the flag as it was."""
    model = LSTMLanguageModel(20, 8, 16, 2).eval()
    calls = []
    model.lstm.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    before = torch.backends.mkldnn.enabled
    with MkldnnFlagSeen() as mode:
        generate(model, torch.tensor([3, 1, 4, 1, 5]), 10, generator=torch.Generator().manual_seed(0))
    assert calls == [5]  # the prompt, once; then nine steps without it
    assert mode.seen == {before} and torch.backends.mkldnn.enabled == before
