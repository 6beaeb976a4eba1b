"""Decay / no-decay groups as nanoGPT and timm make them, patterns, lr multipliers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cadence.nn.norm import BatchNorm
from cadence.optim import Adam, WeightDecay
from cadence.optim.helpers.param_groups import param_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.cbn = BatchNorm(4)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens, images):
        x = self.cbn(self.bn(self.conv(images))).mean((1, 2, 3))
        return self.head(self.ln(self.emb(tokens)).mean(1)) + x[:, None]


def by_decay(groups):
    return {g["weight_decay"]: sorted(g["names"]) for g in groups}


def test_default_rule_decays_only_matrices_outside_embeddings_and_norms():
    groups = param_groups(Net(), 0.1)
    assert by_decay(groups) == {
        0.1: ["conv.weight", "head.weight"],
        0.0: ["bn.bias", "bn.weight", "cbn.bias", "cbn.weight", "conv.bias", "emb.weight", "head.bias", "ln.bias",
              "ln.weight"],
    }


def test_patterns_add_to_no_decay_and_force_decay():
    groups = param_groups(Net(), 0.1, no_decay=["head.*"], decay=["emb.*"])
    assert by_decay(groups)[0.1] == ["conv.weight", "emb.weight"]


def test_lr_multipliers_make_their_own_groups_and_scale_a_given_lr():
    groups = param_groups(Net(), 0.1, lr_multipliers={"head.*": 0.1}, lr=1e-3)
    head = [g for g in groups if "head.weight" in g["names"]][0]
    assert head["lr_multiplier"] == 0.1 and head["lr"] == pytest.approx(1e-4) and head["weight_decay"] == 0.1
    assert len(groups) == 4 and sum(len(g["params"]) for g in groups) == len(list(Net().parameters()))


def test_groups_train_and_round_trip_through_state_dict():
    torch.manual_seed(0)
    net = Net()
    opt = Adam(param_groups(net, 0.1), lr=1e-2, weight_decay=WeightDecay(0.0))
    tokens, images = torch.randint(0, 10, (4, 5)), torch.randn(4, 1, 6, 6)
    for _ in range(3):
        opt.zero_grad()
        net(tokens, images).pow(2).mean().backward()
        opt.step()
    state = copy.deepcopy(opt.state_dict())
    fresh = Adam(param_groups(net, 0.1), lr=1e-2)
    fresh.load_state_dict(state)
    assert [g["names"] for g in fresh.param_groups] == [g["names"] for g in opt.param_groups]
    assert sorted(g["weight_decay"] for g in torch.optim.AdamW(param_groups(net, 0.1), lr=1e-3).param_groups) == [0.0, 0.1]


@pytest.mark.parametrize("kwargs, message", [
    ({"no_decay": ["head.biass"]}, r"parameter pattern 'head.biass' matches no parameter; names look like: emb.weight"),
    ({"lr_multipliers": {"head.*": 0.1, "*.weight": 0.5}}, r"parameter 'head.weight' matches lr_multipliers patterns "
                                                           r"with different factors: 'head.\*': 0.1, '\*.weight': 0.5"),
    ({"lr_multipliers": {"head.*": 0.0}}, r"lr_multipliers\['head.\*'\]=0.0 is out of range"),
])
def test_mistakes_fail_naming_the_pattern(kwargs, message):
    with pytest.raises(ValueError, match=message):
        param_groups(Net(), 0.1, **kwargs)


def test_negative_weight_decay():
    with pytest.raises(ValueError, match=r"param_groups: weight_decay=-0.1 is out of range"):
        param_groups(Net(), -0.1)
