"""Tests of :mod:`cadence.metrics.confusion` against scikit-learn on the same batches, edge cases included."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from cadence.metrics import F1, ConfusionMatrix, Precision, Recall

from .conftest import classifier_batches

SCORES = [(Precision, precision_score), (Recall, recall_score), (F1, f1_score)]
AVERAGES = ["micro", "macro", "weighted", None]


def logits_of(pred: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose argmax is ``pred``."""
    return F.one_hot(pred, classes).float() + 0.1 * torch.rand(*pred.shape, classes)


def run(metric, batches):
    for output, target in batches:
        metric(output, target)
    return metric.compute()


def flat(batches):
    """Predicted classes and targets of all batches, in numpy."""
    pred = np.concatenate([o.argmax(-1).numpy().reshape(-1) for o, _ in batches])
    target = np.concatenate([t.numpy().reshape(-1) for _, t in batches])
    return pred, target


def sklearn_score(score, target, pred, classes, average, ignore_index=None):
    """scikit-learn's answer: without ``ignore_index`` as it is called by default (every average but ``None``,
    for which every class is listed); with it, on the samples not ignored, over the classes but the ignored one,
    the ignored class NaN for ``average=None``."""
    if ignore_index is None:
        labels = np.arange(classes) if average is None else None
        return score(target, pred, labels=labels, average=average, zero_division=0)
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    seen = set(target) | set(pred) if average == "macro" else set(range(classes))
    labels = sorted(seen - {ignore_index})
    value = score(target, pred, labels=labels, average=average, zero_division=0)
    if average is None and 0 <= ignore_index < classes:
        value = np.insert(value, ignore_index, np.nan)
    return value


def assert_equal(ours: torch.Tensor, expected) -> None:
    np.testing.assert_allclose(ours.numpy(), np.asarray(expected, dtype=np.float64), rtol=1e-12, atol=1e-12)


def test_confusion_matrix_equals_scikit_learn():
    batches = classifier_batches([64, 64, 17])
    pred, target = flat(batches)
    matrix = run(ConfusionMatrix(10), batches)
    assert matrix.dtype == torch.int64
    np.testing.assert_array_equal(matrix.numpy(), confusion_matrix(target, pred, labels=np.arange(10)))


@pytest.mark.parametrize("ignore_index", [-100, 4])
def test_confusion_matrix_leaves_ignored_samples_out(ignore_index):
    batches = classifier_batches([8, 8, 3], seq=12)
    for _, target in batches:
        target[:, 9:] = ignore_index
    pred, target = flat(batches)
    keep = target != ignore_index
    expected = confusion_matrix(target[keep], pred[keep], labels=np.arange(10))
    np.testing.assert_array_equal(run(ConfusionMatrix(10, ignore_index=ignore_index), batches).numpy(), expected)


@pytest.mark.parametrize("metric, score", SCORES)
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("ignore_index", [None, -100, 3])
def test_scores_equal_scikit_learn(metric, score, average, ignore_index):
    batches = classifier_batches([64, 64, 64, 17])
    if ignore_index == -100:
        for _, target in batches:
            target[::5] = -100
    pred, target = flat(batches)
    expected = sklearn_score(score, target, pred, 10, average, ignore_index)
    assert_equal(run(metric(10, average=average, ignore_index=ignore_index), batches), expected)


@pytest.mark.parametrize("metric, score", SCORES)
def test_binary_is_the_positive_class_score(metric, score):
    g = torch.Generator().manual_seed(6)
    z = [torch.randn(n, generator=g) for n in (50, 50, 13)]
    batches = [(torch.stack((torch.zeros_like(x), x + 0.8 * torch.randn(len(x), generator=g)), -1), (x > 0.3).long())
               for x in z]
    pred, target = flat(batches)
    expected = score(target, pred, average="binary")
    assert 0.3 < expected < 0.95
    assert_equal(run(metric(2, average="binary"), batches), expected)


@pytest.mark.parametrize("metric, score", SCORES)
@pytest.mark.parametrize("average", AVERAGES)
def test_a_class_never_predicted_scores_0_without_a_warning(metric, score, average):
    target = torch.tensor([0, 1, 2, 2, 1, 0, 2])
    pred = torch.tensor([0, 1, 1, 1, 1, 0, 1])  # class 2 is never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = run(metric(3, average=average), [(logits_of(pred, 3), target)])
    assert_equal(value, sklearn_score(score, target.numpy(), pred.numpy(), 3, average))
    if average is None and metric is Precision:
        assert value[2] == 0


@pytest.mark.parametrize("metric, score", SCORES)
@pytest.mark.parametrize("average", AVERAGES)
def test_a_single_class(metric, score, average):
    target = torch.full((6,), 2)
    value = run(metric(4, average=average), [(logits_of(target, 4), target)])
    assert_equal(value, sklearn_score(score, target.numpy(), target.numpy(), 4, average))
    if average is not None:
        assert value == 1.0


