"""Tests of :mod:`cadence.nn.norm.group_norm` against ``torch.nn.GroupNorm`` and float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import GroupNorm

from .conftest import PATHS, TOL, lockstep, pair, standardized64

#: Inputs ``[B, C, *]`` of rank 2 to 5 (features have more channels, so that a group holds more than 1 or 2 values).
SHAPES = {"features": (8, 48), "sequence": (4, 6, 10), "images": (4, 6, 5, 7), "volumes": (2, 6, 2, 4, 3)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("groups", [1, 3, 6])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, groups, affine, path):
    C = SHAPES[shape][1]
    ours, theirs = pair(GroupNorm(groups, C, affine=affine, reference=PATHS[path]),
                        nn.GroupNorm(groups, C, affine=affine))
    lockstep(ours, theirs, lambda i: torch.randn(SHAPES[shape]), buffers=())
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize("path", PATHS)
def test_normalizes_each_group_of_each_sample(path):
    x = torch.randn(3, 6, 4, 4) * torch.arange(1.0, 7.0).view(1, 6, 1, 1)
    y = GroupNorm(2, 6, affine=False, reference=PATHS[path])(x)
    expected = standardized64(x.view(3, 2, 48), (2,)).view(3, 6, 4, 4)
    torch.testing.assert_close(y.double(), expected, **TOL)


def test_reference_and_native_paths_agree():
    native, reference = pair(GroupNorm(2, 6), GroupNorm(2, 6, reference=True))
    lockstep(native, reference, lambda i: torch.randn(4, 6, 5, 7), buffers=())


def test_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"GroupNorm: groups=4 does not divide channels=6; expected a divisor of 6 "
                                         r"\(1, 2, 3, 6\)"):
        GroupNorm(4, 6)


@pytest.mark.parametrize("kwargs, match", [
    ({"groups": 0, "channels": 6}, r"groups=0 is out of range; expected groups >= 1"),
    ({"groups": 2, "channels": True}, r"channels=True is a bool; expected an integer"),
    ({"groups": 2, "channels": 6, "eps": "1e-5"}, r"eps='1e-5' is a str; expected a real number"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=r"GroupNorm: " + match):
        GroupNorm(**kwargs)


@pytest.mark.parametrize("shape, match", [
    ((6,), r"GroupNorm\(2, 6\): input of shape \[6\] has rank 1; expected \[batch, 6, \*\] of rank >= 2"),
    ((4, 4, 3), r"GroupNorm\(2, 6\): input of shape \[4, 4, 3\] has 4 channels in dimension 1; expected 6"),
])
def test_bad_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        GroupNorm(2, 6)(torch.randn(shape))


def test_reset_and_repr():
    gn = GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.fill_(3)
    gn.reset_parameters()
    assert (gn.weight == 1).all()
    assert repr(gn) == "GroupNorm(2, 4, eps=1e-05, affine=True, reference=False)"
