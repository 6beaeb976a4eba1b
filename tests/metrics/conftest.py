"""Shared fixtures of the metric tests: real-looking batches and a guard against host synchronisation."""

from __future__ import annotations

import pytest
import torch

#: Ways a tensor's value reaches the host (each waits for the device).
HOST_READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every read of a tensor's value into Python raise, for the rest of the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a metric read a tensor's value on the host")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, refuse)


def classifier_batches(sizes: list[int], classes: int = 10, features: int = 16,
                       seq: int | None = None, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits of a noisy linear classifier and its targets, one pair per batch size.

    The targets come from a fixed linear teacher and the logits from a noisy copy of it,
    so the accuracy is well away from both 0 and 1. With ``seq`` the batches are
    sequences: logits ``[B, seq, classes]`` and targets ``[B, seq]``. The teacher is the same
    for every ``seed``; the samples differ.
    """
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(features, classes, generator=g)
    student = teacher + 0.8 * torch.randn(features, classes, generator=g)
    g.manual_seed(seed + 1000)
    batches = []
    for b in sizes:
        shape = (b, features) if seq is None else (b, seq, features)
        x = torch.randn(*shape, generator=g)
        batches.append((x @ student, (x @ teacher).argmax(dim=-1)))
    return batches
