"""Tests of :mod:`cadence.metrics.state`: per-phase states never mix, epoch hooks reset."""

from __future__ import annotations

import pytest
import torch

from cadence.metrics import Accuracy, MeanLoss, Metric, StateModule


def test_metrics_are_state_modules():
    assert isinstance(Accuracy(), Metric) and isinstance(MeanLoss(), StateModule)
    with pytest.raises(TypeError):
        StateModule()  # abstract


def test_train_and_valid_states_never_mix():
    loss = MeanLoss()
    states = {"train": loss.create_state(), "valid": loss.create_state()}
    expected = {"train": [], "valid": []}
    for step in range(6):
        for phase, value in (("train", 1.0 + step), ("valid", 100.0 - step)):
            loss.set_state(states[phase])
            loss.update(torch.tensor(value), 2)
            expected[phase].append(value)
    for phase in ("train", "valid"):
        loss.set_state(states[phase])
        assert loss.compute() == pytest.approx(sum(expected[phase]) / 6)


def test_accuracy_states_alternate():
    acc = Accuracy()
    train, valid = acc.create_state(), acc.create_state()
    right, wrong = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    target = torch.tensor([1])
    for _ in range(3):
        acc.set_state(train)
        acc(right, target)
        acc.set_state(valid)
        acc(wrong, target)
    acc.set_state(train)
    assert acc.compute() == 1.0
    acc.set_state(valid)
    assert acc.compute() == 0.0


def test_on_epoch_start_resets_only_the_current_state_in_place():
    loss = MeanLoss()
    train, valid = loss.create_state(), loss.create_state()
    for state in (train, valid):
        loss.set_state(state)
        loss.update(torch.tensor(3.0), 4)
    loss.set_state(train)
    loss.on_epoch_start()
    # The caller's own reference to the train state sees it emptied.
    assert train.count == 0 and train.weighted_sum == 0
    assert torch.isnan(loss.compute())
    loss.on_epoch_end()
    loss.set_state(valid)
    assert loss.compute() == 3.0


def test_metric_works_without_a_trainer():
    acc = Accuracy()
    acc.update(torch.tensor([[0.2, 0.8], [0.9, 0.1]]), torch.tensor([1, 1]))
    assert acc.compute() == 0.5
    acc.reset()
    assert torch.isnan(acc.compute())


def test_set_state_of_another_metric():
    with pytest.raises(TypeError, match=r"Accuracy.set_state: got a MeanLossState; expected a AccuracyState"):
        Accuracy().set_state(MeanLoss().create_state())
