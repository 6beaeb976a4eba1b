"""TransformerLanguageModel: causal, pre-norm, tied output weights, its context, and its state cropped to it."""

from __future__ import annotations

import pytest
import torch

from cadence.nn import TransformerLanguageModel, generate


def test_the_transformer_is_causal_and_pre_norm_with_tied_output_weights():
    model = TransformerLanguageModel(20, 16, 2, 4, context=12).eval()
    x = torch.randint(0, 20, (12, 2))
    changed = x.clone()
    changed[7:] = (changed[7:] + 1) % 20
    with torch.no_grad():
        before, _ = model(x)
        after, _ = model(changed)
    assert before.shape == (12, 2, 20)
    assert torch.equal(before[:7], after[:7]) and not torch.allclose(before[7:], after[7:])
    assert model.head.weight is model.embedding.weight
    block = model.blocks[0]
    assert [type(m).__name__ for m in (block.norm1, block.norm2, model.norm)] == ["LayerNorm"] * 3


def test_the_transformer_needs_heads_that_divide_its_width():
    with pytest.raises(ValueError, match="d_model=10 is not a multiple of n_heads=4"):
        TransformerLanguageModel(20, 10, 1, 4, 8)


def test_the_transformer_crops_its_state_to_its_context():
    model = TransformerLanguageModel(11, 16, 2, 2, context=8).eval()
    prompt = torch.arange(20) % 11
    with torch.no_grad():
        last, state = model(prompt.view(-1, 1), torch.empty(0, 1, dtype=torch.int64))
        cropped, _ = model(prompt[-8:].view(-1, 1))
    assert torch.allclose(last, cropped) and len(last) == 8 and torch.equal(state[:, 0], prompt[-7:])
    out = generate(model, prompt, 50, generator=torch.Generator().manual_seed(0))
    assert out.shape == (50,)
