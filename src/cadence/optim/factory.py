"""Build an optimizer by name from a typed config."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cadence.optim.adam import Adam
from cadence.optim.weight_decay import WeightDecay


@dataclass
class OptimizerConfig:
    """Every hyper-parameter of the optimizers :func:`build_optimizer` knows.

    ``name`` picks the optimizer; the fields it does not use are ignored.
    ``weight_decay`` is the coefficient, ``weight_decouple`` / ``absolute`` its strategy
    (see :class:`~cadence.optim.weight_decay.WeightDecay`).
    """

    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    weight_decouple: bool = True
    absolute: bool = False
    optimized_update: bool = True
    momentum: float = 0.0


def _adam(params: Iterable, c: OptimizerConfig) -> torch.optim.Optimizer:
    return Adam(params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, optimized_update=c.optimized_update,
                weight_decay=WeightDecay(c.weight_decay, c.weight_decouple, c.absolute))


def _sgd(params: Iterable, c: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


#: Optimizer names and their builders.
OPTIMIZERS: dict[str, Callable[[Iterable, OptimizerConfig], torch.optim.Optimizer]] = {"adam": _adam, "sgd": _sgd}


def build_optimizer(config: OptimizerConfig, model_or_params: nn.Module | Iterable) -> torch.optim.Optimizer:
    """The optimizer ``config.name`` over a model's parameters (or the given parameters/groups)."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={config.name!r} is not a known optimizer; expected one of: "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    return OPTIMIZERS[config.name](params, config)
