"""Tests of :mod:`cadence.nn.norm.rms_norm` against ``torch.nn.RMSNorm`` and the paper's equation in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import RMSNorm

from .conftest import PATHS, TOL, lockstep, pair

SHAPES = {
    "features": ((16, 10), 10),
    "sequence": ((5, 3, 8), [8]),
    "images": ((4, 3, 5, 6), (3, 5, 6)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kwargs", [{}, {"eps": 1e-3}, {"elementwise_affine": False}],
                         ids=["default-eps", "eps", "plain"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, kwargs, path):
    size, normalized_shape = SHAPES[shape]
    ours, theirs = pair(RMSNorm(normalized_shape, reference=PATHS[path], **kwargs),
                        nn.RMSNorm(normalized_shape, **kwargs))
    # Small inputs, where eps (by default float32's machine epsilon) matters.
    lockstep(ours, theirs, lambda i: torch.randn(size) * 10 ** -(i % 3), buffers=())
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize("path", PATHS)
def test_is_the_papers_equation(path):
    a = torch.randn(6, 9, dtype=torch.float64)
    rms = RMSNorm(9, eps=1e-6, reference=PATHS[path]).double()
    g = torch.rand(9, dtype=torch.float64) + 0.5
    with torch.no_grad():
        rms.weight.copy_(g)
    # $\bar{a}_i = \frac{a_i}{\sqrt{\frac{1}{n} \sum_j a_j^2 + \epsilon}} g_i$
    expected = a / torch.sqrt((a ** 2).sum(-1, keepdim=True) / 9 + 1e-6) * g
    torch.testing.assert_close(rms(a), expected, **TOL)


def test_reference_and_native_paths_agree():
    native, reference = pair(RMSNorm([5, 6]), RMSNorm([5, 6], reference=True))
    lockstep(native, reference, lambda i: torch.randn(4, 3, 5, 6), buffers=())


def test_bad_inputs_and_arguments():
    with pytest.raises(ValueError, match=r"RMSNorm\(\[8\]\): input of shape \[4, 7\] does not end in \[8\]"):
        RMSNorm(8)(torch.randn(4, 7))
    with pytest.raises(ValueError, match=r"RMSNorm: normalized_shape=-1 is out of range; expected normalized_shape >= 1"):
        RMSNorm(-1)
    with pytest.raises(ValueError, match=r"RMSNorm: eps=inf is not a finite number; expected eps > 0"):
        RMSNorm(8, eps=float("inf"))


def test_reset_and_repr():
    rms = RMSNorm([2, 3])
    with torch.no_grad():
        rms.weight.fill_(3)
    rms.reset_parameters()
    assert (rms.weight == 1).all()
    assert repr(rms) == "RMSNorm([2, 3], eps=None, elementwise_affine=True, reference=False)"
    assert RMSNorm(3, elementwise_affine=False).state_dict() == {}
