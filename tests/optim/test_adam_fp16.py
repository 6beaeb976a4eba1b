"""AdamFP16: FP32 master weights and moments for FP16/BF16 models, loss scaling, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cadence.optim import Adam, AdamFP16, GradScalerFP16


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def train_half(model, optimizer, scaler, batches, dtype):
    for x, y in batches:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x.to(dtype)).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_master_weights_are_fp32_adam_on_the_unscaled_gradients(mnist_batches, dtype):
    """The optimizer's share of a half-precision run is exact: fed the FP32 gradients the scaler unscaled,
    FP32 Adam started from the half weights ends where AdamFP16's master copies do, bit for bit."""
    half = mlp().to(dtype)
    masters = [nn.Parameter(p.detach().float()) for p in half.parameters()]
    optimizer, scaler, adam = AdamFP16(half.parameters(), lr=1e-3), GradScalerFP16(init_scale=1024.0), Adam(masters)
    for x, y in mnist_batches[:60]:
        optimizer.zero_grad()
        scaler.scale(nn.functional.cross_entropy(half(x.to(dtype)).float(), y)).backward()
        scaler.unscale_(optimizer)
        grads = [optimizer.grad_fp32[p].clone() for p in half.parameters()]
        if scaler.step(optimizer):
            for master, grad in zip(masters, grads):
                master.grad = grad
            adam.step()
        scaler.update()
    for p, master in zip(half.parameters(), masters):
        assert optimizer.state[p]["exp_avg"].dtype == torch.float32
        assert torch.equal(optimizer.state[p]["fp32_copy"], master.detach())
        assert torch.equal(p, master.detach().to(dtype))


@pytest.mark.parametrize("dtype, measured", [(torch.float16, 0.057), (torch.bfloat16, 0.108)])
def test_a_half_model_tracks_the_fp32_model_through_its_master_weights(mnist_batches, dtype, measured):
    """Closed loop, the half model computes its forward and backward passes in half precision, so its
    gradients, and with them its path, differ from an FP32 run's; the optimizer adds nothing to that (see
    the test above). Over 60 steps a correct AdamFP16 ends 5.7% (FP16) and 10.8% (BF16: 8 mantissa bits to
    FP16's 11) of the FP32 run's total movement away from it; allowed: 1.3x that. Plain FP16 Adam, without
    master weights, ends 39% away."""
    batches = mnist_batches[:60]
    reference = mlp()
    adam = Adam(reference.parameters(), lr=1e-3)
    for x, y in batches:
        adam.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        adam.step()
    start = [p.detach().clone() for p in mlp().parameters()]
    half = mlp().to(dtype)
    optimizer = AdamFP16(half.parameters(), lr=1e-3)
    train_half(half, optimizer, GradScalerFP16(init_scale=1024.0), batches, dtype)
    masters = [optimizer.state[p]["fp32_copy"] for p in half.parameters()]
    assert all(m.dtype == torch.float32 for m in masters)
    assert all(torch.equal(p, m.to(dtype)) for p, m in zip(half.parameters(), masters))
    moved_half = torch.cat([(m - s).flatten() for m, s in zip(masters, start)])
    moved_fp32 = torch.cat([(r.detach() - s).flatten() for r, s in zip(reference.parameters(), start)])
    disagreement = (moved_half - moved_fp32).norm() / moved_fp32.norm()
    assert disagreement < 1.3 * measured, disagreement


def test_updates_smaller_than_half_precision_resolution_are_not_lost():
    p = nn.Parameter(torch.ones(4, dtype=torch.float16))
    optimizer = AdamFP16([p], lr=1e-4)
    for _ in range(10):
        p.grad = torch.ones(4, dtype=torch.float16)
        optimizer.step()
    # Each step of 1e-4 is below FP16's spacing near 1 (~1e-3): FP16 Adam would stay at 1.0.
    assert optimizer.state[p]["fp32_copy"][0].item() == pytest.approx(1.0 - 10 * 1e-4, abs=1e-6)
    assert p[0].item() == pytest.approx(0.999, abs=1e-3)


def test_a_non_finite_gradient_skips_the_step_and_halves_the_scale():
    model = mlp().half()
    optimizer = AdamFP16(model.parameters())
    scaler = GradScalerFP16(init_scale=2.0 ** 16)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(4, 784).half()).float().sum() * 1e30
    scaler.scale(loss).backward()
    assert scaler.step(optimizer) is False
    scaler.update()
    assert scaler.scale_value == 2.0 ** 15 and not optimizer.grad_fp32
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_the_scale_grows_after_growth_interval_good_steps(mnist_batches):
    model = mlp().half()
    scaler = GradScalerFP16(init_scale=8.0, growth_interval=3)
    train_half(model, AdamFP16(model.parameters()), scaler, mnist_batches[:3], torch.float16)
    assert scaler.scale_value == 16.0 and scaler.state_dict() == {"scale": 16.0, "growth_tracker": 0}


def test_state_dict_keeps_fp32_state_and_resumes_bit_identically(mnist_batches):
    def run(model, optimizer, scaler, batches):
        train_half(model, optimizer, scaler, batches, torch.float16)

    a = mlp().half()
    oa, sa = AdamFP16(a.parameters()), GradScalerFP16(init_scale=512.0)
    run(a, oa, sa, mnist_batches[:10])
    saved = copy.deepcopy((a.state_dict(), oa.state_dict(), sa.state_dict()))
    run(a, oa, sa, mnist_batches[10:20])

    b = mlp().half()
    b.load_state_dict(saved[0])
    ob, sb = AdamFP16(b.parameters()), GradScalerFP16()
    ob.load_state_dict(saved[1])
    sb.load_state_dict(saved[2])
    assert all(ob.state[p]["fp32_copy"].dtype == torch.float32 for p in b.parameters())
    run(b, ob, sb, mnist_batches[10:20])
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(oa.state[p]["fp32_copy"], ob.state[q]["fp32_copy"])


@pytest.mark.parametrize("kwargs, message", [
    ({"init_scale": 0.0}, r"GradScalerFP16: init_scale=0.0 is out of range"),
    ({"backoff_factor": 1.0}, r"GradScalerFP16: backoff_factor=1.0 is out of range"),
    ({"growth_interval": 0}, r"GradScalerFP16: growth_interval=0 is out of range; expected growth_interval >= 1"),
])
def test_bad_scaler_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GradScalerFP16(**kwargs)
