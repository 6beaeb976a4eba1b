"""Tests of :mod:`cadence.nn.norm.layer_norm` against ``torch.nn.LayerNorm``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cadence.nn.norm import LayerNorm

from .conftest import PATHS, lockstep, pair

#: (input shape, normalized_shape): a feature vector, a sequence of embeddings, images over [C, H, W].
SHAPES = {
    "features": ((16, 10), 10),
    "sequence": ((5, 3, 8), [8]),
    "images": ((4, 3, 5, 6), (3, 5, 6)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("affine", [{}, {"elementwise_affine": False}, {"bias": False}],
                         ids=["affine", "plain", "no-bias"])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_in_train_and_eval(shape, affine, path):
    size, normalized_shape = SHAPES[shape]
    ours, theirs = pair(LayerNorm(normalized_shape, reference=PATHS[path], **affine),
                        nn.LayerNorm(normalized_shape, **affine))
    lockstep(ours, theirs, lambda i: torch.randn(size), buffers=())
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_reference_and_native_paths_agree():
    native, reference = pair(LayerNorm([5, 6]), LayerNorm([5, 6], reference=True))
    lockstep(native, reference, lambda i: torch.randn(4, 3, 5, 6), buffers=())


@pytest.mark.parametrize("shape, match", [
    ((4, 7), r"LayerNorm\(\[5, 6\]\): input of shape \[4, 7\] does not end in \[5, 6\]; expected \[\*, 5, 6\]"),
    ((6,), r"input of shape \[6\] does not end in \[5, 6\]"),
    ((2, 6, 5), r"input of shape \[2, 6, 5\] does not end in \[5, 6\]"),
])
def test_bad_inputs(shape, match):
    with pytest.raises(ValueError, match=match):
        LayerNorm([5, 6])(torch.randn(shape))


@pytest.mark.parametrize("kwargs, match", [
    ({"normalized_shape": 0}, r"normalized_shape=0 is out of range; expected normalized_shape >= 1"),
    ({"normalized_shape": []}, r"normalized_shape=\[\]; expected an integer >= 1 or a non-empty sequence of them"),
    ({"normalized_shape": [4, 2.0]}, r"normalized_shape\[1\]=2.0 is a float; expected an integer"),
    ({"normalized_shape": "4"}, r"normalized_shape='4'; expected an integer >= 1 or a non-empty sequence of them"),
    ({"normalized_shape": 4, "eps": -1e-5}, r"eps=-1e-05 is out of range; expected eps > 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=r"LayerNorm: " + match):
        LayerNorm(**kwargs)


def test_reset_and_repr():
    ln = LayerNorm(4, reference=True)
    with torch.no_grad():
        ln.weight.fill_(3)
        ln.bias.fill_(2)
    ln.reset_parameters()
    assert (ln.weight == 1).all() and (ln.bias == 0).all()
    assert repr(ln) == "LayerNorm([4], eps=1e-05, elementwise_affine=True, bias=True, reference=True)"
    assert LayerNorm(4, elementwise_affine=False).state_dict() == {}
