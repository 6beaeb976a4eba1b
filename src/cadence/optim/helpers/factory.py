"""Build any optimizer by name from one typed config.

``OptimizerConfig`` holds every hyper-parameter of every optimizer; ``name`` picks the
optimizer. ``lr`` and ``weight_decay`` every optimizer takes; every other field left at its
default (``None`` for most) leaves the optimizer its own default, and a field set to anything
else is passed, by keyword, to an optimizer that must take it: one that does not is an
error, not silently ignored. From the command line::

    cadence train mnist optimizer.name=radam optimizer.lr=3e-3 optimizer.weight_decay=0.01
    cadence train mnist optimizer.schedule="Sequential([LinearWarmup(3e-3, 100), Cosine(3e-3, 500)], [100])"

``schedule`` is the learning rate as a schedule of the optimizer step, written as the
schedule's ``repr`` (see :func:`cadence.schedule.parse_schedule`); ``schedules`` binds
schedules to other group hyper-parameters (``optimizer.schedules.weight_decay=...``,
``betas[0]``, ``momentum``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cadence.optim.ada_belief import AdaBelief
from cadence.optim.adam import Adam
from cadence.optim.adam_warmup import AdamWarmup
from cadence.optim.adam_warmup_cosine_decay import AdamWarmupCosineDecay
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.lamb import LAMB
from cadence.optim.lion import Lion
from cadence.optim.muon import Muon
from cadence.optim.helpers.param_groups import muon_param_groups
from cadence.optim.noam import Noam
from cadence.optim.radam import RAdam
from cadence.optim.sophia import Sophia
from cadence.optim.weight_decay import WeightDecay
from cadence.schedule import Schedule, parse_schedule


@dataclass
class OptimizerConfig:
    """Every hyper-parameter of the optimizers :func:`build_optimizer` knows.

    A field at its default here (``None``, or the default every optimizer that takes it has)
    leaves the chosen optimizer its own default; any other value is passed to it, so
    ``momentum=0`` means no momentum. ``weight_decay`` is a float read as the optimizer
    reads one (torch's coupled L2 for the Adam family and ``sgd``, decoupled for ``lion``,
    ``sophia``, ``lamb`` and ``muon``); ``weight_decouple`` / ``absolute`` make it the
    :class:`~cadence.optim.weight_decay.WeightDecay` strategy they say instead.
    """

    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float = 0.0
    weight_decouple: bool | None = None
    absolute: bool | None = None
    #: Adam, AMSGrad and the warm-up variants: fold the bias corrections into the step size.
    optimized_update: bool = True
    #: The warm-up variants, RAdam, AdaBelief: divide by the running maximum (AMSGrad's always does).
    amsgrad: bool | None = None
    #: Warm-up steps (AdamWarmup, AdamWarmupCosineDecay, Noam).
    warmup: int | None = None
    #: AdamWarmupCosineDecay: the step the cosine reaches ``min_lr``.
    total_steps: int | None = None
    min_lr: float | None = None
    #: Noam: the model width.
    d_model: int | None = None
    #: Sophia: the scale rho of the curvature in its clipped step, and the steps between refreshes of it.
    rho: float | None = None
    hessian_interval: int | None = None
    #: RAdam and AdaBelief.
    rho_threshold: float | None = None
    degenerate_to_sgd: bool = True
    rectify: bool = True
    #: SGD and Muon.
    momentum: float | None = None
    nesterov: bool | None = None
    #: Muon: the rate of its AdamW groups (embeddings, head, biases, gains; ``betas`` and ``eps`` are theirs).
    adamw_lr: float | None = None
    #: The fused fast path of the elementwise family (and torch's fused SGD).
    fused: bool | None = None
    #: The learning rate as a schedule of the optimizer step (its repr); empty: constant ``lr``.
    schedule: str = ""
    #: Schedules of other group hyper-parameters, by name: ``weight_decay``, ``momentum``, ``beta1`` and
    #: ``beta2`` (for ``betas[0]`` and ``betas[1]``, which a dotted override cannot spell).
    schedules: dict[str, str] = field(default_factory=dict)


#: Optimizer names and their constructors, called with the config's fields by keyword.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": Adam, "amsgrad": AMSGrad, "adam_warmup": AdamWarmup, "adam_warmup_cosine_decay": AdamWarmupCosineDecay,
    "noam": Noam, "radam": RAdam, "ada_belief": AdaBelief, "lion": Lion, "sophia": Sophia, "lamb": LAMB,
    "muon": Muon, "sgd": torch.optim.SGD,
}
#: Fields that make ``weight_decay`` a WeightDecay; only cadence's optimizers take one.
_STRATEGY = ("weight_decouple", "absolute")
#: Fields that are not arguments of the constructor.
_NOT_ARGUMENTS = ("name", "schedule", "schedules")
#: Fields every optimizer takes, passed whatever their value.
_ALWAYS = ("lr", "weight_decay")


def build_optimizer(config: OptimizerConfig, model_or_params: nn.Module | Iterable) -> torch.optim.Optimizer:
    """The optimizer ``config.name`` over a model's parameters, or over the given parameters or groups."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={config.name!r} is not a known optimizer; expected one of: "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    if config.name == "muon":
        # Muon's update for the hidden matrices, AdamW's for the rest (and, from a model, its embeddings and head)
        params = muon_param_groups(model_or_params)
    elif isinstance(model_or_params, nn.Module):
        params = model_or_params.parameters()
    else:
        params = model_or_params
    return OPTIMIZERS[config.name](params, **_arguments(config))


