"""Tests of :mod:`cadence.metrics.base`: declared states, one copy per phase, saving, moving, syncing (in one
process), and torchmetrics metrics through the same protocol."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torchmetrics
from torch import nn

from cadence.metrics import (F1, Accuracy, ConfusionMatrix, Mean, MeanLoss, Metric, Perplexity, Precision, Recall,
                             sync_metric)
from cadence.metrics import base

from .conftest import classifier_batches


class SumOfSquares(Metric):
    """A metric as a user writes one: its state, update and compute."""

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64))

    def update(self, x):
        self.total = self.total + (x.double() ** 2).sum()

    def compute(self):
        return self.total


def test_a_metric_is_its_states_update_and_compute():
    m = SumOfSquares()
    m(torch.tensor([1.0, 2.0]))
    m.update(torch.tensor(3.0))
    assert m.compute() == 14.0
    m.reset()
    assert m.compute() == 0.0 and m.total.dtype == torch.float64
    with pytest.raises(TypeError):
        Metric()  # abstract: update and compute are the subclass's


def test_reset_restores_defaults_and_does_not_share_them():
    m = SumOfSquares()
    m.total += 5  # even an in-place update must not reach the default
    m.reset()
    assert m.total == 0
    m.update(torch.tensor(2.0))
    m.reset()
    assert m.total == 0


def test_one_copy_per_phase_never_mixes():
    """The trainer's protocol: a deepcopy per phase, reset at each epoch's start, interleaved slices."""
    template = MeanLoss()
    phases = {"train": copy.deepcopy(template), "valid": copy.deepcopy(template)}
    for epoch in range(2):
        for metric in phases.values():
            metric.reset()
        seen = {"train": [], "valid": []}
        for step in range(6):
            for phase, value in (("train", 1.0 + step + epoch), ("valid", 100.0 - step)):
                phases[phase].update(torch.tensor(value), 2)
                seen[phase].append(value)
                assert phases[phase].compute() == pytest.approx(sum(seen[phase]) / len(seen[phase]))
    assert template.count == 0  # the template itself is never counted into


def test_accuracy_copies_alternate():
    acc = Accuracy()
    train, valid = copy.deepcopy(acc), copy.deepcopy(acc)
    right, wrong = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    target = torch.tensor([1])
    for _ in range(3):
        train(right, target)
        valid(wrong, target)
    assert train.compute() == 1.0 and valid.compute() == 0.0
    valid.reset()
    assert torch.isnan(valid.compute()) and train.compute() == 1.0


def test_state_dict_round_trips_through_a_weights_only_load():
    batches = classifier_batches([16, 16, 16, 9])
    whole, first = Accuracy(top_k=2), Accuracy(top_k=2)
    for output, target in batches:
        whole(output, target)
    for output, target in batches[:2]:
        first(output, target)
    buffer = io.BytesIO()
    torch.save({"valid": {"accuracy": first.state_dict()}}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = Accuracy(top_k=2)
    resumed.load_state_dict(saved["valid"]["accuracy"])
    for output, target in batches[2:]:
        resumed(output, target)
    assert resumed.correct == whole.correct and resumed.total == whole.total
    assert set(saved["valid"]["accuracy"]) == {"correct", "total"}


def test_state_dict_holds_copies():
    m = Mean()
    m.update(1.0, 1)
    state = m.state_dict()
    state["count"] += 10
    assert m.count == 1


def test_load_state_dict_that_does_not_fit():
    with pytest.raises(ValueError, match=r"Mean.load_state_dict: got states \['count'\]; expected \['count', "
                                       r"'weighted_sum'\]"):
        Mean().load_state_dict({"count": torch.tensor(1)})
    with pytest.raises(ValueError, match=r"Accuracy.load_state_dict: state 'total' has shape \[2\]; expected a "
                                         r"tensor of shape \[\]"):
        Accuracy().load_state_dict({"correct": torch.tensor(1), "total": torch.tensor([1, 2])})
    with pytest.raises(ValueError, match=r"state 'total' has a int; expected a tensor"):
        Accuracy().load_state_dict({"correct": torch.tensor(1), "total": 3})


def test_load_state_dict_keeps_the_declared_dtype_and_the_device():
    m = Mean().to("meta")
    m.load_state_dict({"weighted_sum": torch.tensor(2.0, dtype=torch.float32), "count": torch.tensor(1)})
    assert m.weighted_sum.dtype == torch.float64 and m.weighted_sum.device.type == "meta"


def test_add_state_refuses_a_non_tensor_or_a_taken_name():
    class Bad(SumOfSquares):
        def __init__(self, name, default):
            super().__init__()
            self.add_state(name, default)

    with pytest.raises(TypeError, match=r"Bad.add_state: default of 'n' is a int; expected a tensor"):
        Bad("n", 0)
    with pytest.raises(ValueError, match=r"Bad.add_state: 'total' is already an attribute"):
        Bad("total", torch.zeros(()))
    with pytest.raises(ValueError, match=r"Bad.add_state: 'update' is already an attribute"):
        Bad("update", torch.zeros(()))


def test_states_start_on_the_cpu_and_follow_the_first_update_or_to():
    m = SumOfSquares()
    assert m.total.device.type == "cpu"
    m.update(torch.ones(3, device="meta"))
    assert m.total.device.type == "meta"
    m.reset()
    assert m.total.device.type == "meta"
    placed = SumOfSquares()
    assert placed.to("meta") is placed and placed.total.device.type == "meta"


def test_updates_keep_no_graph():
    w = torch.ones(3, requires_grad=True)
    m = SumOfSquares()
    m.update(w * 2)
    assert not m.total.requires_grad and m.total.grad_fn is None


def test_deepcopy_is_independent():
    m = SumOfSquares()
    m.update(torch.tensor(2.0))
    twin = copy.deepcopy(m)
    twin.update(torch.tensor(1.0))
    assert m.compute() == 4.0 and twin.compute() == 5.0


def test_sync_is_a_no_op_without_a_process_group():
    m = SumOfSquares()
    m.update(torch.tensor(2.0))
    m.sync()
    sync_metric(m, timeout=1)
    assert m.compute() == 4.0


class TwinProcess:
    """Stands in for a second process with exactly this one's states: every sum is doubled."""

    def __init__(self):
        self.calls = 0

    def __call__(self, tensors, timeout, where):
        self.calls += 1
        assert where == "Accuracy.sync" and timeout == 7
        return [2 * t for t in tensors]


