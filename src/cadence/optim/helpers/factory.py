"""Build any optimizer by name from one typed config.

``OptimizerConfig`` holds every hyper-parameter of every optimizer; ``name`` picks the
optimizer and the fields it does not use are ignored. From the command line::

    cadence train mnist optimizer.name=radam optimizer.lr=3e-3 optimizer.weight_decay=0.01
    cadence train mnist optimizer.schedule="Sequential([LinearWarmup(3e-3, 100), Cosine(3e-3, 500)], [100])"

``schedule`` is the learning rate as a schedule of the optimizer step, written as the
schedule's ``repr`` (see :func:`cadence.schedule.parse_schedule`); ``schedules`` binds
schedules to other group hyper-parameters (``optimizer.schedules.weight_decay=...``,
``betas[0]``, ``momentum``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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
from cadence.optim.noam import Noam
from cadence.optim.radam import RAdam
from cadence.optim.sophia import Sophia
from cadence.optim.weight_decay import WeightDecay
from cadence.schedule import Schedule, parse_schedule


@dataclass
class OptimizerConfig:
    """Every hyper-parameter of the optimizers :func:`build_optimizer` knows.

    ``weight_decay`` is the coefficient and ``weight_decouple`` / ``absolute`` its strategy
    (see :class:`~cadence.optim.weight_decay.WeightDecay`); for ``sgd`` it is torch's L2.
    ``fused`` picks the fused fast path of the adaptive family.
    """

    name: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    weight_decouple: bool = True
    absolute: bool = False
    #: Adam and its warm-up variants: fold the bias corrections into the step size.
    optimized_update: bool = True
    #: AMSGrad, the warm-up variants, RAdam, AdaBelief: divide by the running maximum.
    amsgrad: bool = False
    #: Warm-up steps (AdamWarmup, AdamWarmupCosineDecay, Noam).
    warmup: int = 0
    #: AdamWarmupCosineDecay: the step the cosine reaches ``min_lr``.
    total_steps: int = 10_000
    min_lr: float = 0.0
    #: Noam: the model width.
    d_model: int = 512
    #: Sophia: the scale rho of the curvature in its clipped step.
    rho: float = 0.04
    #: RAdam and AdaBelief.
    rho_threshold: float = 5.0
    degenerate_to_sgd: bool = True
    rectify: bool = True
    #: SGD and Muon (Muon: 0 means its default 0.95).
    momentum: float = 0.0
    nesterov: bool = False
    #: Muon: the rate of the parameters it leaves to AdamW (embeddings, head, biases, gains).
    adamw_lr: float = 3e-4
    fused: bool = False
    #: The learning rate as a schedule of the optimizer step (its repr); empty: constant ``lr``.
    schedule: str = ""
    #: Schedules of other group hyper-parameters, by name: ``weight_decay``, ``momentum``, ``beta1`` and
    #: ``beta2`` (for ``betas[0]`` and ``betas[1]``, which a dotted override cannot spell).
    schedules: dict[str, str] = field(default_factory=dict)

    def weight_decay_strategy(self) -> WeightDecay:
        """The :class:`WeightDecay` these fields describe."""
        return WeightDecay(self.weight_decay, self.weight_decouple, self.absolute)


Builder = Callable[[Iterable, OptimizerConfig], torch.optim.Optimizer]

#: Optimizer names and how each is built from the config.
OPTIMIZERS: dict[str, Builder] = {
    "adam": lambda p, c: Adam(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.optimized_update,
                              fused=c.fused),
    "amsgrad": lambda p, c: AMSGrad(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.optimized_update,
                                    True, fused=c.fused),
    "adam_warmup": lambda p, c: AdamWarmup(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(),
                                           c.optimized_update, c.amsgrad, c.warmup, fused=c.fused),
    "adam_warmup_cosine_decay": lambda p, c: AdamWarmupCosineDecay(
        p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.optimized_update, c.amsgrad, c.warmup,
        c.total_steps, c.min_lr, fused=c.fused),
    "muon": lambda p, c: Muon(p, c.lr, c.momentum or 0.95, c.nesterov, adamw_lr=c.adamw_lr,
                              adamw_betas=tuple(c.betas), adamw_eps=c.eps, weight_decay=c.weight_decay),
    "noam": lambda p, c: Noam(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.optimized_update,
                              c.amsgrad, c.warmup, c.d_model, fused=c.fused),
    "radam": lambda p, c: RAdam(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.amsgrad,
                                c.degenerate_to_sgd, c.rho_threshold, fused=c.fused),
    "ada_belief": lambda p, c: AdaBelief(p, c.lr, tuple(c.betas), c.eps, c.weight_decay_strategy(), c.amsgrad,
                                         c.degenerate_to_sgd, c.rectify, c.rho_threshold, fused=c.fused),
    "lamb": lambda p, c: LAMB(p, c.lr, tuple(c.betas), c.eps, c.weight_decay),
    "lion": lambda p, c: Lion(p, c.lr, tuple(c.betas), c.weight_decay_strategy(), fused=c.fused),
    "sophia": lambda p, c: Sophia(p, c.lr, tuple(c.betas), c.eps, c.rho, c.weight_decay_strategy(), fused=c.fused),
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                                        nesterov=c.nesterov),
}


def build_optimizer(config: OptimizerConfig, model_or_params: nn.Module | Iterable) -> torch.optim.Optimizer:
    """The optimizer ``config.name`` over a model's parameters, or over the given parameters or groups."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={config.name!r} is not a known optimizer; expected one of: "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    params = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    return OPTIMIZERS[config.name](params, config)


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
