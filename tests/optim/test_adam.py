"""cadence's Adam against torch.optim.Adam / AdamW and against the paper in float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from cadence.optim import Adam, WeightDecay

from .conftest import relative_difference, small_cnn


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_textbook_update_matches_torch_adam(train, weight_decay):
    """optimized_update=False adds eps to sqrt(v_hat), as torch does; coupled decay is torch's L2."""
    ours = train(lambda p: Adam(p, lr=1e-3, weight_decay=WeightDecay(weight_decay, weight_decouple=False),
                                optimized_update=False))
    torchs = train(lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=weight_decay))
    assert relative_difference(ours, torchs) < 1e-5


def test_a_float_weight_decay_is_torchs_and_drops_in_for_torch_adam(train):
    """Adam(params, lr, weight_decay=0.1) reads the float as torch.optim.Adam does: coupled L2."""
    ours = train(lambda p: Adam(p, 1e-3, weight_decay=0.1, optimized_update=False))
    assert not train.optimizer.weight_decay.weight_decouple
    torchs = train(lambda p: torch.optim.Adam(p, 1e-3, weight_decay=0.1))
    assert relative_difference(ours, torchs) < 1e-6


def test_decoupled_decay_matches_torch_adamw(train):
    ours = train(lambda p: Adam(p, lr=1e-3, weight_decay=WeightDecay(0.1, weight_decouple=True),
                                optimized_update=False))
    torchs = train(lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1))
    assert relative_difference(ours, torchs) < 1e-5


def test_folded_and_textbook_updates_are_the_same_without_eps():
    """The two conventions differ only in where eps sits: with eps=0 they agree to rounding."""
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(1000, dtype=torch.float64, generator=gen) for _ in range(50)]
    params = {}
    for folded in (False, True):
        param = nn.Parameter(torch.ones(1000, dtype=torch.float64))
        opt = Adam([param], lr=1e-2, eps=0.0, optimized_update=folded)
        for g in grads:
            param.grad = g.clone()
            opt.step()
        params[folded] = param.detach()
    torch.testing.assert_close(params[True], params[False], rtol=1e-13, atol=0)


def _paper_adam_float64(grads, theta0, lr, beta1, beta2, eps, folded):
    """Algorithm 1 of Kingma & Ba (or its Section-2 folded form), scalar by scalar in float64."""
    theta, m, v = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        if folded:
            alpha_t = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            theta = theta - alpha_t * m / (v.sqrt() + eps)
        else:
            m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
            theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
    return theta


@pytest.mark.parametrize("folded", [False, True])
def test_both_eps_conventions_equal_the_paper_in_float64(folded):
    """With a large eps the two conventions differ visibly; each equals its own formula exactly."""
    gen = torch.Generator().manual_seed(1)
    theta0 = torch.randn(50, dtype=torch.float64, generator=gen)
    grads = [torch.randn(50, dtype=torch.float64, generator=gen) * 1e-3 for _ in range(30)]
    param = nn.Parameter(theta0.clone())
    opt = Adam([param], lr=0.01, betas=(0.9, 0.99), eps=1e-3, optimized_update=folded)
    for g in grads:
        param.grad = g.clone()
        opt.step()
    expected = _paper_adam_float64(grads, theta0, 0.01, 0.9, 0.99, 1e-3, folded)
    other = _paper_adam_float64(grads, theta0, 0.01, 0.9, 0.99, 1e-3, not folded)
    torch.testing.assert_close(param.detach(), expected, rtol=0, atol=1e-12)
    assert (expected - other).abs().max() > 1e-4, "the conventions should differ with eps=1e-3"


