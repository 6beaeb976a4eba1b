"""Tests of :mod:`cadence.metrics.perplexity` against scikit-learn's log loss on the same tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss

from cadence.metrics import BitsPerCharacter, Perplexity

from .conftest import classifier_batches


def padded_batches():
    """Sequence batches whose tails are padding (-100), a different length per row."""
    batches = classifier_batches([8, 8, 3], seq=12)
    g = torch.Generator().manual_seed(7)
    for _, target in batches:
        for row, length in zip(target, torch.randint(1, 13, (len(target),), generator=g)):
            row[length:] = -100
    return batches


def sklearn_cross_entropy(batches, ignore_index=None) -> float:
    """The mean cross-entropy in nats of all counted tokens, by scikit-learn, in float64."""
    logits = torch.cat([o.reshape(-1, o.shape[-1]) for o, _ in batches]).double()
    targets = torch.cat([t.reshape(-1) for _, t in batches])
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    probabilities = logits[keep].softmax(dim=-1).numpy()
    return log_loss(targets[keep].numpy(), probabilities, labels=np.arange(logits.shape[-1]))


def run(metric, batches):
    for output, target in batches:
        metric(output, target)
    return metric.compute().item()


def test_equal_scikit_learn_over_a_short_last_batch():
    batches = classifier_batches([64, 64, 17])
    h = sklearn_cross_entropy(batches)
    assert run(Perplexity(), batches) == pytest.approx(math.exp(h), rel=1e-6)
    assert run(BitsPerCharacter(), batches) == pytest.approx(h / math.log(2), rel=1e-6)


def test_ignore_index_leaves_the_padding_out():
    batches = padded_batches()
    h = sklearn_cross_entropy(batches, ignore_index=-100)
    perplexity = Perplexity(ignore_index=-100)
    assert run(perplexity, batches) == pytest.approx(math.exp(h), rel=1e-6)
    assert perplexity.count == sum(int((t != -100).sum()) for _, t in batches)
    assert run(BitsPerCharacter(ignore_index=-100), batches) == pytest.approx(h / math.log(2), rel=1e-6)


def test_ignore_index_that_is_a_class():
    batches = classifier_batches([32, 32, 5])
    h = sklearn_cross_entropy(batches, ignore_index=0)
    assert run(Perplexity(ignore_index=0), batches) == pytest.approx(math.exp(h), rel=1e-6)


def test_a_uniform_model_has_the_number_of_classes_as_perplexity_and_log2_of_it_as_bits():
    target = torch.tensor([[0, 3, 1, 2], [4, 4, 0, 1]])
    # float32 normalisation: log(5) to float32's precision
    assert run(Perplexity(), [(torch.zeros(2, 4, 5), target)]) == pytest.approx(5.0, rel=1e-6)
    assert run(BitsPerCharacter(), [(torch.full((2, 4, 5), 3.0), target)]) == pytest.approx(math.log2(5), rel=1e-6)


def test_large_logits_stay_finite():
    output = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]])
    bits = BitsPerCharacter()
    bits(output, torch.tensor([0, 0]))
    assert bits.compute().item() == pytest.approx(1000 / 2 / math.log(2))


def test_half_precision_logits_are_normalised_in_float32():
    batches = [(o.half(), t) for o, t in classifier_batches([64, 64])]
    h = sklearn_cross_entropy(batches)  # the same half-precision values, in float64
    assert run(BitsPerCharacter(), batches) == pytest.approx(h / math.log(2), rel=1e-6)


def test_nothing_counted_is_nan():
    for metric in (Perplexity(ignore_index=-100), BitsPerCharacter(ignore_index=-100)):
        assert torch.isnan(metric.compute())
        metric(torch.randn(2, 3, 5), torch.full((2, 3), -100))
        assert torch.isnan(metric.compute()) and metric.count == 0


@pytest.mark.parametrize("metric", [Perplexity(ignore_index=-100), BitsPerCharacter(ignore_index=-100)])
def test_update_never_reads_values_on_the_host(request, metric):
    batches = padded_batches()
    request.getfixturevalue("no_host_sync")
    for output, target in batches:
        metric(output, target)
        metric.compute()


def test_gradients_are_not_kept():
    output = torch.randn(4, 3, requires_grad=True)
    perplexity = Perplexity()
    perplexity(output, torch.tensor([0, 1, 2, 0]))
    assert not perplexity.nll.requires_grad and not perplexity.compute().requires_grad


def test_shape_that_would_broadcast():
    with pytest.raises(ValueError, match=r"Perplexity.update: output of shape \[4, 3\] and target of shape \[4, 3\]"):
        Perplexity().update(torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long))


def test_bad_ignore_index():
    with pytest.raises(TypeError, match=r"BitsPerCharacter: ignore_index=0.5 is a float"):
        BitsPerCharacter(ignore_index=0.5)
