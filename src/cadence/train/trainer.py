"""The training loop.

**An epoch** alternates ``inner_iterations`` times between a slice of the training batches and
a slice of the validation batches, as labml does, so that validation figures arrive several
times an epoch. Slice ``i`` of ``n`` batches covers ``[i·n // k, (i+1)·n // k)``: the slices
partition the loader and the last one ends exactly at its end (with more alternations than
batches, some slices are empty and skipped). With ``valid_every=N``
instead, a whole validation pass runs after every ``N``-th optimizer step, whatever the
epoch's length.

**Accumulation.** Gradients accumulate over ``update_batches`` training batches before each
optimizer step. Each batch's loss is divided by the number of batches in its window, so the
accumulated gradient is the *mean* over the window: two batches of 32 give the update of one
batch of 64 (normalization statistics aside). A window cut short by the end of the epoch is
divided by its own, smaller, count and still applied.

**The clock** is :attr:`Trainer.global_step`, the optimizer steps taken: the step of every
tracked value, of the schedules of hyper-parameters, of checkpoints. A step that a gradient
scaler or the ``nonfinite="skip"`` policy skips is not taken, and moves nothing.

**Extending it.** Override :meth:`Trainer.step` (both phases; :attr:`Trainer.mode` tells them
apart), and the hooks (:mod:`cadence.train.callbacks`), or pass callbacks with the same hook
names. The loop itself knows no particular optimizer, model or metric.

**Checkpoints and resume.** With a ``run_dir``, a checkpoint (:mod:`cadence.track.checkpoints`)
is written every ``checkpoint_every`` optimizer steps, at each epoch's end, and when the run
is interrupted. It holds everything the run's future depends on: the model, the optimizer,
the gradient scaler, every random generator, each loader's position, the loop's own position
within the epoch, each phase's metrics, the tracker's and the callbacks' state. A run resumed
from it (:meth:`Trainer.resume`) takes exactly the steps the uninterrupted run would have:
its parameters end bit-identical.

**Interruption.** The first Ctrl+C (SIGINT) or SIGTERM finishes the step in progress, saves a
checkpoint, marks the run interrupted and makes :meth:`Trainer.run` return ``"interrupted"``
(the command line then exits with 130 or 143); a second Ctrl+C stops at once.

**Data parallel.** When ``torch.distributed`` is initialised with several processes, the
model is wrapped in ``DistributedDataParallel``; metrics are summed across processes before
they are read; only rank 0 shows progress, records and writes checkpoints; every process
stops at the same step when one is interrupted.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cadence.checks import check_number
from cadence.metrics import Mean, sync_metric
from cadence.optim import HyperParameterScheduler, clip_grad_norm, clip_grad_value
from cadence.schedule import Schedule
from cadence.track import SAMPLES_KEY, ModelSnapshot, Tracker, model_statistics
from cadence.train.batch_index import BatchIndex
from cadence.train.callbacks import HOOKS
from cadence.track.checkpoints import CHECKPOINTS, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from cadence.train.device import resolve_device
from cadence.train.distributed import world
from cadence.train.interrupt import Interrupts
from cadence.train.mode import Mode
from cadence.train.rng import rng_state, set_rng_state

TRAIN, VALID = "train", "valid"
_END = object()
_NO_CONTEXT = contextlib.nullcontext()

#: ``precision=`` values: float32, bfloat16 autocast, float16 autocast with a gradient scaler.
PRECISIONS = ("32", "bf16", "fp16")
#: ``nonfinite=`` values: fail naming the step and parameter, or skip the update and count it.
NONFINITE = ("raise", "skip")

Loss = torch.Tensor | tuple[torch.Tensor, int | torch.Tensor]


class NonFiniteError(FloatingPointError):
    """A loss or gradient that is NaN or infinite, under ``nonfinite="raise"``."""


class Trainer:
    """Trains ``model`` with ``optimizer`` on ``train_loader``, validating on ``valid_loader``.

    The work of a batch:

    * ``loss_fn(output, target)``: the loss of the default :meth:`step` (batches ``(x, y)``),
    * ``metrics``: name to metric (cadence's or torchmetrics'), updated by the default step as
      ``metric(output, target)``; the trainer keeps a copy of each per phase, reported as
      ``train.<name>`` and ``valid.<name>`` (each phase's mean over the epoch so far).

    The loop:

    * ``epochs``; ``inner_iterations`` (train/validation alternations per epoch) or
      ``valid_every`` (a whole validation pass every this many optimizer steps);
    * ``update_batches``: batches whose gradients are averaged into each optimizer step;
    * ``schedules``: group hyper-parameter (``"lr"``, ``"weight_decay"``, ``"betas[0]"``) to a
      schedule of the optimizer step, applied to every group before each step and tracked as
      ``train.<key>``;
    * ``grad_clip_norm`` / ``grad_clip_value``: clip the (unscaled) gradients by global 2-norm or
      by value before each step; the norm before clipping is tracked as ``train.grad_norm``;
    * ``nonfinite``: ``"raise"`` (a NaN or infinite loss or gradient fails, naming the step and the
      first such parameter) or ``"skip"`` (the update is skipped, counted as ``train.skipped_steps``);
    * ``precision``: ``"32"``, ``"bf16"`` (autocast, also on CPUs) or ``"fp16"`` (autocast and a
      gradient scaler: ``scaler``, by default ``torch.amp.GradScaler``; pass
      :class:`~cadence.optim.GradScalerFP16` with :class:`~cadence.optim.AdamFP16` for a model
      kept in float16);
    * ``compile``: ``torch.compile`` the model;
    * ``device``: ``"auto"`` (CUDA, else MPS, else CPU), or one to force; the model and every
      batch are moved there;
    * ``callbacks``: objects with some of the hooks' names (:mod:`cadence.train.callbacks`).

    Reporting and checkpoints:

    * ``tracker``: where values go; by default one showing progress on the console
      (``console=False``: silent); ``train.loss`` is a moving average there, ``train.samples``
      the samples trained on so far;
    * ``track_model_every``: every this many optimizer steps, each layer's parameter norm,
      gradient norm and update-to-parameter ratio (:mod:`cadence.track.model_statistics`; 0: never);
    * ``run_dir``: the run's folder; checkpoints go to ``run_dir/checkpoints/step-<N>/``, every
      ``checkpoint_every`` optimizer steps (0: never), at each epoch's end and on interruption,
      keeping the ``keep_last`` newest and the ``keep_best`` best by ``best_metric``
      (``best_mode`` ``"min"`` or ``"max"``);
    * ``experiment``, ``config``: what the run is, stored with every checkpoint.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
                 valid_loader: Iterable | None = None, *, loss_fn: Callable[..., torch.Tensor] | None = None,
                 metrics: Mapping[str, Any] | None = None, epochs: int = 1, inner_iterations: int = 1,
                 valid_every: int = 0, update_batches: int = 1, schedules: Mapping[str, Schedule] | None = None,
                 grad_clip_norm: float | None = None, grad_clip_value: float | None = None,
                 nonfinite: str = "raise", precision: str = "32", scaler: Any = None, compile: bool = False,
                 device: str | torch.device | None = "auto", callbacks: Sequence[Any] = (),
                 tracker: Tracker | None = None, console: bool = True, track_model_every: int = 0,
                 run_dir: str | Path | None = None,
                 checkpoint_every: int = 0, keep_last: int = 3, keep_best: int = 0, best_metric: str = "valid.loss",
                 best_mode: str = "min", experiment: str | None = None, config: Mapping[str, Any] | None = None):
        for name, value in (("epochs", epochs), ("inner_iterations", inner_iterations),
                            ("update_batches", update_batches), ("keep_last", keep_last)):
            check_number("Trainer", name, value, low=1, integer=True)
        for name, value in (("valid_every", valid_every), ("checkpoint_every", checkpoint_every),
                            ("keep_best", keep_best), ("track_model_every", track_model_every)):
            check_number("Trainer", name, value, low=0, integer=True)
        for name, value in (("grad_clip_norm", grad_clip_norm), ("grad_clip_value", grad_clip_value)):
            if value is not None:
                check_number("Trainer", name, value, low=0, low_open=True)
        for name, value, allowed in (("nonfinite", nonfinite, NONFINITE), ("precision", precision, PRECISIONS),
                                     ("best_mode", best_mode, ("min", "max"))):
            if value not in allowed:
                raise ValueError(f"Trainer: {name}={value!r}; expected one of {', '.join(map(repr, allowed))}")
        if valid_every and inner_iterations > 1:
            raise ValueError(f"Trainer: valid_every={valid_every} and inner_iterations={inner_iterations}; validate "
                             f"by one of them (valid_every counts optimizer steps, inner_iterations slices epochs)")
        for name, loader in (("train_loader", train_loader), ("valid_loader", valid_loader)):
            if loader is not None and not isinstance(loader, Sized):
                raise TypeError(f"Trainer: {name} of type {type(loader).__name__} has no len(); the trainer "
                                f"slices each epoch by the number of batches")
        for callback in callbacks:
            if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
                raise TypeError(f"Trainer: callback {callback!r} has none of the hooks {', '.join(HOOKS)}")
        self.device = resolve_device(device)
        self.world_size, self.rank = world()
        #: The user's model (unwrapped): its parameters and state dict.
        self.module = model.to(self.device)
        #: What a step calls: the model, compiled and wrapped for data parallel training as asked.
        self.model = self._wrap(self.module, compile)
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.valid_loader = valid_loader
        self.loss_fn = loss_fn
        self.epochs = epochs
        self.inner_iterations = inner_iterations
        self.valid_every = valid_every
        self.update_batches = update_batches
        self.schedules = HyperParameterScheduler(optimizer, schedules or {})
        self.grad_clip_norm = grad_clip_norm
        self.grad_clip_value = grad_clip_value
        self.nonfinite = nonfinite
        self.precision = precision
        self.scaler = scaler if scaler is not None or precision != "fp16" else torch.amp.GradScaler(self.device.type)
        self.callbacks = list(callbacks)
        if tracker is None:
            tracker = Tracker(console=None if console and self.rank == 0 else False)
        self.tracker = tracker
        self.track_model_every = track_model_every
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.keep_last, self.keep_best = keep_last, keep_best
        self.best_metric, self.best_mode = best_metric, best_mode
        self.experiment = experiment
        self.config = dict(config or {})
        self.mode = Mode()
        #: The epoch in progress (from 0).
        self.epoch = 0
        #: Optimizer steps taken so far: the clock of tracking, schedules and checkpoints.
        self.global_step = 0
        #: Updates skipped for non-finite values (``nonfinite="skip"``) or by the gradient scaler.
        self.skipped_steps = 0
        #: Training samples (the counts :meth:`step` returns: tokens for text) the optimizer steps were taken on.
        self.samples = 0
        #: How the last :meth:`run` ended: ``"finished"``, ``"interrupted"``, or ``None`` before one.
        self.status: str | None = None
        #: The signal that interrupted the last :meth:`run` (``signal.SIGINT``, ``signal.SIGTERM``), or ``None``.
        self.stopped_by: int | None = None
        #: The batch in progress, as the loader gave it (for callbacks: :meth:`to_device` moves it).
        self.batch: Any = None
        #: One copy of every metric per phase, and each phase's mean loss.
        self.phase_metrics = {phase: {name: _on(copy.deepcopy(m), self.device) for name, m in (metrics or {}).items()}
                              for phase in (TRAIN, VALID)}
        self.phase_loss = {phase: Mean().to(self.device) for phase in (TRAIN, VALID)}
        self._pending_loss: dict[str, list[tuple[torch.Tensor, int | torch.Tensor]]] = {TRAIN: [], VALID: []}
        self._window: list[torch.Tensor] = []
        self._window_samples: int | torch.Tensor = 0
        #: Batches of each phase done in this epoch, the slice in progress, whether a validation pass is.
        self._done = {TRAIN: 0, VALID: 0}
        self._validating = False
        self._epoch_started = False
        self._phase = TRAIN
        self._latest: dict[str, float] = {}
        self._stop_reason: str | None = None
        self._found: torch.Tensor | None = None
        self._one: torch.Tensor | None = None
        self._interrupts: Interrupts | None = None
        self._names = {id(p): name for name, p in self.module.named_parameters()}
        self._hooks = self._bind_hooks()

    # -- the part a user overrides -------------------------------------------------------

    def step(self, batch: Any, batch_index: BatchIndex) -> Loss:
        """Compute the loss of one batch and update the metrics; return the loss, or ``(loss, count)``.

        ``count`` is the number of samples (or tokens) the loss is the mean over, which weights
        the phase's mean loss; the default step returns the target's element count. A bare loss
        is weighted by the first dimension of the batch's first tensor. Used in both phases
        (``self.mode.is_train`` tells which): in training the trainer scales the loss for
        accumulation, back-propagates it and steps the optimizer.
        """
        if self.loss_fn is None:
            raise TypeError("Trainer.step: no loss_fn given; pass loss_fn=... or override step(batch, batch_index)")
        x, y = self.to_device(batch)
        output = self.model(x)
        loss = self.loss_fn(output, y)
        for metric in self.metrics.values():
            metric.update(output, y)
        return loss, y.numel()

    def on_run_start(self) -> None:
        """Before the first step of :meth:`run`."""

    def on_run_end(self) -> None:
        """After the run ended, finished or interrupted."""

    def on_epoch_start(self) -> None:
        """Before the first batch of an epoch."""

    def on_epoch_end(self) -> None:
        """After the last batch of an epoch."""

    def on_optimizer_step(self) -> None:
        """After each optimizer step."""

    def on_validation_end(self) -> None:
        """After each validation pass or slice, its values reported."""

    def sample(self) -> None:
        """At each switch from training to validation: generate text, show predictions."""

    # -- what steps and hooks use ----------------------------------------------------------

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics of the phase in progress (the training ones outside a phase), for :meth:`step` to update."""
        return self.phase_metrics[self._phase]

    def to_device(self, batch: Any) -> Any:
        """Move a tensor, or a tuple/list/dict of them, to :attr:`device`."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)([self.to_device(b) for b in batch])
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    def log(self, message: str) -> None:
        """Show a one-line message (on rank 0)."""
        self.tracker.log(message)

    def latest(self, key: str) -> float:
        """The last reported value of ``key`` (``"valid.loss"``), read by callbacks such as early stopping."""
        if key not in self._latest:
            raise KeyError(f"Trainer.latest: nothing reported as {key!r} yet; reported so far: "
                           f"{', '.join(sorted(self._latest)) or 'nothing'}")
        return self._latest[key]

    def stop(self, reason: str) -> None:
        """End the run after the current step, as finished, with ``reason`` shown (early stopping, say)."""
        self._stop_reason = reason

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> str:
        """Train until :attr:`epochs` are done, :meth:`stop` is called, or a signal interrupts; return the status.

        ``"finished"`` or ``"interrupted"`` (after saving a checkpoint, when there is a
        ``run_dir``). A failing step marks the run ``failed`` with the error and re-raises; a
        second Ctrl+C marks it ``interrupted`` and raises ``KeyboardInterrupt``. Checkpoints
        already written are never touched by a failure.
        """
        self.status = None
        with Interrupts(notify=self.log) as interrupts:
            self._interrupts = interrupts
            try:
                self.tracker.declare(f"{TRAIN}.loss", "moving")
                self._hook("on_run_start")
                while self.epoch < self.epochs and not self._should_stop():
                    self._run_epoch()
                if self._interrupt_signal() is not None:
                    self.status = "interrupted"
                    self._save_checkpoint()
                else:
                    self.status = "finished"
                    if self._stop_reason is not None:
                        self.log(self._stop_reason)
                        self._save_checkpoint()
                self._hook("on_run_end")
            except KeyboardInterrupt:
                self.tracker.finish("interrupted", "KeyboardInterrupt (a second Ctrl+C: no checkpoint saved)")
                raise
            except BaseException as e:
                self.tracker.finish("failed", "".join(traceback.format_exception_only(type(e), e)).strip())
                raise
            finally:
                self._interrupts = None
        self.stopped_by = signum = interrupts.signal
        self.tracker.finish(self.status, None if signum is None else f"{signal.Signals(signum).name}: stopped at "
                                                                    f"step {self.global_step}")
        return self.status

    def _run_epoch(self) -> None:
        if not self._epoch_started:
            self._epoch_started = True
            self._done = {TRAIN: 0, VALID: 0}
            for phase in (TRAIN, VALID):
                self._pending_loss[phase].clear()
                self.phase_loss[phase].reset()
                for metric in self.phase_metrics[phase].values():
                    metric.reset()
            self._hook("on_epoch_start")
        iterators = {TRAIN: self._resumed_iterator(self.train_loader, self._done[TRAIN])}
        total = {TRAIN: len(self.train_loader)}
        if self.valid_loader is not None:
            total[VALID] = len(self.valid_loader)
        if self._validating:  # resumed within a valid_every pass
            self._validation_pass()
            if self._should_stop():
                return
        k = self.inner_iterations
        for i in range(k):
            self._run_slice(TRAIN, iterators[TRAIN], (i + 1) * total[TRAIN] // k, total[TRAIN])
            if self._should_stop():
                return
            if self.valid_loader is not None and not self.valid_every:
                stop = (i + 1) * total[VALID] // k
                if self._done[VALID] < stop:
                    if VALID not in iterators:
                        iterators[VALID] = self._resumed_iterator(self.valid_loader, self._done[VALID])
                    self._hook("sample")
                    self._run_slice(VALID, iterators[VALID], stop, total[VALID])
                    if self._should_stop():
                        return
        self._epoch_started = False
        self.epoch += 1
        self._hook("on_epoch_end")
        self._save_checkpoint()

    def _run_slice(self, phase: str, batches: Iterator, stop: int, total: int) -> None:
        start = self._done[phase]
        if start >= stop:  # done before a resume, or more inner iterations than batches
            return
        is_train = phase == TRAIN
        self._phase = phase
        self.model.train(is_train)
        self.tracker.start_phase(phase, total=total, epoch=self.epoch + 1, done=start)
        done, advance, work = self._done, self.tracker.advance, self._train_batch if is_train else self._valid_batch
        with torch.set_grad_enabled(is_train), self.mode.update(is_train=is_train, is_optimize=False):
            for idx in range(start, stop):
                batch = next(batches, _END)
                if batch is _END:
                    raise RuntimeError(f"the {phase} loader stopped after {idx} batches but len() said {total}")
                done[phase] = idx + 1  # taken from the loader, as the loader's own position counts it
                work(batch, BatchIndex(idx, total))
                advance()
                # Safe points: after a validation batch, after an optimizer step (not within a window).
                if (not is_train or self.mode.is_optimize) and self._should_stop():
                    break
        self._report(phase)
        self.tracker.end_phase()
        self._phase = TRAIN
        if not is_train:
            self._hook("on_validation_end")

    def _validation_pass(self) -> None:
        """A whole validation pass (``valid_every``): its metrics start afresh, unless resumed within it.

        Within a training slice, the slice's display is closed before the pass and reopened after it.
        """
        within = self._phase == TRAIN and self.tracker.in_phase()
        if within:
            self.tracker.end_phase()
        if not self._validating:
            self._validating = True
            self._done[VALID] = 0
            self._pending_loss[VALID].clear()
            self.phase_loss[VALID].reset()
            for metric in self.phase_metrics[VALID].values():
                metric.reset()
        self._hook("sample")
        total = len(self.valid_loader)
        with self.mode.update(is_train=False):
            self._run_slice(VALID, self._resumed_iterator(self.valid_loader, self._done[VALID]), total, total)
        if self._done[VALID] >= total:
            self._validating = False
        self.model.train(True)
        if within:
            self.tracker.start_phase(TRAIN, total=len(self.train_loader), epoch=self.epoch + 1, done=self._done[TRAIN])

    def _train_batch(self, batch: Any, batch_index: BatchIndex) -> None:
        idx, update_batches = batch_index.idx, self.update_batches
        window_start = idx - idx % update_batches
        window = min(update_batches, batch_index.total - window_start)
        self.mode.is_optimize = is_optimize = idx == window_start + window - 1
        self.batch = batch
        with self._autocast:
            loss, count = self._loss(self.step(batch, batch_index), batch)
        if not loss.requires_grad:
            raise TypeError("Trainer.step returned a loss that does not require grad in a training phase; "
                            "expected the loss of the batch, computed with autograd")
        scaled = loss / window if window > 1 else loss
        if idx == window_start:
            # Each window's gradients start from zero: the previous window's are dropped here, just before they
            # are made again (on a tiny model, 5% faster than after the step: the allocator reuses warm memory).
            self.optimizer.zero_grad()
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        detached = loss.detach()
        self._pending_loss[TRAIN].append((detached, count))
        self._window.append(detached)
        self._window_samples += count
        if is_optimize:
            self._optimizer_step()

    def _valid_batch(self, batch: Any, batch_index: BatchIndex) -> None:
        self.batch = batch
        with self._autocast:
            loss, count = self._loss(self.step(batch, batch_index), batch)
        self._pending_loss[VALID].append((loss.detach(), count))

    def _optimizer_step(self) -> None:
        values = {f"{TRAIN}.{key}": value for key, value in self.schedules.step(self.global_step).items()} \
            if self.schedules.schedules else {}
        window_loss = self._window[0] if len(self._window) == 1 else torch.stack(self._window).mean()
        self._window = []
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms = []
        if self.grad_clip_value is not None:
            norms.append(clip_grad_value(params, self.grad_clip_value))
        if self.grad_clip_norm is not None:
            norms.append(clip_grad_norm(params, self.grad_clip_norm))
        if norms:  # the norm before any clipping: with both, not the one left by clipping by value
            values[f"{TRAIN}.grad_norm"] = norms[0]
        samples, self._window_samples = self._window_samples, 0
        # Model statistics (every track_model_every steps) compare the parameters before and after the step.
        snapshot = ModelSnapshot(self.module) if self.track_model_every and \
            (self.global_step + 1) % self.track_model_every == 0 else None
        # With a scaler, its own check of the unscaled gradients skips the step of a float16 overflow.
        stepped = self._step_optimizer() if self.scaler is not None or self._finite(window_loss, params) else False
        if not stepped:
            self.skipped_steps += 1
            self.tracker.add(self.global_step, {f"{TRAIN}.skipped_steps": self.skipped_steps})
            return
        self.global_step += 1
        self.samples += samples
        if snapshot is not None:
            values.update(model_statistics(snapshot, self.module))
        values[f"{TRAIN}.loss"] = window_loss
        values[SAMPLES_KEY] = self.samples
        self.tracker.add(self.global_step, values)
        self._hook("on_optimizer_step")
        if self.valid_every and self.valid_loader is not None and self.global_step % self.valid_every == 0:
            self._validation_pass()
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self._save_checkpoint()

    def _step_optimizer(self) -> bool:
        """Step the optimizer (through the scaler); return whether the step was taken."""
        if self.scaler is None:
            self.optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # a skipped step halves the scale

    def _finite(self, loss: torch.Tensor, params: list[torch.Tensor]) -> bool:
        """Whether the window's loss and gradients are finite; under ``"raise"``, fail naming what is not.

        One fused pass over every gradient and one read of one flag: the check gradient scalers
        make (``_amp_foreach_non_finite_check_and_unscale_``, scaling by 1 here, which changes nothing).
        """
        if self._found is None or self._found.device != loss.device:
            self._found, self._one = torch.zeros(1, device=loss.device), torch.ones(1, device=loss.device)
        torch._amp_foreach_non_finite_check_and_unscale_([*(p.grad for p in params), loss], self._found, self._one)
        if not self._found.item():
            return True
        self._found.zero_()
        if self.nonfinite == "skip":
            self.log(f"step {self.global_step + 1}: non-finite loss or gradient; the update is skipped")
            return False
        if not bool(torch.isfinite(loss)):
            raise NonFiniteError(f"step {self.global_step + 1}: the loss is {loss.item()} (epoch {self.epoch + 1}); "
                                 f"nonfinite='skip' skips such updates instead")
        name = next(self._names.get(id(p), "?") for p in params if not bool(torch.isfinite(p.grad).all()))
        raise NonFiniteError(f"step {self.global_step + 1}: the gradient of parameter {name!r} is not finite "
                             f"(epoch {self.epoch + 1}); nonfinite='skip' skips such updates instead")

    # -- reporting -----------------------------------------------------------------------

    def _loss(self, result: Loss, batch: Any) -> tuple[torch.Tensor, int | torch.Tensor]:
        if isinstance(result, tuple):
            loss, count = result
        else:
            loss, count = result, self.batch_size(batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            got = f"a tensor of shape {list(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise TypeError(f"Trainer.step returned {got}; expected the batch's mean loss as a 0-d tensor, or "
                            f"(loss, count)")
        return loss, count

    @staticmethod
    def batch_size(batch: Any) -> int:
        """Samples in ``batch`` (the first dimension of its first tensor), weighting a bare loss."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1

    def _fold_losses(self, phase: str) -> Mean:
        """Add the phase's pending ``(loss, count)`` pairs to its mean loss, in one exact float64 sum."""
        pending = self._pending_loss[phase]
        mean = self.phase_loss[phase]
        if pending:
            losses = torch.stack([loss for loss, _ in pending]).double()
            counts = torch.stack([torch.as_tensor(count, device=losses.device) for _, count in pending])
            mean.update((losses * counts).sum() / counts.sum(), counts.sum())
            pending.clear()
        return mean

    def _report(self, phase: str) -> None:
        """Each phase's mean over the epoch so far: its metrics, and (validation) its loss."""
        metrics = dict(self.phase_metrics[phase])
        if phase == VALID:
            metrics["loss"] = self._fold_losses(phase)
        values = {}
        for name, metric in metrics.items():
            sync_metric(metric)
            values.update(_scalars(f"{phase}.{name}", metric.compute()))
        if values:
            self.tracker.add(self.global_step, values, kind="epoch")
            self._latest.update({key: float(value) for key, value in values.items()})

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: ``model`` (its state dict) and the rest (see the module docstring)."""
        self._fold_losses(TRAIN)
        self._fold_losses(VALID)
        rng = rng_state()
        if self.world_size > 1:
            states: list[Any] = [None] * self.world_size
            dist.all_gather_object(states, rng)
            rng = states
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "tracker": self.tracker.state_dict(),
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in self.callbacks],
            "rng": rng,
            "loaders": {phase: loader.state_dict() if hasattr(loader, "state_dict") else None
                        for phase, loader in ((TRAIN, self.train_loader), (VALID, self.valid_loader))},
            "metrics": {phase: {name: m.state_dict() for name, m in {**self.phase_metrics[phase],
                                                                      "loss": self.phase_loss[phase]}.items()}
                        for phase in (TRAIN, VALID)},
            "loop": {"epoch": self.epoch, "global_step": self.global_step, "skipped_steps": self.skipped_steps,
                     "samples": self.samples,
                     "done": dict(self._done), "validating": self._validating,
                     "epoch_started": self._epoch_started, "latest": dict(self._latest)},
            "config": self.config,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the next :meth:`run` continues where the saved one was."""
        if "model" in state:
            self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.tracker.load_state_dict(state["tracker"])
        for callback, saved in zip(self.callbacks, state["callbacks"]):
            if saved is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(saved)
        rng = state["rng"]
        set_rng_state(rng[self.rank] if isinstance(rng, list) else rng)
        for phase, loader in ((TRAIN, self.train_loader), (VALID, self.valid_loader)):
            saved = state["loaders"].get(phase)
            if saved is not None and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(saved)
        for phase in (TRAIN, VALID):
            for name, metric in {**self.phase_metrics[phase], "loss": self.phase_loss[phase]}.items():
                metric.load_state_dict(state["metrics"][phase][name])
            self._pending_loss[phase].clear()
        loop = state["loop"]
        self.epoch, self.global_step, self.skipped_steps = loop["epoch"], loop["global_step"], loop["skipped_steps"]
        self.samples = loop["samples"]
        self._done, self._validating = dict(loop["done"]), loop["validating"]
        self._epoch_started, self._latest = loop["epoch_started"], dict(loop["latest"])

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of now into ``run_dir/checkpoints/step-<global_step>/``; return its path."""
        if self.run_dir is None:
            raise ValueError("Trainer.save_checkpoint: no run_dir was given")
        state = self.state_dict()
        model = state.pop("model")
        del model  # the weights go to model.safetensors, from the module itself
        meta = {"experiment": self.experiment, "epoch": self.epoch, "metrics": dict(self._latest)}
        root = self.run_dir / CHECKPOINTS
        path = save_checkpoint(root, self.global_step, self.module, state, meta)
        prune_checkpoints(root, self.keep_last, self.keep_best, self.best_metric if self.keep_best else None,
                          self.best_mode)
        self.log(f"checkpoint saved to {path}")
        return path

    def resume(self, path: str | Path) -> Path:
        """Load a checkpoint (a ``step-<N>`` folder, or a run folder: its newest checkpoint); return its path.

        The model must fit the checkpoint's weights (see :func:`~cadence.track.checkpoints.load_checkpoint`),
        and the checkpoint must be of this trainer's ``experiment`` when one is set.
        """
        path = Path(path)
        if not (path / "meta.json").is_file():
            found = latest_checkpoint(path / CHECKPOINTS) or latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"no checkpoint in {path}: expected a checkpoints/step-<N>/ folder in it, "
                                        f"or the path of one")
            path = found
        state, _ = load_checkpoint(path, self.module, experiment=self.experiment)
        self.load_state_dict(state)
        self.tracker.truncate(self.global_step)
        return path

    def _save_checkpoint(self) -> None:
        if self.run_dir is not None:
            if self.rank == 0:
                self.save_checkpoint()
            else:
                self.state_dict()  # its gathering of every process's generators needs every process

    # -- internals -------------------------------------------------------------------------

    def _wrap(self, module: nn.Module, compile: bool) -> nn.Module:
        model = module
        if self.world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index or 0] if self.device.type == "cuda" else None)
        return torch.compile(model) if compile else model

    @property
    def _autocast(self) -> contextlib.AbstractContextManager:
        """The context of a step: autocast to bfloat16 or float16, or nothing (one reusable null context)."""
        if self.precision == "32":
            return _NO_CONTEXT
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def _resumed_iterator(self, loader: Iterable, done: int) -> Iterator:
        """An iterator of ``loader`` at batch ``done`` of the epoch: a resumable loader restored by
        :meth:`load_state_dict` starts there; another is advanced past the batches done."""
        iterator = iter(loader)
        if done and not hasattr(loader, "load_state_dict"):
            for _ in range(done):
                next(iterator)
        return iterator

    def _interrupt_signal(self) -> int | None:
        return None if self._interrupts is None else self._interrupts.signal

    def _should_stop(self) -> bool:
        """Whether to stop at this safe point: a signal (in any process) or :meth:`stop`."""
        local = self._interrupt_signal() is not None or self._stop_reason is not None
        if self.world_size == 1:
            return local
        flag = torch.tensor([self._interrupt_signal() or 0, int(self._stop_reason is not None)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag[0] and self._interrupts is not None and self._interrupts.signal is None:
            self._interrupts.signal = int(flag[0])
        if flag[1] and self._stop_reason is None:
            self._stop_reason = "stopped by another process"
        return bool(flag.any())

    def _bind_hooks(self) -> dict[str, list[Callable[[], None]]]:
        """Per hook, what to call: the trainer's own method when a subclass overrides it, then the callbacks'."""
        bound = {}
        for hook in HOOKS:
            calls = []
            if getattr(type(self), hook) is not getattr(Trainer, hook):
                calls.append(getattr(self, hook))
            for callback in self.callbacks:
                method = getattr(callback, hook, None)
                if callable(method):
                    calls.append(lambda method=method: method(self))
            bound[hook] = calls
        return bound

    def _hook(self, name: str) -> None:
        for call in self._hooks[name]:
            call()


def _on(metric: Any, device: torch.device) -> Any:
    """``metric`` with its states on ``device`` (cadence's and torchmetrics' metrics have ``to``), so that every
    process's states are where a sync sums them, even one that never updates them."""
    return metric.to(device) if callable(getattr(metric, "to", None)) else metric


def _scalars(key: str, value: Any) -> dict[str, Any]:
    """A computed value as tracked scalars: itself, or one per element of a tensor (``valid.f1[3]``, a confusion
    matrix's ``valid.confusion[2][5]``)."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return {key: value}
    return {key + "".join(f"[{i}]" for i in index): value[index] for index in itertools.product(*map(range, value.shape))}