@pytest.mark.parametrize("metric", [Precision, Recall, F1])
@pytest.mark.parametrize("average", AVERAGES)
def test_an_empty_phase_and_every_sample_ignored_are_nan(metric, average):
    empty = metric(3, average=average, ignore_index=-1)
    assert torch.isnan(empty.compute()).all() and empty.compute().shape == ((3,) if average is None else ())
    ignored = metric(3, average=average, ignore_index=-1)
    ignored(torch.randn(4, 3), torch.full((4,), -1))
    assert torch.isnan(ignored.compute()).all()
    assert torch.isnan(metric(2, average="binary").compute())
    matrix = ConfusionMatrix(3, ignore_index=-1)
    assert (matrix.compute() == 0).all()
    matrix(torch.randn(4, 3), torch.full((4,), -1))
    assert (matrix.compute() == 0).all()


def test_macro_averages_leave_the_ignored_class_out():
    # torchmetrics #2441: class 0 ignored; of class 1's two samples one is found: macro recall 0.5, not 0.25.
    output = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    target = torch.tensor([0, 0, 1, 1])
    assert run(Recall(2, ignore_index=0), [(output, target)]) == 0.5
    # torchmetrics #1691: a perfect predictor with class 0 ignored scores 1, not 2/3.
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    for metric in (Precision, Recall, F1):
        assert run(metric(3, ignore_index=0), [(logits_of(target, 3), target)]) == 1.0
    # Predictions of the ignored class are still wrong predictions of the samples counted.
    pred = torch.tensor([0, 1, 2, 0, 0, 2])
    assert run(Recall(3, ignore_index=0), [(logits_of(pred, 3), target)]) == 0.75
    per_class = run(Precision(3, average=None, ignore_index=0), [(logits_of(pred, 3), target)])
    assert math.isnan(per_class[0]) and per_class[1:].tolist() == [1.0, 1.0]


@st.composite
def cases(draw):
    """Small classification problems in several batches, with ties to no class, classes that never occur,
    single classes and, now and then, every sample ignored."""
    classes = draw(st.integers(2, 5))
    ignore_index = draw(st.sampled_from([None, -1, 0, classes - 1]))
    sizes = draw(st.lists(st.integers(0, 7), min_size=1, max_size=4))
    label = st.integers(-1 if ignore_index == -1 else 0, classes - 1)
    batches = [(torch.tensor(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), dtype=torch.long),
                torch.tensor(draw(st.lists(label, min_size=n, max_size=n)), dtype=torch.long)) for n in sizes]
    return classes, ignore_index, batches


@settings(max_examples=60, deadline=None)
@given(cases(), st.sampled_from(SCORES), st.sampled_from(AVERAGES))
def test_random_cases_equal_scikit_learn(case, scores, average):
    classes, ignore_index, batches = case
    metric, score = scores
    ours = run(metric(classes, average=average, ignore_index=ignore_index),
               [(logits_of(pred, classes), target) for pred, target in batches])
    pred, target = (torch.cat(t).numpy() for t in zip(*batches))
    if len(target) == 0 or (ignore_index is not None and (target == ignore_index).all()):
        assert torch.isnan(ours).all()  # scikit-learn refuses empty input
    else:
        assert_equal(ours, sklearn_score(score, target, pred, classes, average, ignore_index))


@pytest.mark.parametrize("metric", [ConfusionMatrix(10, ignore_index=-100), Precision(10, ignore_index=3),
                                    Recall(10, average="weighted"), F1(10, average=None, ignore_index=-100),
                                    F1(2, average="binary")])
def test_update_and_compute_never_read_values_on_the_host(request, metric):
    classes = metric.num_classes
    batches = [(o[..., :classes], t % classes) for o, t in classifier_batches([16, 16, 5])]
    request.getfixturevalue("no_host_sync")
    for output, target in batches:
        metric(output, target)
        metric.compute()


def test_the_matrix_moves_to_the_inputs_device():
    f1 = F1(3)
    f1(torch.randn(4, 3, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"))
    assert f1.matrix.device.type == "meta" and f1.compute().device.type == "meta"


def test_logits_of_another_number_of_classes():
    with pytest.raises(ValueError, match=r"Precision.update: output of shape \[4, 5\] and target of shape \[4\]; "
                                         r"expected logits \[..., 3\]"):
        Precision(3).update(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("make, error, match", [
    (lambda: ConfusionMatrix(0), ValueError,
     r"ConfusionMatrix: num_classes=0 is out of range; expected num_classes >= 1"),
    (lambda: Precision(2.5), TypeError, r"Precision: num_classes=2.5 is a float; expected an integer"),
    (lambda: Recall(3, average="samples"), ValueError,
     r"Recall: average='samples' is not one of 'micro', 'macro', 'weighted', 'binary', None"),
    (lambda: F1(3, average="binary"), ValueError, r"F1: average='binary' scores the positive class of two; got "
                                                  r"num_classes=3"),
    (lambda: F1(3, ignore_index=0.5), TypeError, r"F1: ignore_index=0.5 is a float"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
