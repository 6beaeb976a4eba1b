"""What the normalization layers share: argument checks, the affine parameters, the base of the
layers with running estimates (:class:`RunningStatsNorm`), float32 statistics of low-precision inputs.

Every layer names its learned scale $\\gamma$ ``weight`` and its shift $\\beta$ ``bias``,
as PyTorch's layers do, so that a torch layer's ``state_dict`` loads where the math is
the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cadence.checks import check_number

#: Input dtypes whose statistics are accumulated in float32 (the output keeps the input's dtype).
LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_channels(x: torch.Tensor, channels: int, where: str, min_rank: int = 2) -> None:
    """Refuse an input that is not ``[batch, channels, *]`` with at least ``min_rank`` dimensions.

    Called by every ``forward``: it compares integers of the shape, and formats a message only when it
    raises; ``where`` is the layer's name built at construction.
    """
    if x.dim() < min_rank:
        layout = f"[batch, {channels}, *]" if min_rank == 2 else f"[batch, {channels}, *spatial]"
        raise ValueError(f"{where}: input of shape {list(x.shape)} has rank {x.dim()}; expected {layout} of "
                         f"rank >= {min_rank}")
    if x.shape[1] != channels:
        raise ValueError(f"{where}: input of shape {list(x.shape)} has {x.shape[1]} channels in dimension 1; "
                         f"expected {channels}")


def check_normalized_shape(normalized_shape: object, where: str) -> tuple[int, ...]:
    """A layer's trailing ``normalized_shape`` (an int or a non-empty sequence of ints >= 1) as a tuple."""
    if isinstance(normalized_shape, int):
        return (check_number(where, "normalized_shape", normalized_shape, low=1, integer=True),)
    if not isinstance(normalized_shape, Sequence) or isinstance(normalized_shape, str) or not normalized_shape:
        error = ValueError if isinstance(normalized_shape, Sequence) else TypeError
        raise error(f"{where}: normalized_shape={normalized_shape!r}; expected an integer >= 1 or a non-empty "
                    f"sequence of them")
    return tuple(check_number(where, f"normalized_shape[{i}]", n, low=1, integer=True)
                 for i, n in enumerate(normalized_shape))


def check_trailing(x: torch.Tensor, normalized_shape: tuple[int, ...], where: str) -> None:
    """Refuse an input whose last dimensions are not ``normalized_shape``.

    Called by every ``forward``: it compares the shape's tail, and formats a message only when it raises;
    ``where`` is the layer's name built at construction.
    """
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


class RunningStatsNorm(nn.Module):
    r"""What the per-channel layers with running estimates share (``BatchNorm``, ``InstanceNorm``,
    ``EstimatedBatchNorm``), as torch's ``_NormBase`` does for its layers: the arguments, $\gamma$
    (``weight``) and $\beta$ (``bias``) per channel, and the estimates $\mathrm{E}[x]$
    (``running_mean``), $\mathrm{Var}[x]$ (``running_var``) with their count of training
    mini-batches (``num_batches_tracked``).
    """

    def __init__(self, channels: int, eps: float, momentum: float | None, affine: bool, track_running_stats: bool,
                 reference: bool):
        super().__init__()
        where = type(self).__name__
        self.channels = check_number(where, "channels", channels, low=1, integer=True)
        self.eps = check_number(where, "eps", eps, low=0, low_open=True)
        self.momentum = None if momentum is None else check_number(where, "momentum", momentum, low=0, high=1)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.reference = bool(reference)
        #: The layer as its input errors name it, built once: ``forward`` formats a message only when it raises.
        self.where = f"{where}({self.channels})"
        register_affine(self, (channels,), self.affine)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        r"""Start the running estimates afresh: $\mathrm{E}[x] = 0$, $\mathrm{Var}[x] = 1$, no batches."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        r"""Reset the running estimates and set $\gamma = 1$, $\beta = 0$ (the identity on $\hat{x}$)."""
        self.reset_running_stats()
        reset_affine(self)

    def count_batch(self) -> float:
        r"""Count a training mini-batch and return its weight $\rho$ in the estimates.

        $\rho$ is ``momentum``, or with ``momentum=None`` the cumulative average's $1 / n$ at
        the $n$-th mini-batch (as in PyTorch).
        """
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    def extra_repr(self) -> str:
        """The constructor's arguments, for ``repr``."""
        return (f"{self.channels}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}, reference={self.reference}")


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16 or bfloat16 (whose sums lose digits after a few hundred terms), else ``x``."""
    return x.float() if x.dtype in LOW_PRECISION else x


def channel_view(t: torch.Tensor, rank: int) -> torch.Tensor:
    """A per-channel vector ``[C]`` as ``[1, C, 1, ...]``, broadcastable against an input of ``rank`` dimensions."""
    return t.view(1, -1, *([1] * (rank - 2)))
