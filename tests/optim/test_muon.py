"""Muon: Newton-Schulz orthogonalisation against an SVD, the update against a float64 reference, AdamW for the rest."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cadence.optim import Adam, Muon, WeightDecay
from cadence.optim.muon import default_ns_dtype, newton_schulz

from .conftest import relative_difference, small_cnn


def orthogonalise_by_svd(M: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """NS_steps(M) computed another way: with X_0 = M / (|M|_F + 1e-7) = U diag(s) V^T, each step
    X <- aX + (bA + cA^2)X, A = XX^T, is U diag(a s + b s^3 + c s^5) V^T, so the iteration acts on the
    singular values alone and keeps the singular vectors."""
    a, b, c = 3.4445, -4.7750, 2.0315  # the reference's quintic, written out rather than imported
    U, s, Vh = torch.linalg.svd(M / (torch.linalg.norm(M) + 1e-7), full_matrices=False)
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return U @ torch.diag(s) @ Vh


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (96, 40)])
def test_newton_schulz_equals_the_quintic_on_the_singular_values(shape):
    M = torch.randn(*shape, dtype=torch.float64)
    O = newton_schulz(M, 5, torch.float64)
    torch.testing.assert_close(O, orthogonalise_by_svd(M), rtol=0, atol=1e-10)
    # near-orthogonal: every singular value driven into roughly [0.7, 1.2], U V^T's within 0.35
    S = torch.linalg.svdvals(O)
    assert S.min() > 0.5 and S.max() < 1.5
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    assert torch.linalg.norm(O - U @ Vh) / torch.linalg.norm(U @ Vh) < 0.35


def paper_muon(params, grads, lr, mu, wd, adamw_lr, betas, eps, steps=5):
    """Muon (Nesterov) for matrices and AdamW for the rest, in float64, orthogonalising by SVD."""
    theta = [p.detach().double().clone() for p in params]
    B = [torch.zeros_like(t) for t in theta]
    m = [torch.zeros_like(t) for t in theta]
    v = [torch.zeros_like(t) for t in theta]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g.double()
            if theta[i].ndim >= 2:
                B[i] = mu * B[i] + (1 - mu) * g
                M = (1 - mu) * g + mu * B[i]
                O = orthogonalise_by_svd(M.reshape(M.size(0), -1), steps).view_as(theta[i])
                rows, cols = theta[i].size(0), theta[i][0].numel()
                theta[i] = theta[i] * (1 - lr * wd) - lr * max(1.0, rows / cols) ** 0.5 * O
            else:
                theta[i] = theta[i] * (1 - adamw_lr * wd)
                m[i] = betas[0] * m[i] + (1 - betas[0]) * g
                v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
                m_hat, v_hat = m[i] / (1 - betas[0] ** t), v[i] / (1 - betas[1] ** t)
                theta[i] = theta[i] - adamw_lr * m_hat / (v_hat.sqrt() + eps)
    return theta


def test_matches_the_reference_in_float64_over_real_gradients(real_gradients):
    torch.manual_seed(0)
    model = small_cnn().double()
    grads = real_gradients[:60]
    expected = paper_muon(list(model.parameters()), grads, 0.02, 0.95, 0.01, 3e-4, (0.9, 0.95), 1e-8)
    opt = Muon(model.parameters(), weight_decay=0.01, ns_dtype=torch.float64)
    for gs in grads:
        for p, g in zip(model.parameters(), gs):
            p.grad = g.double().clone()
        opt.step()
    diff = max((p.detach() - e).abs().max().item() for p, e in zip(model.parameters(), expected))
    assert diff / max(e.abs().max().item() for e in expected) < 1e-12  # float64 rounding (measured: 2e-15)


def test_parameters_outside_muon_take_adamw(real_gradients):
    torch.manual_seed(0)
    a = nn.Linear(4, 3)
    b = copy.deepcopy(a)
    oa = Muon([{"params": a.parameters(), "use_muon": False}], adamw_lr=1e-3, adamw_betas=(0.9, 0.999),
              weight_decay=0.1)
    ob = Adam(b.parameters(), lr=1e-3, weight_decay=WeightDecay(0.1), optimized_update=False)
    for _ in range(10):
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            model(torch.ones(2, 4)).pow(2).sum().backward()
            opt.step()
    assert relative_difference(a, b) < 1e-6


def test_training_lowers_the_loss(train, mnist_batches):
    def loss(model):
        with torch.no_grad():
            return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in mnist_batches[-20:])

    torch.manual_seed(0)
    before = loss(small_cnn())
    after = loss(train(lambda p: Muon(p, lr=0.02), steps=100))
    assert after < 0.5 * before


def test_state_dict_resume_is_bit_identical(real_gradients):
    torch.manual_seed(0)
    a = small_cnn()
    b = copy.deepcopy(a)
    oa, ob = Muon(a.parameters()), Muon(b.parameters())
    for step, gs in enumerate(real_gradients[:12]):
        if step == 6:
            ob = Muon(b.parameters())
            ob.load_state_dict(copy.deepcopy(saved))
        for model, opt in ((a, oa), (b, ob)):
            for p, g in zip(model.parameters(), gs):
                p.grad = g.clone()
            opt.step()
        if step == 5:
            saved = copy.deepcopy(oa.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_cpu_parameters_iterate_in_float32_unless_told(real_gradients):
    """bfloat16 matrix products are several times slower than float32 on CPUs without bf16 units."""
    assert default_ns_dtype(torch.device("cpu")) == torch.float32
    assert default_ns_dtype(torch.device("cuda")) == torch.bfloat16
    torch.manual_seed(0)
    a = small_cnn()
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    optimizers = ((a, Muon(a.parameters())), (b, Muon(b.parameters(), ns_dtype=torch.float32)),
                  (c, Muon(c.parameters(), ns_dtype=torch.bfloat16)))
    for gs in real_gradients[:3]:
        for model, opt in optimizers:
            for p, g in zip(model.parameters(), gs):
                p.grad = g.clone()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("kwargs, message", [
    ({"momentum": 1.0}, r"Muon: momentum=1.0 is out of range; expected momentum in \[0, 1\)"),
    ({"ns_steps": 0}, r"Muon: ns_steps=0 is out of range; expected ns_steps >= 1"),
    ({"lr": -0.1}, r"Muon: lr=-0.1 is out of range"),
    ({"adamw_betas": (0.9, 1.2)}, r"Muon: betas\[1\]=1.2 is out of range"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Muon([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_a_fractional_step_count_is_refused():
    with pytest.raises(TypeError, match=r"Muon: ns_steps=2.5 is a float; expected an integer"):
        Muon([nn.Parameter(torch.ones(2, 2))], ns_steps=2.5)
