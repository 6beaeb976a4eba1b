"""Generation: greedy decoding, temperature, top-k, banned tokens, seeds, and generation through a carried state."""

from __future__ import annotations

import pytest
import torch

from cadence.nn import LSTMLanguageModel, TransformerLanguageModel, generate, sample_next


def logits(rows: int = 64, vocabulary: int = 11, seed: int = 1) -> torch.Tensor:
    return torch.randn(rows, vocabulary, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("options", [{"temperature": 0.0}, {"top_k": 1}, {"temperature": 0.0, "top_k": 5}])
def test_temperature_0_and_top_k_1_are_the_argmax(options):
    z = logits()
    assert torch.equal(sample_next(z, **options, generator=torch.Generator().manual_seed(0)), z.argmax(-1))


def test_top_k_draws_only_from_the_k_largest_and_from_each_of_them():
    z = logits(rows=1).expand(4000, -1)
    drawn = sample_next(z, top_k=3, generator=torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == set(z[0].topk(3).indices.tolist())


def test_the_frequencies_follow_the_softmax_of_the_logits_over_the_temperature():
    z = logits(rows=1, vocabulary=5).expand(20000, -1) / 3
    for temperature in (0.5, 1.0, 2.0):
        drawn = sample_next(z, temperature=temperature, generator=torch.Generator().manual_seed(0))
        frequencies = torch.bincount(drawn, minlength=5) / len(drawn)
        expected = torch.softmax(z[0] / temperature, -1)
        # 20000 draws: a standard deviation of at most 0.0036 per frequency.
        assert torch.allclose(frequencies, expected, atol=0.015), (temperature, frequencies, expected)


def test_banned_tokens_are_never_drawn_even_when_most_likely():
    z = logits()
    z[:, 2] = 100.0
    assert not (sample_next(z, banned=[2], generator=torch.Generator().manual_seed(0)) == 2).any()
    assert not (sample_next(z, temperature=0.0, banned=[2]) == 2).any()


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others():
    z = logits(rows=200)
    first, again, other = (sample_next(z, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("options, message", [
    ({"temperature": -1.0}, "temperature=-1.0 is out of range; expected temperature >= 0"),
    ({"top_k": -2}, "top_k=-2 is out of range; expected top_k >= 0"),
    ({"top_k": 1.5}, "top_k=1.5 is a float; expected an integer"),
])
def test_generate_refuses_bad_options_naming_them(options, message):
    model = LSTMLanguageModel(11, 4, 8, 1)
    with pytest.raises((ValueError, TypeError), match=message):
        generate(model, torch.tensor([1, 2]), 5, **options)


def test_generate_refuses_an_empty_prompt():
    with pytest.raises(ValueError, match=r"prompt of shape \[0\]; expected at least one token id"):
        generate(LSTMLanguageModel(11, 4, 8, 1), torch.tensor([], dtype=torch.int64), 5)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_greedy_generation_through_the_carried_state_is_what_the_whole_sequence_predicts(kind):
    """One character at a time with the state carried gives the tokens a pass over the whole text would pick."""
    torch.manual_seed(3)
    model = LSTMLanguageModel(11, 8, 16, 2) if kind == "lstm" else TransformerLanguageModel(11, 16, 2, 2, 64)
    model.eval()
    for p in model.parameters():  # larger weights than the initialisation: varied, confident predictions
        if p.dim() == 2:
            p.data.normal_(0, 0.5)
    prompt = torch.tensor([3, 1, 4, 1, 5])
    out = generate(model, prompt, 30, temperature=0.0)
    text = torch.cat([prompt, out])
    with torch.no_grad():
        whole, _ = model(text[:-1].view(-1, 1))
    assert torch.equal(whole[len(prompt) - 1:, 0].argmax(-1), out)
    assert len(set(out.tolist())) > 1