def test_sync_keeps_the_process_own_states(monkeypatch):
    """After a sync, compute reads the group's sums; the next update continues from this process's own
    counts, so repeated syncs (one per report, mid-epoch) never count a batch twice."""
    twin = TwinProcess()
    monkeypatch.setattr(base, "is_distributed", lambda: True)
    monkeypatch.setattr(base, "all_reduce_sum", twin)
    acc = Accuracy()
    hit, miss = (torch.tensor([[0.0, 1.0]]), torch.tensor([1])), (torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    acc(*hit)
    acc.sync(timeout=7)
    assert (acc.correct, acc.total) == (2, 2)
    assert acc.state_dict() == {"correct": 1, "total": 1}  # a checkpoint holds this process's counts
    acc.sync(timeout=7)
    assert (acc.correct, acc.total) == (2, 2)  # a second sync sums the own states again, not the sums
    acc(*miss)
    assert (acc.correct, acc.total) == (1, 2)
    sync_metric(acc, timeout=7)
    assert (acc.correct, acc.total) == (2, 4) and acc.compute() == 0.5 and twin.calls == 3
    acc.reset()
    assert (acc.correct, acc.total) == (0, 0)


def test_a_failed_sync_leaves_the_states_as_they_were(monkeypatch):
    def gone(tensors, timeout, where):
        raise RuntimeError(f"{where}: summing its states across the 2 processes failed")

    monkeypatch.setattr(base, "is_distributed", lambda: True)
    monkeypatch.setattr(base, "all_reduce_sum", gone)
    acc = Accuracy()
    acc(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    with pytest.raises(RuntimeError, match="Accuracy.sync: summing"):
        acc.sync(timeout=1)
    assert (acc.correct, acc.total) == (1, 1)


def test_sync_metric_leaves_a_torchmetrics_metric_to_its_own_sync(monkeypatch):
    theirs = torchmetrics.classification.MulticlassAccuracy(num_classes=3, average="micro")

    def refuse(*args, **kwargs):
        raise AssertionError("torchmetrics syncs inside compute; calling its sync() first breaks that compute")

    monkeypatch.setattr(theirs, "sync", refuse)
    monkeypatch.setattr(base, "is_distributed", lambda: True)
    sync_metric(theirs, timeout=1)


def per_phase_values(metric, data) -> torch.Tensor:
    """The trainer's protocol over two epochs of three interleaved slices: the values reported after each."""
    phases = {phase: copy.deepcopy(metric) for phase in data}
    values = []
    for epoch in range(2):
        for m in phases.values():
            m.reset()
        for i in range(3):
            for phase, batches in data.items():
                for batch in batches[epoch][i::3]:
                    phases[phase].update(*batch)
                sync_metric(phases[phase])
                values.append(phases[phase].compute().double().flatten())
    return torch.cat(values)


def phase_data(seq: int | None = None):
    """Two epochs of batches for a train and a valid phase, all different, of uneven sizes."""
    return {phase: [classifier_batches([13, 16, 7, 16, 16, 4][: 6 - p], seq=seq, seed=10 * p + epoch)
                    for epoch in range(2)] for p, phase in enumerate(("train", "valid"))}


TM = torchmetrics.classification


@pytest.mark.parametrize("ours, theirs", [
    (Accuracy(), TM.MulticlassAccuracy(num_classes=10, average="micro")),
    (Accuracy(top_k=3), TM.MulticlassAccuracy(num_classes=10, top_k=3, average="micro")),
    (Accuracy(ignore_index=2), TM.MulticlassAccuracy(num_classes=10, average="micro", ignore_index=2)),
    (ConfusionMatrix(10), TM.MulticlassConfusionMatrix(num_classes=10)),
    (ConfusionMatrix(10, ignore_index=4), TM.MulticlassConfusionMatrix(num_classes=10, ignore_index=4)),
    (Precision(10), TM.MulticlassPrecision(num_classes=10)),
    (Recall(10, average="weighted"), TM.MulticlassRecall(num_classes=10, average="weighted")),
    (F1(10, average="micro"), TM.MulticlassF1Score(num_classes=10, average="micro")),
    (F1(10, average=None), TM.MulticlassF1Score(num_classes=10, average="none")),
    # torchmetrics agrees with ignore_index but for macro averages (its issues #1691, #2441)
    (Precision(10, average="weighted", ignore_index=-100),
     TM.MulticlassPrecision(num_classes=10, average="weighted", ignore_index=-100)),
])
def test_a_torchmetrics_metric_goes_through_the_same_protocol(ours, theirs):
    data = phase_data()
    torch.testing.assert_close(per_phase_values(ours, data), per_phase_values(theirs, data), rtol=0, atol=1e-6)


def test_a_torchmetrics_binary_score_goes_through_the_same_protocol():
    data = {phase: [[(o[:, :2], (o[:, 1] > o[:, 0]).long() ^ (t % 5 == 0).long()) for o, t in epoch]
                    for epoch in batches] for phase, batches in phase_data().items()}
    theirs = {phase: [[(o.softmax(-1)[:, 1], t) for o, t in epoch] for epoch in batches]
              for phase, batches in data.items()}
    torch.testing.assert_close(per_phase_values(F1(2, average="binary"), data),
                               per_phase_values(TM.BinaryF1Score(), theirs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("ours, theirs", [
    (Perplexity(), torchmetrics.text.Perplexity()),
    (Perplexity(ignore_index=3), torchmetrics.text.Perplexity(ignore_index=3)),
])
def test_a_torchmetrics_text_metric_goes_through_the_same_protocol(ours, theirs):
    data = phase_data(seq=5)
    torch.testing.assert_close(per_phase_values(ours, data), per_phase_values(theirs, data), rtol=1e-5, atol=0)


def test_a_torchmetrics_mean_goes_through_the_same_protocol():
    g = torch.Generator().manual_seed(5)
    data = {phase: [[(torch.randn((), generator=g), torch.randint(1, 5, (), generator=g)) for _ in range(9)]
                    for _ in range(2)] for phase in ("train", "valid")}
    torch.testing.assert_close(per_phase_values(Mean(), data), per_phase_values(torchmetrics.MeanMetric(), data),
                               rtol=1e-6, atol=0)


def test_the_trainer_treats_a_torchmetrics_metric_as_a_cadence_one():
    from cadence.track import RunContext, Tracker
    from cadence.train import Trainer

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 10))
    train, valid = classifier_batches([8, 8, 8, 8, 5]), classifier_batches([7, 7, 7, 3])
    x_train = [(torch.randn(len(t), 16), t) for _, t in train]
    x_valid = [(torch.randn(len(t), 16), t) for _, t in valid]
    tracker = Tracker()
    Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), x_train, x_valid, loss_fn=nn.functional.cross_entropy,
            metrics={"ours": Accuracy(top_k=2),
                     "theirs": torchmetrics.classification.MulticlassAccuracy(num_classes=10, top_k=2,
                                                                              average="micro")},
            epochs=2, inner_iterations=2, run=RunContext(tracker), console=False).run()
    for phase in ("train", "valid"):
        assert tracker.latest(f"{phase}.ours") == pytest.approx(tracker.latest(f"{phase}.theirs"), abs=1e-6)
    # The last validation value is over the whole validation set with the final model.
    with torch.no_grad():
        outputs = torch.cat([model(x) for x, _ in x_valid])
    targets = torch.cat([t for _, t in x_valid])
    direct = (outputs.topk(2, dim=-1).indices == targets[:, None]).any(-1).double().mean().item()
    assert tracker.latest("valid.ours") == pytest.approx(direct)