def test_state_dict_round_trip_continues_bit_identically(train):
    def make(p):
        return Adam(p, lr=1e-3, weight_decay=WeightDecay(1e-2))

    uninterrupted = train(make, steps=20)

    torch.manual_seed(0)
    model = small_cnn()
    optimizer = make(model.parameters())
    train(lambda p: optimizer, steps=10, model=model)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())

    resumed = small_cnn()
    resumed.load_state_dict(saved_model)
    fresh = make(resumed.parameters())
    fresh.load_state_dict(saved_opt)
    assert fresh.state_dict()["state"][0]["step"] == 10
    train(lambda p: fresh, steps=10, model=resumed, start=10)
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_parameter_groups_keep_their_own_hyper_parameters(mnist_batches):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    twin = copy.deepcopy(net)
    frozen = net[3].weight.detach().clone()
    groups = lambda m: [{"params": m[1].parameters(), "lr": 3e-3},  # noqa: E731
                        {"params": [m[3].weight], "lr": 0.0},
                        {"params": [m[3].bias], "weight_decay": 0.5}]
    ours = Adam(groups(net), lr=1e-3, weight_decay=WeightDecay(0.0, weight_decouple=True), optimized_update=False)
    theirs = torch.optim.AdamW(groups(twin), lr=1e-3, weight_decay=0.0)
    for x, y in mnist_batches[:20]:
        for model, opt in ((net, ours), (twin, theirs)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert torch.equal(net[3].weight, frozen)
    assert relative_difference(net, twin) < 1e-6
    assert [g["lr"] for g in ours.param_groups] == [3e-3, 0.0, 1e-3]
    assert [g["weight_decay"] for g in ours.param_groups] == [0.0, 0.0, 0.5]


def test_absolute_decoupled_decay_shrinks_by_lambda():
    param = nn.Parameter(torch.ones(4))
    opt = Adam([param], lr=0.0, weight_decay=WeightDecay(0.25, weight_decouple=True, absolute=True))
    param.grad = torch.ones(4)
    opt.step()
    torch.testing.assert_close(param.detach(), torch.full((4,), 0.75), rtol=0, atol=0)


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    param = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Adam([param], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (param ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx(5.0)
    assert param.detach().tolist() == pytest.approx([0.9, -1.9], abs=1e-6)


def test_parameters_without_gradient_are_left_alone():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = Adam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and b not in opt.state
    assert opt.state[a]["step"] == 1


def test_gradient_is_not_modified_by_coupled_decay():
    param = nn.Parameter(torch.ones(3))
    opt = Adam([param], lr=0.1, weight_decay=WeightDecay(0.5, weight_decouple=False))
    param.grad = torch.full((3,), 2.0)
    opt.step()
    assert torch.equal(param.grad, torch.full((3,), 2.0))


def test_sparse_gradient_fails_clearly():
    emb = nn.Embedding(10, 3, sparse=True)
    opt = Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=r"does not support sparse gradients.*SparseAdam"):
        opt.step()


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": -0.1}, r"Adam: lr=-0.1 is out of range; expected lr >= 0"),
    ({"betas": (1.0, 0.999)}, r"Adam: betas\[0\]=1.0 is out of range; expected betas\[0\] in \[0, 1\)"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\]=-0.1 is out of range"),
    ({"eps": -1e-8}, r"Adam: eps=-1e-08 is out of range; expected eps >= 0"),
    ({"lr": float("nan")}, r"lr=nan is not a finite number; expected lr >= 0"),
    ({"lr": float("inf")}, r"Adam: lr=inf is not a finite number; expected lr >= 0"),
])
def test_bad_hyper_parameters_name_the_parameter_and_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam([nn.Parameter(torch.ones(2))], **kwargs)


def test_bad_types_and_group_overrides_fail_clearly():
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(TypeError, match=r"Adam: lr='3e-4x' is a str; expected a real number"):
        Adam([p], lr="3e-4x")
    with pytest.raises(TypeError, match=r"Adam: betas=0.9 is not a pair; expected \(beta1, beta2\), each in \[0, 1\)"):
        Adam([p], betas=0.9)
    with pytest.raises(TypeError, match=r"Adam: betas=\(0.9, 0.99, 0.999\) is not a pair"):
        Adam([p], betas=(0.9, 0.99, 0.999))
    with pytest.raises(ValueError, match=r"WeightDecay: weight_decay=-0.01 is out of range"):
        WeightDecay(-0.01)
    with pytest.raises(TypeError, match=r"Adam: weight_decay='0.01' is a str; expected a real number"):
        Adam([p], weight_decay="0.01")
    with pytest.raises(ValueError, match=r"Adam: weight_decay=-0.1 is out of range; expected weight_decay >= 0"):
        Adam([p], weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"Adam: weight_decay=-1.0 is out of range"):
        Adam([{"params": [p], "weight_decay": -1.0}])
    with pytest.raises(ValueError, match=r"absolute=True needs weight_decouple=True"):
        WeightDecay(0.1, weight_decouple=False, absolute=True)
