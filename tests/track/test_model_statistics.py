"""Model statistics: each layer's parameter norm, gradient norm and update ratio, against a direct computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.track import ModelSnapshot, Tracker, model_statistics


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))  # the root's own parameter
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.body(x * self.scale))


def direct(tensors) -> float:
    """The 2-norm of the tensors concatenated, in float64."""
    return torch.cat([t.detach().double().flatten() for t in tensors]).norm().item()


def test_statistics_equal_a_direct_computation():
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(8, 3)).square().mean().backward()
    layers = {"_root": [model.scale], "body.0": list(model.body[0].parameters()),
              "body.2": list(model.body[2].parameters())}
    grads = {name: direct([p.grad for p in params]) for name, params in layers.items()}
    old = {name: [p.detach().clone() for p in params] for name, params in layers.items()}

    before = ModelSnapshot(model)
    optimizer.step()
    optimizer.zero_grad()  # the gradient norms were taken before: what the step used
    values = model_statistics(before, model)

    assert sorted(values) == sorted(f"model.{name}.{stat}" for name in layers
                                    for stat in ("param_norm", "grad_norm", "update_ratio"))
    for name, params in layers.items():
        assert values[f"model.{name}.param_norm"].item() == pytest.approx(direct(params), rel=1e-6)
        assert values[f"model.{name}.grad_norm"].item() == pytest.approx(grads[name], rel=1e-6)
        change = direct([p - q for p, q in zip(params, old[name])]) / direct(old[name])
        assert values[f"model.{name}.update_ratio"].item() == pytest.approx(change, rel=1e-5)
        assert values[f"model.{name}.update_ratio"].item() > 0


def test_a_parameter_without_a_gradient_counts_as_zero_and_the_values_go_to_a_tracker():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight.grad = torch.ones(2, 2)
    values = model_statistics(ModelSnapshot(model, prefix="net"), model)
    assert values["net.0.grad_norm"].item() == 0 and values["net.1.grad_norm"].item() == pytest.approx(2.0)
    assert values["net.1.update_ratio"].item() == 0  # no step taken
    tracker = Tracker()
    tracker.add(10, values)
    assert tracker.latest("net.1.grad_norm") == pytest.approx(2.0)


def test_a_snapshot_of_another_model_is_refused():
    with pytest.raises(ValueError, match=r"model_statistics: the model's layers \['0'\] are not those of the "
                                         r"snapshot \['0', '1'\]"):
        model_statistics(ModelSnapshot(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))), nn.Sequential(nn.Linear(2, 2)))