def _arguments(config: OptimizerConfig) -> dict[str, Any]:
    """The keyword arguments of ``config.name``'s constructor; a field it does not take is an error."""
    parameters = inspect.signature(OPTIMIZERS[config.name]).parameters
    # cadence's constructors take ``weight_decay: float | WeightDecay``; torch's a float only
    takes_strategy = "WeightDecay" in str(parameters["weight_decay"].annotation)
    usable = [f.name for f in dataclasses.fields(config) if f.name not in _NOT_ARGUMENTS
              and (f.name in parameters or (f.name in _STRATEGY and takes_strategy))]
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
             if f.name not in _NOT_ARGUMENTS and (f.name in _ALWAYS or getattr(config, f.name) != f.default)}
    unused = [name for name in given if name not in usable]
    if unused:
        options = " and ".join(f"optimizer.{name}" for name in unused)
        raise ValueError(f"{options} {'is' if len(unused) == 1 else 'are'} not used by {config.name}; it takes: "
                         f"{', '.join(usable)}")
    strategy = {name: given.pop(name) for name in _STRATEGY if name in given}
    if strategy:
        given["weight_decay"] = WeightDecay(given["weight_decay"], **strategy)
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    return given


def optimizer_callbacks(optimizer: torch.optim.Optimizer) -> list[Any]:
    """The trainer callbacks ``optimizer``'s own chores need: its ``callbacks()`` (cadence's optimizers: the fused
    path's compile report, Sophia's Hessian refresh), none for another optimizer."""
    callbacks = getattr(optimizer, "callbacks", None)
    return list(callbacks()) if callable(callbacks) else []


_ALIASES = {"beta1": "betas[0]", "beta2": "betas[1]"}


def build_schedules(config: OptimizerConfig) -> dict[str, Schedule]:
    """The hyper-parameter schedules of ``config``, parsed (errors name the config key and the text)."""
    texts = {**({"lr": config.schedule} if config.schedule else {}), **config.schedules}
    schedules = {}
    for key, text in texts.items():
        where = "optimizer.schedule" if key == "lr" and config.schedule else f"optimizer.schedules.{key}"
        try:
            schedules[_ALIASES.get(key, key)] = parse_schedule(text)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return schedules
