"""Tests of :mod:`cadence.metrics.accuracy` against a direct computation over the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from cadence.metrics import Accuracy

from .conftest import classifier_batches

#: Four full batches and a short last one, as a loader without ``drop_last`` gives.
SIZES = [64, 64, 64, 64, 17]


def direct(batches, ignore_index=None) -> float:
    """Accuracy over all batches at once, in numpy."""
    logits = np.concatenate([o.numpy().reshape(-1, o.shape[-1]) for o, _ in batches])
    targets = np.concatenate([t.numpy().reshape(-1) for _, t in batches])
    keep = np.ones_like(targets, dtype=bool) if ignore_index is None else targets != ignore_index
    return float((logits.argmax(axis=-1) == targets)[keep].mean())


def test_equals_direct_computation():
    batches = classifier_batches(SIZES)
    acc = Accuracy()
    for output, target in batches:
        acc(output, target)
    expected = direct(batches)
    assert 0.2 < expected < 0.9  # a meaningful test: neither trivial extreme
    assert acc.compute().item() == pytest.approx(expected, abs=1e-6)
    assert acc.state.total == sum(SIZES)


def test_ignore_index_on_padded_sequences():
    batches = classifier_batches([8, 8, 3], seq=12)
    for _, target in batches:
        # Pad the tail of every sequence, a different length each.
        for row, length in zip(target, torch.randint(1, 13, (len(target),))):
            row[length:] = -100
    acc = Accuracy(ignore_index=-100)
    for output, target in batches:
        acc(output, target)
    assert acc.compute().item() == pytest.approx(direct(batches, ignore_index=-100), abs=1e-6)
    assert acc.state.total == sum(int((t != -100).sum()) for _, t in batches)


def test_ignore_index_that_is_a_class():
    batches = classifier_batches(SIZES)
    acc = Accuracy(ignore_index=3)
    for output, target in batches:
        acc(output, target)
    assert acc.compute().item() == pytest.approx(direct(batches, ignore_index=3), abs=1e-6)


def test_agrees_with_scikit_learn():
    batches = classifier_batches(SIZES)
    acc = Accuracy()
    for output, target in batches:
        acc(output, target)
    y_pred = torch.cat([o.argmax(-1) for o, _ in batches]).numpy()
    y_true = torch.cat([t for _, t in batches]).numpy()
    assert acc.compute().item() == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-6)


def test_update_never_reads_values_on_the_host(no_host_sync):
    acc, ignoring = Accuracy(), Accuracy(ignore_index=0)
    for output, target in classifier_batches(SIZES):
        acc(output, target)
        ignoring.update(output, target)
        acc.compute()


def test_counts_stay_on_the_inputs_device():
    acc = Accuracy(ignore_index=-1)
    acc(torch.randn(4, 3, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"))
    assert acc.state.correct.device.type == acc.state.total.device.type == "meta"
    acc.reset()
    assert acc.state.total.device.type == "meta"


def test_nothing_counted_is_nan():
    acc = Accuracy(ignore_index=-100)
    assert torch.isnan(acc.compute())
    acc(torch.randn(2, 5), torch.tensor([-100, -100]))
    assert torch.isnan(acc.compute())


def test_gradients_are_not_kept():
    output = torch.randn(4, 3, requires_grad=True)
    acc = Accuracy()
    acc(output, torch.tensor([0, 1, 2, 0]))
    assert not acc.compute().requires_grad


@pytest.mark.parametrize("output, target, match", [
    (torch.randn(4, 3), torch.zeros(5, dtype=torch.long), r"output of shape \[4, 3\] and target of shape \[5\]"),
    (torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long), r"target of shape \[4, 3\]; expected logits"),
    (torch.randn(4, 0), torch.zeros(4, dtype=torch.long), r"C >= 1"),
    (torch.tensor(1.0), torch.tensor(1), r"output of shape \[\]"),
])
def test_bad_shapes(output, target, match):
    with pytest.raises(ValueError, match=match):
        Accuracy().update(output, target)


def test_float_targets():
    with pytest.raises(TypeError, match=r"target has dtype torch.float32; expected integer class indices"):
        Accuracy().update(torch.randn(4, 3), torch.zeros(4))


def test_bad_ignore_index():
    with pytest.raises(TypeError, match=r"Accuracy: ignore_index=1.5"):
        Accuracy(ignore_index=1.5)
