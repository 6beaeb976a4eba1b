"""Tests of :mod:`cadence.metrics.mean` against the mean over all samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cadence.metrics import Mean, MeanLoss

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


def test_equals_numpys_weighted_average():
    g = torch.Generator().manual_seed(3)
    values, counts = torch.randn(50, generator=g), torch.randint(1, 9, (50,), generator=g)
    mean = Mean()
    for value, count in zip(values, counts):
        mean.update(value, count)
    assert mean.compute().item() == pytest.approx(np.average(values.numpy(), weights=counts.numpy()), rel=1e-12)


def test_numbers_and_tensor_counts():
    mean = Mean()
    mean.update(2.0, torch.tensor(3))
    mean.update(torch.tensor(4.0), torch.tensor(1, dtype=torch.int32))
    mean.update(1, 0)
    assert mean.compute().item() == pytest.approx((2.0 * 3 + 4.0) / 4)


def test_default_count_is_one_sample():
    mean = Mean()
    for value in (1.0, 2.0, 6.0):
        mean(torch.tensor(value))
    assert mean.compute().item() == pytest.approx(3.0)


def test_half_precision_values_are_summed_exactly_in_float64():
    mean = Mean()
    one = torch.tensor(1.0001, dtype=torch.float16)
    for _ in range(5000):
        mean.update(one, 1)
    assert mean.weighted_sum.dtype == torch.float64 and mean.count.dtype == torch.int64
    # A float16 (or bfloat16) running sum would have stopped growing long before 5000.
    assert mean.compute().item() == float(one)
    assert mean.compute().dtype == torch.float64


def test_meanloss_is_the_mean_under_its_old_name():
    assert issubclass(MeanLoss, Mean)
    loss = MeanLoss()
    loss(torch.tensor(3.0), 2)
    assert loss.compute().item() == 3.0


def test_update_never_reads_values_on_the_host(no_host_sync):
    loss = MeanLoss()
    for output, target in classifier_batches(SIZES):
        loss(F.cross_entropy(output, target), len(target))
        loss.update(F.cross_entropy(output, target), torch.tensor(len(target)))
        loss.compute()


def test_sums_move_to_the_values_device():
    mean = Mean()
    mean.update(torch.tensor(1.0, device="meta"), 5)
    assert mean.weighted_sum.device.type == mean.count.device.type == "meta"


def test_values_are_detached():
    w = torch.ones((), requires_grad=True)
    mean = Mean()
    mean.update(w * 2, 3)
    assert not mean.weighted_sum.requires_grad and not mean.compute().requires_grad


def test_nothing_counted_is_nan():
    mean = Mean()
    assert torch.isnan(mean.compute())
    mean.update(torch.tensor(5.0), 0)
    assert torch.isnan(mean.compute())
