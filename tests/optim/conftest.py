"""A real model on real data for the optimizer tests (a small CNN on MNIST digits), and compile state kept apart."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from cadence.data import MNIST
from cadence.optim import fused


@pytest.fixture(autouse=True)
def fresh_compile_state(monkeypatch):
    """Every test starts with nothing compiled and no record of a failed or over-limit compilation.

    A test that breaks compilation or reaches torch.compile's recompile limit then cannot leave
    later tests' fused steps running eagerly, and no test's variants count towards another's limit.
    (Recompiling what an earlier test compiled takes a fraction of a second: Inductor keeps its code.)
    """
    torch._dynamo.reset()
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(fused, "_compile_failed", set())
    monkeypatch.setattr(fused, "_over_limit", {})


def assert_compiled(optimizer: torch.optim.Optimizer) -> None:
    """Every fused step of ``optimizer`` ran the compiled loop; none fell back to eager code."""
    runs = optimizer.fused_step
    assert runs.compiled_runs > 0 and runs.eager_runs == 0, \
        f"fused steps: {runs.compiled_runs} compiled, {runs.eager_runs} eager"


def small_cnn() -> nn.Module:
    """A conv-BN-ReLU-pool CNN with norms, biases and a linear head: 10 parameter tensors.

    The convolutions have no bias: before a batch norm a bias has no effect, so its gradient
    is pure rounding noise, which Adam would normalize into full-size steps that differ
    between any two implementations not rounding alike.
    """
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10),
    )


@pytest.fixture(scope="session")
def mnist_batches(data_dir) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """200 real MNIST batches of 32 digits, normalized."""
    mnist = MNIST(data_dir, train=True, download=False)
    x = MNIST.normalize(mnist.images[:6400])
    return list(zip(x.split(32), mnist.labels[:6400].split(32)))


@pytest.fixture
def train(mnist_batches) -> Callable[..., nn.Module]:
    """``train(make_optimizer, steps, model=None, start=0)`` trains a CNN (a fresh seeded one unless
    ``model`` is given) on batches ``start .. start+steps`` and returns it; ``train.optimizer`` is the
    optimizer of the last run."""

    def run(make_optimizer, steps: int = 200, model: nn.Module | None = None, start: int = 0) -> nn.Module:
        if model is None:
            torch.manual_seed(0)
            model = small_cnn()
        optimizer = run.optimizer = make_optimizer(model.parameters())
        for x, y in mnist_batches[start:start + steps]:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        return model

    return run


@pytest.fixture(scope="session")
def real_gradients(mnist_batches) -> list[list[torch.Tensor]]:
    """The gradients of 200 steps of training the CNN with torch's Adam on real digits."""
    torch.manual_seed(0)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    recorded = []
    for x, y in mnist_batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        recorded.append([p.grad.clone() for p in model.parameters()])
        optimizer.step()
    return recorded


@pytest.fixture
def replay(real_gradients) -> Callable[..., nn.Module]:
    """``replay(make_optimizer)`` steps a fresh seeded CNN's parameters through the recorded
    gradients (the same gradients whatever the optimizer does) and returns the model;
    ``replay.optimizer`` is the optimizer of the last run.

    Open loop, this compares optimizers without the model amplifying their rounding
    differences through the data.
    """

    def run(make_optimizer) -> nn.Module:
        torch.manual_seed(0)
        model = small_cnn()
        optimizer = run.optimizer = make_optimizer(model.parameters())
        for grads in real_gradients:
            optimizer.zero_grad()
            set_grads(model.parameters(), grads)
            optimizer.step()
        return model

    return run


def set_grads(params, grads) -> None:
    """Give each parameter its gradient: a copy where it has none, else copied into the one it has (which the
    fused path keeps as a view into its flat buffer)."""
    for p, g in zip(params, grads):
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.copy_(g)


def relative_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute parameter difference over the largest absolute parameter."""
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    scale = max(p.abs().max().item() for p in a.parameters())
    return diff / scale
