r"""The generic adaptive optimizer: one template for Adam and its family, and the pieces they share.

An optimizer of the family is three things (see ARCHITECTURE.md, "The optimizer family in one
shape"):

1. **its per-parameter state**: the names in :attr:`GenericAdaptiveOptimizer.state_names`,
   each a tensor shaped like the parameter and initialised to zero, plus the step count $t$;
2. **the scalars of a step**, computed once per group in plain Python by
   :meth:`GenericAdaptiveOptimizer.scalars` (bias corrections, the step size,
   the weight-decay terms);
3. **one elementwise update** :meth:`GenericAdaptiveOptimizer.update` of
   ``(param, grad, *state, **scalars)``, written with the paper's symbols.

The template loops over parameter groups and parameters, initialises state on first use,
and applies the update, either once per parameter (the readable reference path,
``fused=False``) or once per group on flat buffers compiled into a single loop
(``fused=True``, :mod:`cadence.optim.fused`). Every optimizer is a direct child of the
template and writes only its paper's equations, from the small pieces here that several
papers share (as optax writes its transforms from ``update_moment`` and ``bias_correction``):

* the moment updates :func:`update_moment` and :func:`update_squared_moment`;
* AMSGrad's running maximum :func:`running_max`;
* Adam's bias-corrected step size :func:`adam_scalars` and its denominator :func:`adam_denominator`;
* RAdam's rectification term :func:`rectification`;
* the check of ``betas``, :func:`check_betas`.

Parameter groups work as in every ``torch.optim.Optimizer``: each group may override any
hyper-parameter, and every group's hyper-parameters are validated when it is added.

A caller may hand :meth:`GenericAdaptiveOptimizer.step` a non-finite flag on the device
(``optimizer.found_inf``, torch's protocol, :mod:`cadence.optim.found_inf`): the step then
leaves parameters and state as they were wherever the flag is set, without reading it on the
host (:attr:`GenericAdaptiveOptimizer.supports_found_inf`).

Sharded parameters (DTensors, under FSDP2) need nothing of a paper's update: the template runs an
elementwise update on each rank's shards and hands a whole-tensor one (LAMB's, Muon's) the
DTensors (see :mod:`cadence.optim.sharded`).

An optimizer may schedule hyper-parameters itself (``schedules``, what the presets
``AdamWarmup``, ``AdamWarmupCosineDecay`` and ``Noam`` pass): the one mechanism that binds
schedules to group keys, :class:`~cadence.optim.helpers.hyperparams_schedule.HyperParameterScheduler`,
applied at the start of every step at the step's number $t$ (counted from 1, as the
papers' $\alpha_t$).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from cadence.checks import check_number
from cadence.optim import sharded
from cadence.optim.found_inf import unless_found_inf
from cadence.optim.fused import CompileReport, FusedStep
from cadence.optim.helpers.hyperparams_schedule import HyperParameterScheduler
from cadence.optim.weight_decay import Scalar, WeightDecay

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def update_moment(m: torch.Tensor, g: torch.Tensor, beta: Scalar) -> torch.Tensor:
    r"""$m \leftarrow \beta m + (1 - \beta) g$ in place (an exponential moving average); returns $m$."""
    return m.lerp_(g, 1 - beta)


def update_squared_moment(v: torch.Tensor, g: torch.Tensor, beta: Scalar) -> torch.Tensor:
    r"""$v \leftarrow \beta v + (1 - \beta) g^2$ in place; returns $v$."""
    return v.mul_(beta).addcmul_(g, g, value=1 - beta)


def running_max(v_max: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""AMSGrad's $\hat{v}^{\max}_t \leftarrow \max(\hat{v}^{\max}_{t-1}, v_t)$ in place; returns $\hat{v}^{\max}_t$."""
    return torch.maximum(v_max, v, out=v_max)


