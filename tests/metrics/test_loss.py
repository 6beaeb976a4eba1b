"""Tests of :mod:`cadence.metrics.loss` against the mean over all samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cadence.metrics import MeanLoss

from .conftest import classifier_batches

SIZES = [64, 64, 64, 64, 17]


def test_equals_mean_over_samples_with_a_short_last_batch():
    batches = classifier_batches(SIZES)
    loss = MeanLoss()
    for output, target in batches:
        loss(F.cross_entropy(output, target), len(target))
    everything = F.cross_entropy(torch.cat([o for o, _ in batches]).double(), torch.cat([t for _, t in batches]))
    assert loss.compute().item() == pytest.approx(everything.item(), rel=1e-6)
    # The plain mean over batches would be off: the short batch weighs as much as a full one.
    per_batch = torch.stack([F.cross_entropy(o, t) for o, t in batches]).mean()
    assert abs(per_batch.item() - everything.item()) > 1e-3


def test_tensor_counts():
    loss = MeanLoss()
    loss.update(torch.tensor(2.0), torch.tensor(3))
    loss.update(torch.tensor(4.0), torch.tensor(1, dtype=torch.int32))
    assert loss.compute().item() == pytest.approx((2.0 * 3 + 4.0) / 4)


def test_default_count_is_one_sample():
    loss = MeanLoss()
    for value in (1.0, 2.0, 6.0):
        loss(torch.tensor(value))
    assert loss.compute().item() == pytest.approx(3.0)


def test_half_precision_losses_are_summed_in_float32():
    loss = MeanLoss()
    for _ in range(4000):
        loss.update(torch.tensor(1.0001, dtype=torch.float16), 1)
    assert loss.state.weighted_sum.dtype == torch.float32
    assert loss.compute().item() == pytest.approx(float(torch.tensor(1.0001, dtype=torch.float16)), rel=1e-6)
    double = MeanLoss()
    double.update(torch.tensor(1.0, dtype=torch.float64))
    assert double.compute().dtype == torch.float64


def test_update_never_reads_values_on_the_host(no_host_sync):
    loss = MeanLoss()
    for output, target in classifier_batches(SIZES):
        loss(F.cross_entropy(output, target), len(target))
        loss.update(F.cross_entropy(output, target), torch.tensor(len(target)))
        loss.compute()


def test_sums_stay_on_the_losses_device():
    loss = MeanLoss()
    loss.update(torch.tensor(1.0, device="meta"), 5)
    assert loss.state.weighted_sum.device.type == loss.state.count.device.type == "meta"


def test_loss_is_detached():
    w = torch.ones((), requires_grad=True)
    loss = MeanLoss()
    loss.update(w * 2, 3)
    assert not loss.state.weighted_sum.requires_grad


def test_nothing_counted_is_nan():
    assert torch.isnan(MeanLoss().compute())

