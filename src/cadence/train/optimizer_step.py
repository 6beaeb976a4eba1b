"""The optimizer step: its accumulation window, the gradient scaler, clipping, the non-finite policy, schedules.

**The window.** Gradients accumulate over ``update_batches`` training batches. Each batch's
loss is divided by the number of batches in its window, so the accumulated gradient is the
*mean* over the window: two batches of 32 give the update of one batch of 64
(normalization statistics aside). A window cut short by the end of the epoch is divided by
its own, smaller, count and still applied. A window's gradients are zeroed just before its
first backward pass.

**The step**, after the window's last batch: the schedules set their hyper-parameters; the
gradient scaler unscales; the gradients are clipped (by value, then by global norm: the
norm before clipping is tracked as ``train.grad_norm``); the non-finite policy guards the
update; the optimizer steps; a ``torch.optim.lr_scheduler`` stepped per step steps.
:attr:`OptimizerStep.taken` counts the steps taken: the run's clock (``Trainer.global_step``).

**Non-finite values, without a host read per step.** Each step checks, on the device, every
gradient and the window's loss (the check gradient scalers make, one per tensor); a NaN or an
infinity sets that tensor's flag, which stays set, and a flag for the whole step. The step's
flag is the optimizer's ``found_inf`` (torch's fused optimizers and cadence's read it, see
``GenericAdaptiveOptimizer.supports_found_inf``: the update is then skipped on the device),
or, for any other optimizer, masks every gradient to zero before its step. Either way nothing
non-finite reaches the parameters, however many steps pass before the flags are read.

* ``nonfinite="raise"`` (the default) reads the flag back every ``check_every`` optimizer
  steps (20) and no more often than every ``check_seconds`` (the tracker's flush interval),
  before every checkpoint and at the end of a run (:meth:`OptimizerStep.check`), and raises
  :class:`NonFiniteError` naming the first such step and its first non-finite parameter (of
  that step or, rarely, of one masked after it). The steps after it until the read are taken,
  their updates masked.
* ``nonfinite="skip"`` reads the flag at every step: a skipped update must not advance the
  clock, the schedules or the hooks, which live on the host. It is one read per step.
* Under a gradient scaler (float16), the scaler's own check skips an overflowing step, as
  torch's does (it reads its flag at every step, and so does the step's count of skips).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import monotonic
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cadence.checks import check_number
from cadence.optim import HyperParameterScheduler, clip_grad_norm, clip_grad_value
from cadence.optim.sharded import is_sharded, local
from cadence.schedule import Schedule
from cadence.track import ModelSnapshot, model_statistics
from cadence.train.batch_index import BatchIndex

__all__ = ["NONFINITE", "NonFiniteError", "OptimizerStep"]

#: ``nonfinite=`` values: fail naming the step and parameter, or skip the update and count it.
NONFINITE = ("raise", "skip")

LR_SCHEDULER_INTERVALS = ("step", "epoch")


class NonFiniteError(FloatingPointError):
    """A loss or gradient that is NaN or infinite, under ``nonfinite="raise"``."""


class OptimizerStep:
    """The optimizer steps of a training run (see the module docstring).

    * ``optimizer``; ``update_batches``, the batches of an accumulation window;
    * ``schedules``: group hyper-parameters (``"lr"``, ``"betas[0]"``) to schedules of the step,
      applied to every group before each step; ``lr_scheduler``: a ``torch.optim.lr_scheduler``
      instead, stepped every optimizer step or every epoch (``lr_scheduler_every``);
    * ``grad_clip_norm`` / ``grad_clip_value``; ``nonfinite``; ``scaler``, a gradient scaler;
    * ``names``: each parameter's name, by ``id``, for errors; ``check_every`` / ``check_seconds``:
      how often ``nonfinite="raise"`` reads its flag back;
    * ``statistics_every`` and ``model``: every this many steps, ``model``'s per-layer
      parameter norms, gradient norms and update ratios go with the step's values;
    * ``log``: where a skipped update is reported, in one line.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, update_batches: int = 1,
                 schedules: Mapping[str, Schedule] | None = None, lr_scheduler: Any = None,
                 lr_scheduler_every: str = "step", grad_clip_norm: float | None = None,
                 grad_clip_value: float | None = None, nonfinite: str = "raise", scaler: Any = None,
                 names: Mapping[int, str] | None = None, check_every: int = 20, check_seconds: float = 0.0,
                 statistics_every: int = 0, model: nn.Module | None = None,
                 log: Callable[[str], None]):
        _check_arguments(locals())
        self.optimizer = optimizer
        self.update_batches = update_batches
        self.schedules = HyperParameterScheduler(optimizer, schedules or {})
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_every = lr_scheduler_every
        self.grad_clip_norm, self.grad_clip_value = grad_clip_norm, grad_clip_value
        self.nonfinite = nonfinite
        self.scaler = scaler
        self.names = dict(names or {})
        self.check_every, self.check_seconds = check_every, check_seconds
        self.statistics_every, self.model = statistics_every, model
        self.log = log
        #: Optimizer steps taken: the run's clock.
        self.taken = 0
        #: Updates skipped (``nonfinite="skip"``, or a float16 overflow under the scaler).
        self.skipped = 0
        #: Training samples (the counts the batches came with) the steps were taken on.
        self.samples = 0
        self._losses: list[torch.Tensor] = []
        self._window_samples: int | torch.Tensor = 0
        self._flags: _Flags | None = None
        self._unchecked, self._checked_at = 0, monotonic()
        self._masked_by_optimizer = bool(getattr(optimizer, "supports_found_inf", False)
                                         or getattr(optimizer, "_step_supports_amp_scaling", False))

    # -- the window ------------------------------------------------------------------------

    def window(self, index: BatchIndex) -> tuple[int, int]:
        """``(first batch, batches)`` of the accumulation window of training batch ``index``."""
        start = index.idx - index.idx % self.update_batches
        return start, min(self.update_batches, index.total - start)

    def ends_window(self, index: BatchIndex) -> bool:
        """Whether training batch ``index`` is the last of its window: the optimizer steps after it."""
        start, size = self.window(index)
        return index.idx == start + size - 1

    def backward(self, loss: torch.Tensor, count: int | torch.Tensor, index: BatchIndex) -> None:
        """Back-propagate training batch ``index``'s mean loss as its share of its window's mean (the window's
        gradients zeroed first at its first batch), through the scaler when there is one."""
        start, size = self.window(index)
        if index.idx == start:
            # Dropped just before they are made again (on a tiny model 5% faster than after the step: the
            # allocator reuses warm memory).
            self.optimizer.zero_grad()
        scaled = loss / size if size > 1 else loss
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self._losses.append(loss.detach())
        self._window_samples += count

    # -- the step --------------------------------------------------------------------------

    def step(self) -> dict[str, Any] | None:
        """Take the window's optimizer step; return the values to track at it (``train.loss``, the window's mean
        loss; ``train.lr`` as the optimizer has it; scheduled keys; ``train.grad_norm``; ``train.samples``;
        model statistics when due), or ``None`` when the update was skipped (counted in :attr:`skipped`)."""
        values = {f"train.{key}": value for key, value in self.schedules.step(self.taken).items()
                  if key != "lr" and not key.startswith("lr.")} if self.schedules.schedules else {}
        values.update(_rates(self.optimizer))
        losses, self._losses = self._losses, []
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        samples, self._window_samples = self._window_samples, 0
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms = []
        if self.grad_clip_value is not None:
            norms.append(clip_grad_value(params, self.grad_clip_value))
        if self.grad_clip_norm is not None:
            norms.append(clip_grad_norm(params, self.grad_clip_norm))
        if norms:  # the norm before any clipping: with both, not the one left by clipping by value
            values["train.grad_norm"] = norms[0]
        snapshot = ModelSnapshot(self.model) if self.statistics_every and \
            (self.taken + 1) % self.statistics_every == 0 else None
        if not self._update(params, loss):
            self.skipped += 1
            return None
        if self.lr_scheduler is not None and self.lr_scheduler_every == "step":
            self.lr_scheduler.step()
        self.taken += 1
        self.samples += samples
        if snapshot is not None:
            values.update(model_statistics(snapshot, self.model))
        values["train.loss"] = loss
        values["train.samples"] = self.samples
        if self.nonfinite == "raise" and self.scaler is None:
            self._unchecked += 1
            if self._unchecked >= self.check_every and monotonic() - self._checked_at >= self.check_seconds:
                self.check()
        return values

    def end_epoch(self) -> None:
        """Step a ``torch.optim.lr_scheduler`` stepped per epoch."""
        if self.lr_scheduler is not None and self.lr_scheduler_every == "epoch":
            self.lr_scheduler.step()

    def _update(self, params: list[torch.Tensor], loss: torch.Tensor) -> bool:
        """Step the optimizer as the non-finite policy and the scaler say; return whether the step was taken."""
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return self.scaler.get_scale() >= scale  # a skipped step halves the scale
        flags = self._flags_for(params, loss)
        flags.update([p.grad for p in params], loss)
        if self.nonfinite == "skip":
            if flags.found.item():
                self.log(f"step {self.taken + 1}: non-finite loss or gradient; the update is skipped")
                flags.reset()
                return False
            self.optimizer.step()
            return True
        if self._masked_by_optimizer:
            self.optimizer.found_inf = flags.found
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        else:
            for p in params:
                local(p.grad).masked_fill_(flags.mask, 0)
            self.optimizer.step()
        return True

    def _flags_for(self, params: list[torch.Tensor], loss: torch.Tensor) -> _Flags:
        """The flags of ``params``' gradients and the loss: made again when the parameters with a gradient change."""
        names = [self.names.get(id(p), "?") for p in params] if self._flags is None or \
            len(params) != len(self._flags.names) else None
        if names is not None:
            self.check()  # a flag set for the parameters before is read before they are forgotten
            self._flags = _Flags(names, loss.device)
        return self._flags

    def check(self) -> None:
        """Read the non-finite flag back (once, every process agreeing); raise :class:`NonFiniteError` naming the
        first step it was set at and its first non-finite parameter. Free when no step was taken since the last."""
        flags = self._flags
        if not self._unchecked or flags is None:
            return
        self._unchecked, self._checked_at = 0, monotonic()
        read = torch.cat([flags.steps, flags.flags])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(read, op=dist.ReduceOp.MAX)  # every process's flags, the longest count
        steps, *found = read.tolist()
        if not steps:
            return
        step, hint = self.taken - int(steps) + 1, "nonfinite='skip' skips such updates instead"
        if found[-1]:
            raise NonFiniteError(f"step {step}: the loss is not finite (NaN or infinite); {hint}")
        name = next(name for name, flag in zip(flags.names, found) if flag)
        raise NonFiniteError(f"step {step}: the gradient of parameter {name!r} is not finite; {hint}")

    # -- checkpoints -------------------------------------------------------------------------

    def run_steps(self, epochs: int, batches_per_epoch: int, max_steps: int = 0) -> int:
        """The optimizer steps of a whole run with this window: :func:`run_steps`."""
        return run_steps(epochs, batches_per_epoch, self.update_batches, max_steps)

    def state_dict(self) -> dict[str, Any]:
        """The counts, the gradient scaler and the learning-rate scheduler (the schedules are functions of the
        step, restored with it)."""
        return {"taken": self.taken, "skipped": self.skipped, "samples": self.samples,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.taken, self.skipped, self.samples = int(state["taken"]), int(state["skipped"]), state["samples"]
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])