def adam_scalars(group: dict[str, Any], t: int, folded: bool) -> dict[str, Any]:
    r"""$\beta_1, \beta_2, \epsilon$, and Adam's step size and $c_t$ at step $t$ for the update
    $\theta_t \leftarrow \theta_{t-1} - \text{step\_size} \cdot m_t / (\sqrt{v_t} / c_t + \epsilon)$
    (see :mod:`cadence.optim.adam`): folded (the end of Section 2 of the paper)
    $\left(\alpha \sqrt{1 - \beta_2^t} / (1 - \beta_1^t), 1\right)$, with $c_t = 1$ as ``None``;
    textbook $\left(\alpha / (1 - \beta_1^t), \sqrt{1 - \beta_2^t}\right)$."""
    beta1, beta2 = group["betas"]
    alpha = group["lr"]
    bias_correction1 = 1 - beta1 ** t
    bias_correction2 = 1 - beta2 ** t
    if folded:
        # $\alpha_t = \alpha \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)$, and $\hat{\epsilon}$ beside $\sqrt{v_t}$
        step_size, c = alpha * math.sqrt(bias_correction2) / bias_correction1, None
    else:
        # $\hat{m}_t / (\sqrt{\hat{v}_t} + \epsilon)$ with $\hat{m}_t = m_t / (1 - \beta_1^t)$, $\hat{v}_t = v_t / (1 - \beta_2^t)$
        step_size, c = alpha / bias_correction1, math.sqrt(bias_correction2)
    return {"beta1": beta1, "beta2": beta2, "eps": group["eps"], "step_size": step_size, "c": c}


def adam_denominator(v: torch.Tensor, c: Scalar | None, eps: Scalar) -> torch.Tensor:
    r"""$\sqrt{v_t} / c_t + \epsilon$, a new tensor ($c_t = 1$ is ``None``: no division)."""
    return (v.sqrt() if c is None else v.sqrt() / c).add_(eps)


