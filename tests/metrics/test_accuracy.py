"""Tests of :mod:`cadence.metrics.accuracy` against scikit-learn on the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, top_k_accuracy_score

from cadence.metrics import Accuracy, AccuracyDirect, BinaryAccuracy

from .conftest import classifier_batches

#: Four full batches and a short last one, as a loader without ``drop_last`` gives.
SIZES = [64, 64, 64, 64, 17]


def flat(batches, ignore_index=None):
    """All batches' logits ``[N, C]`` and targets ``[N]`` in numpy, without the ignored samples."""
    logits = np.concatenate([o.numpy().reshape(-1, o.shape[-1]) for o, _ in batches])
    targets = np.concatenate([t.numpy().reshape(-1) for _, t in batches])
    keep = np.ones_like(targets, dtype=bool) if ignore_index is None else targets != ignore_index
    return logits[keep], targets[keep]


def run(metric, batches):
    for output, target in batches:
        metric(output, target)
    return metric.compute().item()


def test_equals_scikit_learn():
    batches = classifier_batches(SIZES)
    logits, targets = flat(batches)
    expected = accuracy_score(targets, logits.argmax(axis=-1))
    assert 0.2 < expected < 0.9  # a meaningful test: neither trivial extreme
    acc = Accuracy()
    assert run(acc, batches) == expected
    assert acc.total == sum(SIZES) and acc.correct.dtype == acc.total.dtype == torch.int64


@pytest.mark.parametrize("k", [2, 3, 9])
def test_top_k_equals_scikit_learn(k):
    batches = classifier_batches(SIZES)
    logits, targets = flat(batches)
    expected = top_k_accuracy_score(targets, logits, k=k, labels=np.arange(10))
    assert run(Accuracy(top_k=k), batches) == pytest.approx(expected, abs=1e-12)


def test_top_k_with_k_at_least_the_classes_counts_every_sample():
    assert run(Accuracy(top_k=10), classifier_batches([5, 3])) == 1.0


def test_ties_go_to_the_lower_class_as_argmax():
    # Integer logits tie often; k = 1 must still be argmax's answer.
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randint(0, 3, (40, 5), generator=g).float(), torch.randint(0, 5, (40,), generator=g))
               for _ in range(4)]
    logits, targets = flat(batches)
    assert run(Accuracy(), batches) == accuracy_score(targets, logits.argmax(axis=-1))
    # And top-k is the stable descending order's first k.
    order = np.argsort(-logits, axis=-1, kind="stable")
    expected = (order[:, :2] == targets[:, None]).any(axis=-1).mean()
    assert run(Accuracy(top_k=2), batches) == expected


def test_nan_logits_rank_above_every_number_as_in_argmax():
    nan = float("nan")
    output = torch.tensor([[0.0, nan, 1.0], [0.0, nan, 1.0], [nan, nan, nan], [2.0, 1.0, 0.0]])
    target = torch.tensor([2, 1, 0, 0])
    # Row 0: the NaN ranks first, the target second; rows 1 and 2: a target whose logit is NaN is never a
    # hit; row 3: a plain hit.
    assert run(Accuracy(), [(output, target)]) == 0.25
    assert run(Accuracy(top_k=2), [(output, target)]) == 0.5


def test_ignore_index_on_padded_sequences():
    batches = classifier_batches([8, 8, 3], seq=12)
    for _, target in batches:
        # Pad the tail of every sequence, a different length each.
        for row, length in zip(target, torch.randint(1, 13, (len(target),))):
            row[length:] = -100
    logits, targets = flat(batches, ignore_index=-100)
    acc = Accuracy(ignore_index=-100)
    assert run(acc, batches) == accuracy_score(targets, logits.argmax(axis=-1))
    assert acc.total == len(targets) < sum(t.numel() for _, t in batches)
    assert run(Accuracy(top_k=3, ignore_index=-100), batches) == pytest.approx(
        top_k_accuracy_score(targets, logits, k=3, labels=np.arange(10)), abs=1e-12)


def test_ignore_index_that_is_a_class():
    batches = classifier_batches(SIZES)
    logits, targets = flat(batches, ignore_index=3)
    assert run(Accuracy(ignore_index=3), batches) == accuracy_score(targets, logits.argmax(axis=-1))


