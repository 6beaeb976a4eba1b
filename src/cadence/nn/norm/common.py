"""What the normalization layers share: argument checks, the affine parameters, float32 statistics.

Every layer names its learned scale $\\gamma$ ``weight`` and its shift $\\beta$ ``bias``,
as PyTorch's layers do, so that a torch layer's ``state_dict`` loads where the math is
the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: Input dtypes whose statistics are accumulated in float32 (the output keeps the input's dtype).
LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_count(value: object, name: str, where: str) -> int:
    """``value`` as a count >= 1 (channels, groups, layers), else a ``ValueError`` naming it and ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {name}={value!r}; expected an integer >= 1")
    return value


def check_positive(value: object, name: str, where: str) -> float:
    """``value`` as a finite float > 0, else a ``ValueError`` naming it and ``where``."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name}={value!r}; expected a finite number > 0")
    return float(value)


def check_eps(eps: object, where: str) -> float:
    r"""``eps`` ($\epsilon$ under the square root) as a finite float > 0."""
    return check_positive(eps, "eps", where)


def check_momentum(momentum: object, where: str) -> float:
    r"""``momentum`` ($\rho$ of the running estimates) as a float in $[0, 1]$."""
    if isinstance(momentum, bool) or not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ValueError(f"{where}: momentum={momentum!r}; expected a number in [0, 1]")
    return float(momentum)


def check_channels(x: torch.Tensor, channels: int, where: str, min_rank: int = 2) -> None:
    """Refuse an input that is not ``[batch, channels, *]`` with at least ``min_rank`` dimensions."""
    if x.dim() < min_rank:
        layout = f"[batch, {channels}, *]" if min_rank == 2 else f"[batch, {channels}, *spatial]"
        raise ValueError(f"{where}: input of shape {list(x.shape)} has rank {x.dim()}; expected {layout} of "
                         f"rank >= {min_rank}")
    if x.shape[1] != channels:
        raise ValueError(f"{where}: input of shape {list(x.shape)} has {x.shape[1]} channels in dimension 1; "
                         f"expected {channels}")


def check_normalized_shape(normalized_shape: object, where: str) -> tuple[int, ...]:
    """A layer's trailing ``normalized_shape`` (an int or a sequence of ints >= 1) as a tuple."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    if (not isinstance(shape, Sequence) or not shape
            or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape)):
        raise ValueError(f"{where}: normalized_shape={normalized_shape!r}; expected an integer >= 1 or a non-empty "
                         f"sequence of them")
    return tuple(shape)


def check_trailing(x: torch.Tensor, normalized_shape: tuple[int, ...], where: str) -> None:
    """Refuse an input whose last dimensions are not ``normalized_shape``."""
    n = len(normalized_shape)
    if tuple(x.shape[-n:]) != normalized_shape:
        raise ValueError(f"{where}: input of shape {list(x.shape)} does not end in {list(normalized_shape)}; "
                         f"expected [*, {', '.join(map(str, normalized_shape))}]")


def register_affine(module: nn.Module, shape: tuple[int, ...], affine: bool, bias: bool = True) -> None:
    r"""Give ``module`` a scale $\gamma = 1$ (``weight``) and a shift $\beta = 0$ (``bias``) of ``shape``, or None."""
    if affine:
        module.weight = nn.Parameter(torch.ones(shape))
    else:
        module.register_parameter("weight", None)
    if affine and bias:
        module.bias = nn.Parameter(torch.zeros(shape))
    else:
        module.register_parameter("bias", None)


def reset_affine(module: nn.Module) -> None:
    r"""Set $\gamma = 1$ and $\beta = 0$ where ``module`` has them (the identity on $\hat{x}$)."""
    if module.weight is not None:
        nn.init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def register_running_stats(module: nn.Module, channels: int, track: bool) -> None:
    r"""Give ``module`` running estimates $\mathrm{E}[x] = 0$, $\mathrm{Var}[x] = 1$ and a batch count, or None."""
    if track:
        module.register_buffer("running_mean", torch.zeros(channels))
        module.register_buffer("running_var", torch.ones(channels))
        module.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
    else:
        module.register_buffer("running_mean", None)
        module.register_buffer("running_var", None)
        module.register_buffer("num_batches_tracked", None)


def reset_estimates(module: nn.Module) -> None:
    r"""Start ``module``'s running estimates afresh, if it keeps them: $\mathrm{E}[x] = 0$, $\mathrm{Var}[x] = 1$."""
    if module.running_mean is not None:
        module.running_mean.zero_()
        module.running_var.fill_(1)
        module.num_batches_tracked.zero_()


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16 or bfloat16 (whose sums lose digits after a few hundred terms), else ``x``."""
    return x.float() if x.dtype in LOW_PRECISION else x


def channel_view(t: torch.Tensor, rank: int) -> torch.Tensor:
    """A per-channel vector ``[C]`` as ``[1, C, 1, ...]``, broadcastable against an input of ``rank`` dimensions."""
    return t.view(1, -1, *([1] * (rank - 2)))
