"""Gradient clipping equals torch's, works in place on views, and returns the norm before clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cadence.optim.helpers.clip import clip_grad_norm, clip_grad_value


def model_with_grads(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    (model(torch.randn(32, 8)) * 10).pow(2).sum().backward()
    return model


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_norm_clipping_equals_torch(norm_type):
    ours, theirs = model_with_grads(), model_with_grads()
    norm = clip_grad_norm(ours.parameters(), 1.0, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0, norm_type)
    assert norm.dim() == 0 and torch.equal(norm, expected) and norm.item() > 1.0
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(p.grad, q.grad)
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad, norm_type)
                                                  for p in ours.parameters()]), norm_type)
    assert after.item() == pytest.approx(1.0, rel=1e-4)


def test_value_clipping_clamps_and_returns_the_norm_before():
    model = model_with_grads()
    before = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    expected = [p.grad.clamp(-0.5, 0.5) for p in model.parameters()]
    norm = clip_grad_value(model.parameters(), 0.5)
    torch.testing.assert_close(norm, before)
    for p, e in zip(model.parameters(), expected):
        assert torch.equal(p.grad, e)


def test_gradients_that_are_views_are_clipped_in_place():
    buffer = torch.arange(1.0, 11.0)
    a, b = nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(6))
    a.grad, b.grad = buffer[:4], buffer[4:]
    clip_grad_value([a, b], 3.0)
    assert buffer.max().item() == 3.0 and a.grad.data_ptr() == buffer.data_ptr()
    clip_grad_norm([a, b], 1.0)
    assert torch.linalg.vector_norm(buffer).item() == pytest.approx(1.0, rel=1e-4)


def test_nonfinite_norm_is_reported_or_refused():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([float("inf"), 1.0])
    assert torch.isinf(clip_grad_norm([p], 1.0))
    p.grad = torch.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm([p], 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("call, error, message", [
    (lambda ps: clip_grad_norm(ps, 0.0), ValueError,
     r"^clip_grad_norm: max_norm=0.0 is out of range; expected max_norm > 0$"),
    (lambda ps: clip_grad_norm(ps, float("nan")), ValueError, r"^clip_grad_norm: max_norm=nan is not a finite number"),
    (lambda ps: clip_grad_norm(ps, math.inf), ValueError, r"^clip_grad_norm: max_norm=inf is not a finite number"),
    (lambda ps: clip_grad_norm(ps, "1.0"), TypeError, r"^clip_grad_norm: max_norm='1.0' is a str; expected a real"),
    (lambda ps: clip_grad_norm(ps, True), TypeError, r"^clip_grad_norm: max_norm=True is a bool"),
    (lambda ps: clip_grad_norm(ps, 1.0, norm_type=-2.0), ValueError, r"^clip_grad_norm: norm_type=-2.0 is out of range"),
    (lambda ps: clip_grad_value(ps, -1.0), ValueError, r"^clip_grad_value: clip_value=-1.0 is out of range"),
])
def test_bad_thresholds_fail_naming_the_value(call, error, message):
    with pytest.raises(error, match=message):
        call(model_with_grads().parameters())


def test_a_valid_threshold_costs_no_check_call(monkeypatch):
    """Clipping runs every step: a positive finite threshold passes two comparisons, and nothing formats a message."""
    from cadence.optim.helpers import clip

    def refuse(*args, **kwargs):
        raise AssertionError(f"check_number called on the good path: {args}")

    monkeypatch.setattr(clip, "check_number", refuse)
    params = list(model_with_grads().parameters())
    clip_grad_norm(params, 1.0)
    clip_grad_norm(params, 2, norm_type=1.0)
    clip_grad_norm(params, 0.5, norm_type=math.inf)
    clip_grad_value(params, 0.1)