def rectification(beta2: float, t: int, rho_threshold: float) -> float | None:
    r"""RAdam's rectification term $r_t$ at step $t$, or ``None`` while $\rho_t \le \rho_{\text{threshold}}$
    (the variance of the adaptive rate is not yet tractable; see :mod:`cadence.optim.radam`):

    $$
    \rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \qquad
    r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}
    $$
    """
    # $\rho_\infty = 2 / (1 - \beta_2) - 1$, $\rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)$
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
    if rho_t <= rho_threshold:
        return None
    # $r_t$
    return (((rho_t - 4) * (rho_t - 2) * rho_inf) / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


def check_betas(where: str, betas: Any) -> tuple[float, float]:
    """``betas`` as a pair ``(beta1, beta2)`` of floats, each in $[0, 1)$, else an error naming ``where``."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{where}: betas={betas!r} is not a pair; expected (beta1, beta2), each in [0, 1)")
    beta1, beta2 = (check_number(where, f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
                    for i, beta in enumerate(betas))
    return beta1, beta2


class GenericAdaptiveOptimizer(Optimizer):
    """Base class of the adaptive optimizers (labml_nn's name and hooks).

    * ``params``: parameters, or parameter groups (dicts with ``params`` and overrides),
    * ``defaults``: the optimizer's own hyper-parameters and their defaults (:attr:`ranges` checks them),
    * ``lr``: the learning rate $\\alpha \\ge 0$,
    * ``betas``: $(\\beta_1, \\beta_2)$, each in $[0, 1)$,
    * ``eps``: $\\epsilon \\ge 0$,
    * ``weight_decay``: a :class:`~cadence.optim.weight_decay.WeightDecay`, or a float $\\lambda$ read
      as :attr:`decoupled_weight_decay` says,
    * ``schedules``: group keys (``"lr"``, ``"betas[0]"``) to schedules of the step that the
      optimizer applies itself before each step, at $t$ (the presets' mechanism; a trainer's
      ``schedules`` apply from outside, and may not schedule the same key),
    * ``fused``: apply the update once per group on flat buffers (see :mod:`cadence.optim.fused`);
      parameters then live in those buffers, and :meth:`zero_grad` zeroes gradients in place.
    """

    #: Names of the per-parameter state tensors, each initialised to zeros like the parameter.
    state_names: tuple[str, ...] = ()
    #: Whether :meth:`update` is elementwise (then it can run fused on flat buffers). An
    #: optimizer whose update needs a whole tensor (a norm, a matrix product) sets ``False``.
    elementwise: bool = True
    #: The ranges of the optimizer's own hyper-parameters (keywords of
    #: :func:`cadence.checks.check_number`), checked in every group besides ``lr``, ``betas``,
    #: ``eps`` and ``weight_decay``.
    ranges: dict[str, dict[str, Any]] = {}
    #: What a float ``weight_decay`` means: torch's coupled L2 (``False``, as in
    #: ``torch.optim.Adam(weight_decay=...)``), or the decoupled shrink (``True``, for the
    #: optimizers whose papers decouple it). A :class:`WeightDecay` says it explicitly.
    decoupled_weight_decay: bool = False
    #: Whether :meth:`step` honours :attr:`found_inf` (any optimizer may declare it, torch's too, when its
    #: ``step`` does): a caller such as the trainer then hands it its non-finite flag instead of reading it.
    supports_found_inf: bool = True
    #: The non-finite flag of the step about to be taken, or ``None`` (torch's protocol, as
    #: ``torch.amp.GradScaler`` follows it with torch's fused optimizers): a one-element float tensor on
    #: the parameters' device that the caller sets before :meth:`step` and deletes after. Non-zero: the
    #: step leaves every parameter and state tensor bit-identical to before, selected on the device
    #: (:mod:`cadence.optim.found_inf`; no host read); zero: the step is bit-identical to one without
    #: it. The host-side step count $t$ (each state's ``step``, and the optimizer's own schedules)
    #: advances either way, since holding it back would mean reading the flag: a masked step is
    #: expected to be followed soon by the caller's own reaction (the trainer's ``nonfinite="raise"``
    #: reads the flag within a few steps and stops), and a caller that goes on after skipping steps
    #: should read the flag and not call :meth:`step` at all (the trainer's ``nonfinite="skip"``).
    found_inf: torch.Tensor | None = None

    def __init__(self, params: Params, defaults: dict[str, Any], lr: float, betas: tuple[float, float],
                 eps: float, weight_decay: float | WeightDecay = 0.0, *,
                 schedules: Mapping[str, Callable[[float], float]] | None = None, fused: bool = False):
        if not isinstance(weight_decay, WeightDecay):
            weight_decay = WeightDecay(check_number(type(self).__name__, "weight_decay", weight_decay, low=0.0),
                                       weight_decouple=self.decoupled_weight_decay)
        #: The weight-decay strategy.
        self.weight_decay = weight_decay
        if fused and not self.elementwise:
            raise ValueError(f"{type(self).__name__}: fused=True needs an elementwise update, and this optimizer's "
                             f"update works on whole tensors; use fused=False")
        #: The fused fast path, or ``None`` for the per-parameter reference path.
        self.fused_step = FusedStep(self.update, self.state_names) if fused else None
        defaults = {**defaults, "lr": lr, "betas": betas, "eps": eps, **weight_decay.defaults()}
        self.validate_group(defaults)
        super().__init__(params, defaults)
        #: The optimizer's own schedules (``schedules``), applied at the start of every step.
        self.scheduler = HyperParameterScheduler(self, schedules or {})

    def validate_group(self, group: dict[str, Any]) -> None:
        """Check every hyper-parameter of ``group`` in place."""
        where = type(self).__name__
        group["lr"] = check_number(where, "lr", group["lr"], low=0.0)
        group["betas"] = check_betas(where, group["betas"])
        group["eps"] = check_number(where, "eps", group["eps"], low=0.0)
        self.weight_decay.validate(where, group)
        for name, bounds in self.ranges.items():
            group[name] = check_number(where, name, group[name], **bounds)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (see ``torch.optim.Optimizer``), validating its hyper-parameters."""
        super().add_param_group(param_group)
        self.validate_group(self.param_groups[-1])

    def init_state(self, state: dict[str, Any], group: dict[str, Any], param: torch.Tensor) -> None:
        """Initialise ``state`` for ``param``: step $t = 0$ and a zero tensor per state name."""
        state["step"] = 0
        for name in self.state_names:
            state[name] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def scalars(self, group: dict[str, Any], step: int) -> dict[str, Any]:
        """The scalars of step ``step`` (counted from 1) for ``group``, passed to :meth:`update`."""
        raise NotImplementedError(f"{type(self).__name__} must define scalars(group, step)")

    @staticmethod
    def update(param: torch.Tensor, grad: torch.Tensor, *state: torch.Tensor, **scalars: Any) -> None:
        """The elementwise update of ``param`` and the state tensors, in place."""
        raise NotImplementedError("a GenericAdaptiveOptimizer subclass must define update(param, grad, *state, **scalars)")

    def step_param(self, state: dict[str, Any], group: dict[str, Any], grad: torch.Tensor,
                   param: torch.Tensor) -> None:
        """Take one step on ``param``: advance $t$, compute the scalars, apply the update."""
        state["step"] += 1
        self.apply_update(param, grad, *(state[name] for name in self.state_names),
                          **self.scalars(group, state["step"]))

    def apply_update(self, param: torch.Tensor, grad: torch.Tensor, *state: torch.Tensor, **scalars: Any) -> None:
        """:meth:`update` on a parameter, its gradient and its state; sharded (DTensors), an elementwise update runs
        on this rank's shards, a whole-tensor one on the DTensors (see :mod:`cadence.optim.sharded`)."""
        tensors = (param, grad, *state)
        self.update(*(map(sharded.local, tensors) if self.elementwise else tensors), **scalars)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Update every parameter that has a gradient, unless :attr:`found_inf` says not to; return the closure's loss,
        if given."""
        found_inf = self.found_inf if self.found_inf is None else sharded.whole(self.found_inf)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._makes_state_only():
            return loss
        if self.scheduler.schedules:
            # the optimizer's own schedules, at $t$: the number of the step being taken (its state counts the taken ones)
            self.scheduler.step(1 + max((state["step"] for state in self.state.values()), default=0))
        for g, group in enumerate(self.param_groups):
            with_grad = []
            for i, param in enumerate(group["params"]):
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients (parameter {i} of "
                                       f"group {g}, shape {list(param.shape)}); use torch.optim.SparseAdam for "
                                       f"sparse embeddings, or nn.Embedding(sparse=False)")
                with_grad.append(param)
            if self.fused_step is not None and self._step_fused(g, group, with_grad, found_inf):
                continue
            for param in with_grad:
                state = self._state(param, group)
                if found_inf is None:
                    self.step_param(state, group, param.grad, param)
                else:
                    # elementwise selection: on this rank's shards when sharded
                    tensors = [sharded.local(x) for x in (param, *state.values()) if isinstance(x, torch.Tensor)]
                    unless_found_inf(found_inf, tensors, lambda: self.step_param(state, group, param.grad, param))
        return loss

    def _makes_state_only(self) -> bool:
        """Whether this step is ``torch.distributed.checkpoint``'s way of making the state it loads into (no state yet,
        every ``lr`` 0, every gradient zero: ``set_optimizer_state_dict`` steps so, expecting no parameter to move);
        then the state is made and nothing else happens. A real step would move parameters all the same when the
        optimizer's own schedules set the rate, or when the decay is absolute, and the state loaded next would not
        undo it. Checked (a host read of each gradient) only while there is no state."""
        if self.state or any(group["lr"] != 0 for group in self.param_groups):
            return False
        with_grad = [(p, group) for group in self.param_groups for p in group["params"] if p.grad is not None]
        # whole: every rank must decide alike (each result is the same on every rank, so the same ones are read)
        if not with_grad or any(sharded.whole(p.grad.any()) for p, _ in with_grad):
            return False
        for p, group in with_grad:
            self._state(p, group)
        return True

    def _state(self, param: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[param]
        if len(state) == 0:
            self.init_state(state, group, param)
        return state

    def _step_fused(self, g: int, group: dict[str, Any], with_grad: list[torch.Tensor],
                    found_inf: torch.Tensor | None) -> bool:
        trainable = [p for p in group["params"] if p.requires_grad]
        if not with_grad or len(with_grad) != len(trainable):
            return False
        states = [self._state(p, group) for p in with_grad]
        return self.fused_step.step(g, with_grad, states, lambda t: self.scalars(group, t), found_inf)

    def callbacks(self) -> list[Any]:
        """The trainer callbacks this optimizer's own chores need (see :mod:`cadence.train.callbacks`): the fused
        path's compile report; Sophia adds its Hessian refresh."""
        return [CompileReport(self.fused_step)] if self.fused_step is not None else []

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients; on the fused path the flat gradient buffers are zeroed in place
        (their views stay attached, whatever ``set_to_none`` says) and other gradients as asked."""
        in_place = self.fused_step.zero_grads() if self.fused_step is not None else set()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or id(p) in in_place:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().requires_grad_(False)
                    p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """The state as ordinary per-parameter tensors (copies of the fused path's views), loadable by either path."""
        state = super().state_dict()
        if self.fused_step is not None:
            state["state"] = {k: {name: v.clone() if isinstance(v, torch.Tensor) else v for name, v in s.items()}
                              for k, s in state["state"].items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by either path, sharded or not (a whole tensor for a sharded parameter keeps this rank's
        shard); the fused path rebuilds its buffers at the next step."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for param in group["params"]:
                if sharded.is_sharded(param) and param in self.state:
                    state = self.state[param]
                    for name, value in state.items():
                        if isinstance(value, torch.Tensor):
                            state[name] = sharded.shard_like(param, value)
        if self.fused_step is not None:
            self.fused_step.reset()
