"""Build any optimizer by name from one typed config.

``OptimizerConfig`` holds every hyper-parameter of every optimizer; ``name`` picks the
optimizer. :data:`OPTIMIZERS` declares, for each name, its constructor and the config fields
it takes besides ``lr`` and ``weight_decay`` (which every optimizer takes). Every other field
left at its default (``None`` for most) leaves the optimizer its own default, and a field set
to anything else is passed, by keyword, to an optimizer that must take it: one that does not
is an error naming the field and listing what the optimizer takes, not silently ignored.
From the command line::

    cadence train mnist optimizer.name=radam optimizer.lr=3e-3 optimizer.weight_decay=0.01
    cadence train mnist optimizer.schedule=cosine optimizer.warmup=100 optimizer.min_lr=3e-5
    cadence train mnist optimizer.schedule="Sequential([LinearWarmup(3e-3, 100), Cosine(3e-3, 500)], [100])"

``schedule`` is the learning rate as a schedule of the optimizer step, either written as the
schedule's ``repr`` (see :func:`cadence.schedule.parse_schedule`) or named: ``cosine`` is
:func:`cadence.schedule.warmup_cosine`, a linear warm-up from 0 to ``lr`` over ``warmup`` steps
(0 if unset), then half a cosine down to ``min_lr`` (0 if unset) at ``total_steps``, which,
unset, is the run's length as the caller passes it (``build_schedules(config,
total_steps=...)``); a named schedule with neither is an error. The fields a named schedule
reads are used by it, whatever the optimizer. ``schedules`` binds schedules to other group
hyper-parameters (``optimizer.schedules.weight_decay=...``, ``beta1``, ``momentum``).

The preset ``adam_warmup_cosine_decay`` reads the same fields the same way (its
``total_steps``, unset, is the run's length given to ``build_optimizer(config, params,
total_steps=...)``). It schedules its own rate, so a ``schedule`` beside it is refused, naming
both, when the trainer binds it: one rate, one schedule.

``muon`` updates weight matrices only: from a model, its parameters are split by
:func:`~cadence.optim.helpers.param_groups.muon_param_groups` (hidden matrices to Muon; the rest,
embeddings and the head to AdamW), and ``betas``, ``eps`` and ``adamw_lr`` are the AdamW groups'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cadence.checks import check_number
from cadence.optim import sharded
from cadence.optim.ada_belief import AdaBelief
from cadence.optim.adam import Adam
from cadence.optim.adam_warmup import AdamWarmup
from cadence.optim.adam_warmup_cosine_decay import AdamWarmupCosineDecay
from cadence.optim.amsgrad import AMSGrad
from cadence.optim.helpers.param_groups import muon_param_groups
from cadence.optim.lamb import LAMB
from cadence.optim.lion import Lion
from cadence.optim.muon import Muon
from cadence.optim.noam import Noam
from cadence.optim.radam import RAdam
from cadence.optim.sophia import Sophia
from cadence.optim.weight_decay import WeightDecay
from cadence.schedule import Schedule, parse_schedule, warmup_cosine


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
    #: Warm-up steps (AdamWarmup, AdamWarmupCosineDecay, Noam, and ``schedule="cosine"``: 0 if unset).
    warmup: int | None = None
    #: AdamWarmupCosineDecay and ``schedule="cosine"``: the step the cosine reaches ``min_lr`` (unset: the run's
    #: length, as the caller passes it).
    total_steps: int | None = None
    #: AdamWarmupCosineDecay and ``schedule="cosine"``: the floor of the cosine (0 if unset).
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
    #: The learning rate as a schedule of the optimizer step: its repr, or ``"cosine"`` (from ``lr``, ``warmup``,
    #: ``total_steps`` and ``min_lr``); empty: constant ``lr``.
    schedule: str = ""
    #: Schedules of other group hyper-parameters, by name: ``weight_decay``, ``momentum``, ``beta1`` and
    #: ``beta2`` (for ``betas[0]`` and ``betas[1]``, which a dotted override cannot spell).
    schedules: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """The rate and the schedule's steps checked where the config is made (the optimizer checks the rest of
        its own when it is built, before any run is recorded)."""
        for name in ("lr", "weight_decay"):
            check_number("optimizer", name, getattr(self, name), low=0)
        for name, low in (("warmup", 0), ("total_steps", 1), ("min_lr", 0)):
            if getattr(self, name) is not None:
                check_number("optimizer", name, getattr(self, name), low=low, integer=name != "min_lr")


@dataclass(frozen=True)
class OptimizerEntry:
    """How :func:`build_optimizer` builds one optimizer.

    * ``constructor``: called with the parameters and the config's fields by keyword,
    * ``fields``: the config fields it takes besides ``lr`` and ``weight_decay`` (every optimizer takes those),
    * ``groups``: what to make of a model or parameters, given the model they are of when known (default: a
      model's parameters, or the given parameters or groups as they are).
    """

    constructor: Callable[..., torch.optim.Optimizer]
    fields: tuple[str, ...]
    groups: Callable[[nn.Module | Iterable, nn.Module | None], Iterable] | None = None


#: Fields that make ``weight_decay`` a :class:`~cadence.optim.weight_decay.WeightDecay`: cadence's optimizers take one.
_STRATEGY = ("weight_decouple", "absolute")
_ADAM = ("betas", "eps", *_STRATEGY, "optimized_update", "fused")
_RECTIFIED = ("betas", "eps", *_STRATEGY, "amsgrad", "degenerate_to_sgd", "rho_threshold", "fused")

#: Optimizer names, their constructors and the config fields each takes.
OPTIMIZERS: dict[str, OptimizerEntry] = {
    "adam": OptimizerEntry(Adam, _ADAM),
    "amsgrad": OptimizerEntry(AMSGrad, (*_ADAM, "amsgrad")),
    "adam_warmup": OptimizerEntry(AdamWarmup, (*_ADAM, "amsgrad", "warmup")),
    "adam_warmup_cosine_decay": OptimizerEntry(AdamWarmupCosineDecay,
                                               (*_ADAM, "amsgrad", "warmup", "total_steps", "min_lr")),
    "noam": OptimizerEntry(Noam, (*_ADAM, "amsgrad", "warmup", "d_model")),
    "radam": OptimizerEntry(RAdam, _RECTIFIED),
    "ada_belief": OptimizerEntry(AdaBelief, (*_RECTIFIED, "rectify")),
    "lion": OptimizerEntry(Lion, ("betas", *_STRATEGY, "fused")),
    "sophia": OptimizerEntry(Sophia, ("betas", "eps", "rho", *_STRATEGY, "hessian_interval", "fused")),
    "lamb": OptimizerEntry(LAMB, ("betas", "eps", *_STRATEGY)),
    "muon": OptimizerEntry(Muon, ("betas", "eps", *_STRATEGY, "momentum", "nesterov", "adamw_lr"), muon_param_groups),
    "sgd": OptimizerEntry(torch.optim.SGD, ("momentum", "nesterov", "fused")),
}
#: Fields that are not arguments of the constructor.
_NOT_ARGUMENTS = ("name", "schedule", "schedules")
#: Fields every optimizer takes, passed whatever their value.
_ALWAYS = ("lr", "weight_decay")
#: The learning-rate schedules a config may name (``optimizer.schedule=cosine``), and the fields each reads.
_NAMED_SCHEDULES = {"cosine": ("warmup", "total_steps", "min_lr")}


def build_optimizer(config: OptimizerConfig, model_or_params: nn.Module | Iterable, *,
                    model: nn.Module | None = None, total_steps: int | None = None) -> torch.optim.Optimizer:
    """The optimizer ``config.name`` over a model's parameters, or over the given parameters or groups.

    ``model``, with parameters or groups given, is the model they are of, for an optimizer that groups
    them by what they are (``muon``: its embeddings and head go to AdamW). ``total_steps``, the run's
    length in optimizer steps, is the preset ``adam_warmup_cosine_decay``'s when the config leaves
    ``optimizer.total_steps`` unset.
    """
    if config.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={config.name!r} is not a known optimizer; expected one of: "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    entry = OPTIMIZERS[config.name]
    arguments = _arguments(config, entry)
    if "total_steps" in entry.fields and "total_steps" not in arguments and total_steps is not None:
        arguments["total_steps"] = total_steps
    if entry.groups is not None:
        params = entry.groups(model_or_params, model)
    elif isinstance(model_or_params, nn.Module):
        params = model_or_params.parameters()
    else:
        params = model_or_params
    optimizer = entry.constructor(params, **arguments)
    _refuse_sharded_fused_sgd(config.name, optimizer)
    return optimizer


def _refuse_sharded_fused_sgd(name: str, optimizer: torch.optim.Optimizer) -> None:
    """``sgd`` with ``fused=True`` on sharded (DTensor) parameters is an error naming the first one: torch's fused SGD
    kernel has no DTensor implementation, and would fail at the first step (cadence's own fused path runs on each
    rank's shards, :mod:`cadence.optim.sharded`)."""
    if not (isinstance(optimizer, torch.optim.SGD) and optimizer.defaults.get("fused")):
        return
    for g, group in enumerate(optimizer.param_groups):
        for i, param in enumerate(group["params"]):
            if sharded.is_sharded(param):
                raise ValueError(f"{name}: fused=True, and parameter {i} of group {g} (shape {list(param.shape)}) "
                                 f"is sharded (a DTensor, as fully_shard makes it): torch's fused SGD has no "
                                 f"DTensor kernel; use optimizer.fused=false (torch's SGD then steps the shards), "
                                 f"or an optimizer whose fused path runs on shards (adam, lion, sophia, ...)")


def _arguments(config: OptimizerConfig, entry: OptimizerEntry) -> dict[str, Any]:
    """The keyword arguments of ``config.name``'s constructor; a field that neither it nor the named schedule takes is
    an error."""
    names = [f.name for f in dataclasses.fields(config) if f.name not in _NOT_ARGUMENTS]
    takes = [name for name in names if name in _ALWAYS or name in entry.fields]
    scheduled = _NAMED_SCHEDULES.get(config.schedule, ())
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    given = {name: getattr(config, name) for name in names
             if name in _ALWAYS or getattr(config, name) != defaults[name]}
    unused = [name for name in given if name not in takes and name not in scheduled]
    if unused:
        options = " and ".join(f"optimizer.{name}" for name in unused)
        hint = "".join(f"; optimizer.schedule={schedule} reads {', '.join(read)}"
                       for schedule, read in _NAMED_SCHEDULES.items() if set(unused) & set(read))
        raise ValueError(f"{options} {'is' if len(unused) == 1 else 'are'} not used by {config.name}; it takes: "
                         f"{', '.join(takes)}{hint}")
    arguments = {name: value for name, value in given.items() if name in takes}
    strategy = {name: arguments.pop(name) for name in _STRATEGY if name in arguments}
    if strategy:
        arguments["weight_decay"] = WeightDecay(arguments["weight_decay"], **strategy)
    if "betas" in arguments:
        arguments["betas"] = tuple(arguments["betas"])
    return arguments


def reads_run_length(config: OptimizerConfig) -> bool:
    """Whether the config's learning rate follows a schedule laid over the run's length (``optimizer.schedule=cosine``
    or the preset ``adam_warmup_cosine_decay`` without ``optimizer.total_steps``): a run that changes its length
    changes its rates."""
    entry = OPTIMIZERS.get(config.name)
    reads = _NAMED_SCHEDULES.get(config.schedule, ()) + (entry.fields if entry is not None else ())
    return config.total_steps is None and "total_steps" in reads


def optimizer_callbacks(optimizer: torch.optim.Optimizer) -> list[Any]:
    """The trainer callbacks ``optimizer``'s own chores need: its ``callbacks()`` (cadence's optimizers: the fused
    path's compile report, Sophia's Hessian refresh), none for another optimizer."""
    callbacks = getattr(optimizer, "callbacks", None)
    return list(callbacks()) if callable(callbacks) else []


_ALIASES = {"beta1": "betas[0]", "beta2": "betas[1]"}


def build_schedules(config: OptimizerConfig, *, total_steps: int | None = None) -> dict[str, Schedule]:
    """The hyper-parameter schedules of ``config``, parsed or built (errors name the config key and the text).

    ``total_steps``, the run's length in optimizer steps, ends a named schedule's decay when the config leaves
    ``optimizer.total_steps`` unset.
    """
    texts = {**({"lr": config.schedule} if config.schedule else {}), **config.schedules}
    schedules = {}
    for key, text in texts.items():
        where = "optimizer.schedule" if key == "lr" and config.schedule else f"optimizer.schedules.{key}"
        try:
            schedules[_ALIASES.get(key, key)] = (_cosine(config, total_steps) if key == "lr" and text == "cosine"
                                                 else parse_schedule(text))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return schedules


def _cosine(config: OptimizerConfig, run_steps: int | None) -> Schedule:
    """``optimizer.schedule=cosine``: :func:`cadence.schedule.warmup_cosine` from the config's fields."""
    total_steps = config.total_steps if config.total_steps is not None else run_steps
    if total_steps is None:
        raise ValueError("'cosine' decays to optimizer.min_lr at optimizer.total_steps, and neither it nor the "
                         "run's length is given; expected optimizer.total_steps=N (or the run's length, passed as "
                         "build_schedules(config, total_steps=N))")
    where = "cosine" if config.total_steps is not None else f"cosine over the run's {total_steps} steps"
    min_lr = check_number(where, "min_lr", config.min_lr or 0.0, low=0.0, high=config.lr)
    return warmup_cosine(config.lr, config.warmup or 0, total_steps, min_lr, where=where)