def _check_arguments(arguments: Mapping[str, Any]) -> None:
    """The step's arguments checked where they enter, each error naming the argument and what was expected."""
    check_number("OptimizerStep", "update_batches", arguments["update_batches"], low=1, integer=True)
    check_number("OptimizerStep", "statistics_every", arguments["statistics_every"], low=0, integer=True)
    for name in ("grad_clip_norm", "grad_clip_value"):
        if arguments[name] is not None:
            check_number("OptimizerStep", name, arguments[name], low=0, low_open=True)
    for name, allowed in (("nonfinite", NONFINITE), ("lr_scheduler_every", LR_SCHEDULER_INTERVALS)):
        if arguments[name] not in allowed:
            raise ValueError(f"OptimizerStep: {name}={arguments[name]!r}; expected one of "
                             f"{', '.join(map(repr, allowed))}")
    if arguments["lr_scheduler"] is not None and "lr" in (arguments["schedules"] or {}):
        raise ValueError("OptimizerStep: lr_scheduler and schedules={'lr': ...} would both set the learning rate; "
                         "give one")


class _Flags:
    """On the device: ``flags``, one per parameter (in the order of the step's gradients) and one for the loss, each
    set by a NaN or an infinity and left set; ``found``, whether any is (a one-element float, an optimizer's
    ``found_inf``), and ``mask`` the same as a 0-d boolean; ``steps``, the steps since the first was set, that one
    included."""

    def __init__(self, names: Sequence[str], device: torch.device):
        self.names = list(names)
        self.flags = torch.zeros(len(names) + 1, device=device)
        self._slots = list(self.flags.split(1))
        self.found = torch.zeros(1, device=device)
        self.mask = torch.zeros((), dtype=torch.bool, device=device)
        self.steps = torch.zeros(1, device=device)
        self._one = torch.ones(1, device=device)

    def update(self, grads: list[torch.Tensor], loss: torch.Tensor) -> None:
        """Flag this step's gradients and loss (the check gradient scalers make, scaling by 1: the step's in one
        pass, then each tensor's) and count the step; nothing read back. Sharded gradients (FSDP) are checked
        shard by shard, and the flags of every process combined in one all-reduce: all see the same."""
        if any(is_sharded(grad) for grad in grads):
            for tensor, slot in zip([*map(local, grads), loss], self._slots):
                torch._amp_foreach_non_finite_check_and_unscale_([tensor], slot, self._one)
            dist.all_reduce(self.flags, op=dist.ReduceOp.MAX)
            torch.amax(self.flags, 0, keepdim=True, out=self.found)
        else:
            tensors = [*grads, loss]
            torch._amp_foreach_non_finite_check_and_unscale_(tensors, self.found, self._one)
            for tensor, slot in zip(tensors, self._slots):
                torch._amp_foreach_non_finite_check_and_unscale_([tensor], slot, self._one)
        self.mask.copy_(self.found.view(()))
        self.steps.add_(self.found)

    def reset(self) -> None:
        for flag in (self.flags, self.found, self.mask, self.steps):
            flag.zero_()


def _rates(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``train.lr`` as the optimizer's groups have it now (``train.lr.group<i>`` each when they differ): the rate a
    schedule, a scheduler or a callback set. A rate held as a tensor is tracked as it is, never read here."""
    rates = [group["lr"] for group in optimizer.param_groups]
    if len(rates) == 1 or (not any(isinstance(rate, torch.Tensor) for rate in rates) and len(set(rates)) == 1):
        return {"train.lr": rates[0]}
    return {f"train.lr.group{i}": rate for i, rate in enumerate(rates)}


def run_steps(epochs: int, batches_per_epoch: int, update_batches: int = 1, max_steps: int = 0) -> int:
    """The optimizer steps of a whole run: ``epochs`` times an epoch's (the last window of an epoch steps even when it
    is short of ``update_batches`` batches), or ``max_steps`` when fewer (0: no limit)."""
    steps = epochs * -(-batches_per_epoch // update_batches)
    return min(steps, max_steps) if max_steps else steps
