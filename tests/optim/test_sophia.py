"""Sophia-G against its equations in float64, its clipping, the GNB Hessian update, fused path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.optim import Sophia, WeightDecay, gnb_loss

from .conftest import assert_compiled, set_grads, small_cnn


def paper_sophia(params, grads, hessian_grads, lr, beta1, beta2, eps, rho, wd, k, batch):
    theta = [p.detach().double().clone() for p in params]
    m = [torch.zeros_like(t) for t in theta]
    h = [torch.zeros_like(t) for t in theta]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            theta[i] = theta[i] * (1 - lr * wd)
            m[i] = beta1 * m[i] + (1 - beta1) * g.double()
            ratio = (m[i].abs() / (rho * h[i] + eps)).clamp(max=1.0)
            theta[i] = theta[i] - lr * torch.sign(m[i]) * ratio
        if t % k == 0:
            for i, g_hat in enumerate(hessian_grads[t]):
                h[i] = beta2 * h[i] + (1 - beta2) * batch * g_hat.double() ** 2
    return theta


@pytest.mark.parametrize("fused", [False, True])
def test_matches_its_equations_in_float64_over_real_gradients(real_gradients, fused):
    k, batch = 10, 32
    hessian_grads = {t: [g * 0.5 for g in real_gradients[t - 1]] for t in range(k, len(real_gradients) + 1, k)}
    torch.manual_seed(0)
    model = small_cnn()
    expected = paper_sophia(list(model.parameters()), real_gradients, hessian_grads, 1e-3, 0.965, 0.99, 1e-12,
                            0.04, 0.1, k, batch)
    opt = Sophia(model.parameters(), lr=1e-3, eps=1e-12, weight_decay=WeightDecay(0.1), fused=fused)
    for t, grads in enumerate(real_gradients, start=1):
        opt.zero_grad()
        set_grads(model.parameters(), grads)
        opt.step()
        if t % k == 0:
            for p, g in zip(model.parameters(), hessian_grads[t]):
                p.grad.copy_(g)
            opt.update_hessian(batch)
    if fused:
        assert_compiled(opt)
    diff = max((p.detach().double() - e).abs().max().item() for p, e in zip(model.parameters(), expected))
    assert diff / max(e.abs().max().item() for e in expected) < 1e-5


def test_no_coordinate_moves_by_more_than_the_learning_rate():
    p = nn.Parameter(torch.zeros(1000))
    opt = Sophia([p], lr=0.01)
    for _ in range(5):
        p.grad = torch.randn(1000) * 100
        before = p.detach().clone()
        opt.step()
        assert (p.detach() - before).abs().max().item() <= 0.01 + 1e-9


def test_gnb_loss_samples_its_labels_from_the_models_distribution():
    """Labels drawn from softmax(logits), each class as often as the model gives it probability; labels
    chosen by argmax (all class 0 here) or uniformly would fail. The gradient of the mean cross-entropy
    is (softmax - one_hot(label)) / N per row, so the labels' frequencies are softmax minus its column sums."""
    torch.manual_seed(0)
    n, probabilities = 20_000, torch.tensor([0.6, 0.3, 0.1])
    logits = probabilities.log().repeat(n, 1).requires_grad_()
    gnb_loss(logits).backward()
    frequencies = probabilities - logits.grad.sum(0)
    assert frequencies.tolist() == pytest.approx([0.6, 0.3, 0.1], abs=0.015)  # 4 standard deviations of 0.6's


def test_gnb_loss_flattens_a_sequence_of_logits():
    torch.manual_seed(0)
    logits = torch.full((4, 16, 3), -30.0).index_fill_(-1, torch.tensor([2]), 30.0).requires_grad_()
    loss = gnb_loss(logits)
    assert loss.item() < 1e-6  # the model is sure of class 2, so every sampled label is 2
    loss.backward()
    assert logits.grad.shape == logits.shape


def test_update_hessian_validates_the_batch_size():
    opt = Sophia([nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match=r"Sophia.update_hessian: batch_size=0 is out of range; expected batch_size >= 1"):
        opt.update_hessian(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"rho": 0.0}, r"Sophia: rho=0.0 is out of range; expected rho > 0"),
    ({"lr": -1.0}, r"Sophia: lr=-1.0 is out of range"),
    ({"betas": (0.9, 1.0)}, r"Sophia: betas\[1\]=1.0 is out of range"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sophia([nn.Parameter(torch.ones(1))], **kwargs)


def test_trains(train, mnist_batches):
    def loss(model):
        with torch.no_grad():
            return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in mnist_batches[-20:])

    torch.manual_seed(0)
    before = loss(small_cnn())
    assert loss(train(lambda p: Sophia(p, lr=1e-3), steps=100)) < 0.5 * before


def test_the_trainer_refreshes_the_hessian_every_k_steps_through_the_optimizers_callback():
    from cadence.optim import HessianRefresh, optimizer_callbacks
    from cadence.train import Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    optimizer = Sophia(model.parameters(), lr=1e-3, hessian_interval=2)
    calls = []
    original = optimizer.update_hessian

    def spy(batch_size):
        calls.append((trainer.global_step, batch_size, all(p.grad is not None for p in model.parameters())))
        original(batch_size)

    optimizer.update_hessian = spy
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(12)]
    [refresh] = optimizer_callbacks(optimizer)
    assert isinstance(refresh, HessianRefresh) and refresh.interval == 2
    trainer = Trainer(model, optimizer, data, loss_fn=torch.nn.functional.cross_entropy, update_batches=2,
                      callbacks=[refresh], console=False)
    trainer.run()
    # Steps 2, 4, 6, on the 8 predictions of the batch just trained on, with the gradients of gnb_loss alone.
    assert calls == [(2, 8, True), (4, 8, True), (6, 8, True)]
    assert all(optimizer.state[p]["hessian"].abs().sum() > 0 for p in model.parameters())
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert optimizer_callbacks(torch.optim.SGD(model.parameters(), lr=0.1)) == []
