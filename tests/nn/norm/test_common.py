"""What every normalization layer promises (with :mod:`cadence.nn.norm.common`'s shared pieces).

For each layer and each of its paths: ``torch.autograd.gradcheck`` in float64 (input and
parameter gradients); inputs with mean $10^4$ and unit variance normalized in float32 to
within 1e-2 of the float64 result; float16 and bfloat16 inputs normalized with float32
statistics, into the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cadence.nn import norm

from .conftest import PATHS, far_from_zero, randomize_affine, standardized64

#: Inputs ``[B, 4, 3, 3]``: 4 channels in 2 groups; the layer norms take the last one or two dimensions.
SHAPE = (16, 4, 3, 3)


def groups_standardized64(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Each group of channels of each sample standardized, in float64."""
    return standardized64(x.reshape(x.shape[0], groups, -1), (2,)).reshape(x.shape)


@dataclass
class Case:
    """A layer (of the ``reference`` flag), how to apply it to one input, its float64 result (identity affine)."""

    make: Callable[[bool], nn.Module]
    expected: Callable[[torch.Tensor], torch.Tensor]
    apply: Callable[[nn.Module, torch.Tensor], torch.Tensor] = lambda layer, x: layer(x)
    paths: tuple[str, ...] = tuple(PATHS)
    #: Evaluation mode for gradcheck (a layer whose training forward moves the statistics it normalizes with).
    gradcheck_eval: bool = False


def deep_norm_residual(x: torch.Tensor) -> torch.Tensor:
    """The sub-layer output of the DeepNorm cases: a function of the same input."""
    return 0.5 * x.roll(1, -1)


CASES = {
    "BatchNorm": Case(lambda r: norm.BatchNorm(4, reference=r), lambda x: standardized64(x, (0, 2, 3))),
    "LayerNorm": Case(lambda r: norm.LayerNorm([3, 3], reference=r), lambda x: standardized64(x, (2, 3))),
    "RMSNorm": Case(lambda r: norm.RMSNorm(3, eps=1e-5, reference=r),
                    lambda x: x.double() / torch.sqrt(x.double().square().mean(-1, keepdim=True) + 1e-5)),
    "GroupNorm": Case(lambda r: norm.GroupNorm(2, 4, reference=r), lambda x: groups_standardized64(x, 2)),
    "InstanceNorm": Case(lambda r: norm.InstanceNorm(4, reference=r), lambda x: standardized64(x, (2, 3))),
    # momentum 1: the estimates are the batch's statistics, so the output is standardized.
    "EstimatedBatchNorm": Case(lambda r: norm.EstimatedBatchNorm(4, momentum=1.0, reference=r),
                               lambda x: standardized64(x, (0, 2, 3)), gradcheck_eval=True),
    "ChannelNorm": Case(lambda r: norm.ChannelNorm(4, 2, reference=r), lambda x: groups_standardized64(x, 2)),
    "BatchChannelNorm": Case(lambda r: norm.BatchChannelNorm(4, 2, momentum=1.0, reference=r),
                             lambda x: groups_standardized64(standardized64(x, (0, 2, 3)), 2), gradcheck_eval=True),
    "BatchChannelNorm-batch-stats": Case(lambda r: norm.BatchChannelNorm(4, 2, estimate=False, reference=r),
                                         lambda x: groups_standardized64(standardized64(x, (0, 2, 3)), 2)),
    "DeepNorm": Case(lambda r: norm.DeepNorm(2.0, [3, 3], reference=r),
                     lambda x: standardized64(2.0 * x.double() + deep_norm_residual(x.double()), (2, 3)),
                     apply=lambda layer, x: layer(x, deep_norm_residual(x))),
    # The weight of 4 output channels is the "input".
    "WeightStandardization": Case(lambda r: norm.WeightStandardization(), lambda W: standardized64(W, (1, 2, 3)),
                                  paths=("native",)),
}
PARAMS = [(name, path) for name, case in CASES.items() for path in case.paths]


@pytest.mark.parametrize("name, path", PARAMS)
def test_gradcheck_in_float64(name, path):
    case = CASES[name]
    layer = randomize_affine(case.make(PATHS[path])).double()
    layer.train(not case.gradcheck_eval)
    x = (torch.randn(2, *SHAPE[1:], dtype=torch.float64) * 2 + 1).requires_grad_()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().requires_grad_() for _, p in layer.named_parameters()]

    def f(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return case.apply(lambda *a: functional_call(layer, dict(zip(names, params)), a), x)

    assert torch.autograd.gradcheck(f, (x, *params))


def test_conv2d_gradcheck_in_float64():
    conv = norm.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, W, b: functional_call(conv, {"weight": W, "bias": b}, (x,)),
                                    (x, conv.weight.detach().requires_grad_(), conv.bias.detach().requires_grad_()))


@pytest.mark.parametrize("name, path", [(name, path) for name, path in PARAMS if name != "WeightStandardization"])
def test_empty_batch(name, path):
    case = CASES[name]
    x = torch.randn(0, *SHAPE[1:], requires_grad=True)
    y = case.apply(case.make(PATHS[path]), x)
    y.sum().backward()
    assert y.shape == x.shape and x.grad.shape == x.shape


def test_textbook_variance_fails_on_the_stability_input():
    x = far_from_zero(SHAPE)
    mu = x.mean(dim=(0, 2, 3), keepdim=True)
    textbook_var = (x * x).mean(dim=(0, 2, 3), keepdim=True) - mu * mu
    textbook = (x - mu) / torch.sqrt(textbook_var + 1e-5)
    error = (textbook.double() - standardized64(x, (0, 2, 3))).abs().max()
    assert torch.isnan(error) or error > 1e-1


@pytest.mark.parametrize("name, path", PARAMS)
def test_stable_far_from_zero(name, path):
    case = CASES[name]
    x = far_from_zero(SHAPE)
    y = case.apply(case.make(PATHS[path]), x)
    assert y.dtype == torch.float32
    assert (y.double() - case.expected(x)).abs().max() < 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name, path", PARAMS)
def test_low_precision_inputs_have_float32_statistics(name, path, dtype):
    case = CASES[name]
    layer = case.make(PATHS[path])
    # A mean of 3 over thousands of values: a float16 or bfloat16 running sum would lose whole units.
    x = (torch.randn(256, *SHAPE[1:]) + 3).to(dtype)
    y = case.apply(layer, x)
    assert y.dtype == dtype
    # Computed in float32 and rounded once: within one unit in the last place of the output's dtype.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), case.expected(x), rtol=eps, atol=eps / 4)
    for name, buffer in layer.named_buffers():
        assert buffer.dtype in (torch.float32, torch.long), name
