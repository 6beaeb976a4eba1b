r"""Gradient clipping, returning the norm before clipping for tracking.

By global norm (Pascanu et al., *On the difficulty of training recurrent neural networks*,
ICML 2013, arXiv:1211.5063): with $\lVert g \rVert = \big(\sum_i \lVert g_i \rVert^p\big)^{1/p}$
over every gradient tensor $g_i$, scale all of them by

$$
\min\left(1, \frac{\text{max\_norm}}{\lVert g \rVert + 10^{-6}}\right)
$$

(``torch.nn.utils.clip_grad_norm_``, which this calls). By value: clamp each element to
$[-c, c]$. Both work in place: the fused optimizers keep every ``.grad`` as a view into a
flat buffer, and a replaced tensor would fall out of it. Both return the global norm
before clipping as a 0-d tensor, without synchronising with the device.

Sharded gradients (DTensors, under FSDP) are clipped by the norm of the whole gradients, each
shard's part reduced across the ranks (DTensor does it), and the norm returned is a plain
tensor, the same on every rank. Every rank must then call the clipping, as every rank steps.

Both run every optimizer step, so a threshold is checked at no cost when it is valid (a
positive, finite ``int`` or ``float``: two comparisons); anything else goes through
:func:`cadence.checks.check_number`, which raises with its usual message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from cadence.checks import check_number
from cadence.optim import sharded


def _positive(where: str, name: str, value: float) -> float:
    """``value`` if it is a positive finite number, else the error of :func:`check_number` naming ``where``."""
    if type(value) in (float, int) and 0 < value < math.inf:
        return value
    return check_number(where, name, value, low=0.0, low_open=True)


def _grads(parameters: Iterable[torch.Tensor] | torch.Tensor) -> list[torch.Tensor]:
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm(parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> torch.Tensor:
    """Scale the gradients in place so that their global ``norm_type``-norm (``math.inf``: the largest
    absolute value) is at most ``max_norm``.

    Returns the norm before clipping. ``error_if_nonfinite`` raises when it is NaN or infinite.
    """
    max_norm = _positive("clip_grad_norm", "max_norm", max_norm)
    if norm_type != math.inf:
        _positive("clip_grad_norm", "norm_type", norm_type)
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    return sharded.whole(torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=norm_type,
                                                        error_if_nonfinite=error_if_nonfinite))


def clip_grad_value(parameters: Iterable[torch.Tensor] | torch.Tensor, clip_value: float) -> torch.Tensor:
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place; return the global 2-norm before."""
    clip_value = _positive("clip_grad_value", "clip_value", clip_value)
    grads = _grads(parameters)
    if not grads:
        return torch.tensor(0.0)
    norm = sharded.whole(torch.nn.utils.get_total_norm([g.detach() for g in grads], 2.0))
    for g in grads:
        g.detach().clamp_(-clip_value, clip_value)
    return norm