def test_accuracy_direct_equals_scikit_learn_with_and_without_ignore_index():
    batches = [(o.argmax(-1), t) for o, t in classifier_batches(SIZES)]
    pred, target = torch.cat([p for p, _ in batches]).numpy(), torch.cat([t for _, t in batches]).numpy()
    assert run(AccuracyDirect(), batches) == accuracy_score(target, pred)
    keep = target != 4
    assert run(AccuracyDirect(ignore_index=4), batches) == accuracy_score(target[keep], pred[keep])


@pytest.mark.parametrize("dtype", [torch.long, torch.float32, torch.bool])
def test_binary_accuracy_equals_scikit_learn(dtype):
    g = torch.Generator().manual_seed(4)
    batches = []
    for size in SIZES:
        z = torch.randn(size, 3, generator=g)
        batches.append((z + 0.7 * torch.randn(size, 3, generator=g), (z > 0).to(dtype)))
    pred = torch.cat([o for o, _ in batches]).numpy().reshape(-1) > 0
    target = torch.cat([t for _, t in batches]).numpy().reshape(-1).astype(bool)
    expected = accuracy_score(target, pred)
    assert 0.6 < expected < 0.95
    assert run(BinaryAccuracy(), batches) == expected


def test_a_zero_logit_is_a_negative_prediction():
    assert run(BinaryAccuracy(), [(torch.tensor([0.0, 0.0]), torch.tensor([0, 1]))]) == 0.5


@pytest.mark.parametrize("metric, batch", [
    (Accuracy(), (torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))),
    (Accuracy(top_k=2, ignore_index=0), (torch.randn(2, 5, 3), torch.tensor([[0, 1, 2, 0, 1], [2, 2, 0, 0, 1]]))),
    (AccuracyDirect(ignore_index=-1), (torch.tensor([0, 1, 2]), torch.tensor([0, -1, 1]))),
    (BinaryAccuracy(), (torch.randn(6), torch.tensor([0, 1, 1, 0, 1, 0]))),
])
def test_update_never_reads_values_on_the_host(no_host_sync, metric, batch):
    for _ in range(3):
        metric(*batch)
        metric.compute()


def test_nothing_counted_is_nan():
    for metric in (Accuracy(ignore_index=-100), AccuracyDirect(ignore_index=-100), BinaryAccuracy()):
        assert torch.isnan(metric.compute())
    acc = Accuracy(ignore_index=-100)
    acc(torch.randn(2, 5), torch.tensor([-100, -100]))
    assert torch.isnan(acc.compute()) and acc.total == 0
    direct = AccuracyDirect(ignore_index=-100)
    direct(torch.tensor([1, 2]), torch.tensor([-100, -100]))
    assert torch.isnan(direct.compute())


def test_counts_move_to_the_inputs_device():
    acc = Accuracy(ignore_index=-1)
    acc(torch.randn(4, 3, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"))
    assert acc.correct.device.type == acc.total.device.type == "meta"
    acc.reset()
    assert acc.total.device.type == "meta"


def test_gradients_are_not_kept():
    output = torch.randn(4, 3, requires_grad=True)
    acc = Accuracy()
    acc(output, torch.tensor([0, 1, 2, 0]))
    assert not acc.compute().requires_grad


@pytest.mark.parametrize("metric, output, target, match", [
    (Accuracy(), torch.randn(4, 3), torch.zeros(5, dtype=torch.long),
     r"Accuracy.update: output of shape \[4, 3\] and target of shape \[5\]"),
    # Targets shaped like the logits would broadcast against the argmax into a wrong answer.
    (Accuracy(), torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long), r"target of shape \[4, 3\]; expected logits"),
    (AccuracyDirect(), torch.zeros(4, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long),
     r"AccuracyDirect.update: pred of shape \[4\] and target of shape \[4, 1\]"),
    (BinaryAccuracy(), torch.randn(4, 1), torch.zeros(4), r"BinaryAccuracy.update: output of shape \[4, 1\]"),
])
def test_shapes_that_would_broadcast(metric, output, target, match):
    with pytest.raises(ValueError, match=match):
        metric.update(output, target)


@pytest.mark.parametrize("make, error, match", [
    (lambda: Accuracy(ignore_index=1.5), TypeError, r"Accuracy: ignore_index=1.5 is a float"),
    (lambda: Accuracy(top_k=0), ValueError, r"Accuracy: top_k=0 is out of range; expected top_k >= 1"),
    (lambda: Accuracy(top_k=2.0), TypeError, r"Accuracy: top_k=2.0 is a float; expected an integer"),
    (lambda: AccuracyDirect(ignore_index="pad"), TypeError, r"AccuracyDirect: ignore_index='pad' is a str"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
