"""The trainer: a loop over epochs, slices and batches, and the parts it is made of.

The loop (:meth:`Trainer.run`) reads top to bottom: run → epoch → slice → batch, where a
training batch is forward (:meth:`Trainer.step`), backward, and after the last batch of an
accumulation window the optimizer step. The rest is parts, each in its own module (see
ARCHITECTURE.md, "The trainer's parts"): :class:`~cadence.train.optimizer_step.OptimizerStep`,
:class:`~cadence.train.phase_metrics.PhaseMetrics`, :class:`~cadence.train.position.LoopPosition`,
:class:`~cadence.train.phase_clock.PhaseClock` (the loop marks where each phase's time goes),
:class:`~cadence.train.checkpointer.Checkpointer`, the hooks (:mod:`cadence.train.callbacks`),
and the run's context given to it (:class:`~cadence.track.RunContext`).

**An epoch** alternates ``inner_iterations`` times between a slice of the training batches and
a slice of the validation batches, as labml does (slice ``i`` of ``n`` batches covers
``[i·n // k, (i+1)·n // k)``); or, with ``valid_every=N``, a whole validation pass follows
every ``N``-th optimizer step. **The clock** is :attr:`Trainer.global_step`, the optimizer
steps taken; a step the gradient scaler or ``nonfinite="skip"`` skips is not taken.

**Stopping.** A signal (Ctrl+C, SIGTERM) stops the loop at its next safe point, after an
optimizer step or any validation batch (a validation pass cut short is not reported; a resumed
run finishes it). :meth:`Trainer.stop` and ``max_steps`` stop it after an optimizer step or a
whole validation slice, never within one. A checkpoint is saved; every process stops together.
**No host read per step** with the defaults but the non-finite flag, every 20 optimizer steps
at most (ARCHITECTURE.md lists the options that read per step).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from cadence.checks import check_number
from cadence.optim.fused import vector_width_option
from cadence.schedule import Schedule
from cadence.track import PhaseDisplay, RunContext
from cadence.track.run_context import ended_by
from cadence.track.checkpoints import CHECKPOINTS, checkpoint_path
from cadence.train.batch_index import BatchIndex, loader_padding, loss_and_count
from cadence.train.callbacks import Hooks, TrainerHooks
from cadence.train.checkpointer import Attributes, Checkpointer, Each
from cadence.train.device import resolve_device, to_device
from cadence.train.distributed import StopAgreement, data_parallel, explained, world
from cadence.train.interrupt import Interrupts
from cadence.train.mode import Mode
from cadence.train.optimizer_step import OptimizerStep
from cadence.train.phase_clock import CHECKPOINT, COMPUTE, OPTIMIZER, OTHER, TRACKING, PhaseClock
from cadence.train.phase_metrics import PhaseMetrics
from cadence.train.position import TRAIN, VALID, LoopPosition
from cadence.train.precision import autocast, check_precision, resolve_precision
from cadence.train.rng import RandomGenerators

_END = object()

Loss = torch.Tensor | tuple[torch.Tensor, int | torch.Tensor]


class Trainer(TrainerHooks):
    """Trains ``model`` with ``optimizer`` on ``train_loader``, validating on ``valid_loader``.

    The work of a batch: ``loss_fn(output, target)``, the loss of the default :meth:`step` (batches
    ``(x, y)``); ``metrics``, name to metric (cadence's or torchmetrics'), updated by the default step
    as ``metric(output, target)``, one copy per phase, reported as ``train.<name>`` and
    ``valid.<name>`` (each phase's mean over the epoch so far).

    The loop: ``epochs``; ``max_steps`` (stop after this many optimizer steps, 0: no limit; a
    validation pass of the model as it stands ends the run); ``inner_iterations`` (train/validation
    alternations per epoch) or ``valid_every`` (a whole validation pass every this many optimizer
    steps); ``update_batches``, ``schedules``, ``lr_scheduler`` / ``lr_scheduler_every``,
    ``grad_clip_norm``, ``grad_clip_value``, ``nonfinite``, ``scaler``: the optimizer step's
    (:class:`~cadence.train.optimizer_step.OptimizerStep`); ``precision`` (``"auto"``, ``"32"``,
    ``"bf16"``, ``"fp16"``: :mod:`cadence.train.precision`); ``compile`` (``torch.compile`` the
    model); ``device`` (``"auto"``: CUDA, else MPS, else CPU); ``callbacks``, objects with some of
    the hooks' names (:mod:`cadence.train.callbacks`).

    The run: ``run``, its :class:`~cadence.track.RunContext` (a folder path: checkpoints there, values recorded
    nowhere; ``None``: neither), told how many optimizer steps it plans (readers estimate its time left);
    ``console`` (show progress, on standard error or the rich ``Console`` given); ``track_model_every`` (every
    this many steps, each layer's parameter norm, gradient norm and update ratio); checkpoints every
    ``checkpoint_every`` optimizer steps (0: never), at each epoch's end and when stopped, keeping the
    ``keep_last`` newest and the ``keep_best`` best by ``best_metric`` (``best_mode`` ``"min"`` or ``"max"``),
    written in the background with ``checkpoint_async`` (default: when the model is sharded by FSDP:
    :func:`~cadence.train.distributed.shard_model`, before the optimizer is made).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
                 valid_loader: Iterable | None = None, *, loss_fn: Callable[..., torch.Tensor] | None = None,
                 metrics: Mapping[str, Any] | None = None, epochs: int = 1, max_steps: int = 0,
                 inner_iterations: int = 1, valid_every: int = 0, update_batches: int = 1,
                 schedules: Mapping[str, Schedule] | None = None, lr_scheduler: Any = None,
                 lr_scheduler_every: str = "step", grad_clip_norm: float | None = None,
                 grad_clip_value: float | None = None, nonfinite: str = "raise", precision: str = "32",
                 scaler: Any = None, compile: bool = False, device: str | torch.device | None = "auto",
                 callbacks: Sequence[Any] = (), run: RunContext | str | Path | None = None,
                 console: bool | Console = True,
                 track_model_every: int = 0, checkpoint_every: int = 0, keep_last: int = 3, keep_best: int = 0,
                 best_metric: str = "valid.loss", best_mode: str = "min", checkpoint_async: bool | None = None):
        _check_arguments(locals())
        self.device = resolve_device(device)
        #: The precision the run computes in: ``"auto"`` resolved for :attr:`device`.
        self.precision = resolve_precision(precision, self.device)
        check_precision(self.precision, self.device, model)
        self.world_size, self.rank = world()
        #: The user's model, unwrapped (nanoGPT's ``raw_model``): its parameters, its state dict.
        self.raw_model = model.to(self.device)
        #: The model a step calls: the raw model, wrapped for data parallel training and compiled as asked (naming
        #: Inductor's vector width: see cadence.optim.fused.vector_width_option).
        self.model = data_parallel(self.raw_model, self.device)
        if compile:
            self.model = torch.compile(self.model, options=vector_width_option() or None)
        self.optimizer = optimizer
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.loss_fn = loss_fn
        self.epochs, self.max_steps = epochs, max_steps
        self.inner_iterations, self.valid_every = inner_iterations, valid_every
        self.callbacks = list(callbacks)
        #: The run's context: its tracker, folder, experiment and config.
        self.run_context = run if isinstance(run, RunContext) else RunContext(run_dir=run)
        self.tracker = self.run_context.tracker
        self.run_dir = self.run_context.run_dir
        self.display = PhaseDisplay(self.tracker, console if isinstance(console, Console) else None) \
            if console is not False and self.rank == 0 else None
        self.mode = Mode()
        self.position = LoopPosition()
        scaler = scaler if scaler is not None or self.precision != "fp16" else torch.amp.GradScaler(self.device.type)
        self.optimizer_step = OptimizerStep(
            optimizer, update_batches=update_batches, schedules=schedules, lr_scheduler=lr_scheduler,
            lr_scheduler_every=lr_scheduler_every, grad_clip_norm=grad_clip_norm, grad_clip_value=grad_clip_value,
            nonfinite=nonfinite, scaler=scaler, names={id(p): n for n, p in self.raw_model.named_parameters()},
            check_seconds=self.tracker.flush_seconds if self.world_size == 1 else 0.0,
            statistics_every=track_model_every, model=self.raw_model, log=self.log)
        self._metrics = dict(metrics or {})
        self.phase_metrics = PhaseMetrics(self._metrics, self.device, (TRAIN, VALID))
        #: Where each phase's wall time goes (``train.time.data``, ...; on a GPU, one batch of 50 timed).
        self.clock = PhaseClock.for_device(self.device, (TRAIN, VALID), self.world_size)
        self.checkpoint_every = checkpoint_every
        #: The batch in progress, as the loader gave it (:meth:`to_device` moves it), and where it stands.
        self.batch: Any = None
        self.batch_index: BatchIndex | None = None
        #: How the last :meth:`run` ended (``"finished"``, ``"interrupted"``), and the signal that stopped it.
        self.status: str | None = None
        self.stopped_by: int | None = None
        self._active: dict[str, Any] = self.phase_metrics[TRAIN]
        self._registered: list[str] = []
        self._stop_reason: str | None = None
        self._interrupts: Interrupts | None = None
        self._agreement = StopAgreement() if self.world_size > 1 else None
        self._saved_at: tuple[Any, ...] | None = None
        self._hook = Hooks(self, TrainerHooks, self.callbacks)
        loaders = Each({phase: loader for phase, loader in ((TRAIN, train_loader), (VALID, valid_loader)) if loader})
        #: The checkpoints of every stateful part of the run, in the run's folder (written only with one).
        self.checkpointer = Checkpointer(
            self.run_dir / CHECKPOINTS if self.run_dir is not None else None, self.raw_model,
            optimizer=optimizer,
            parts={"optimizer_step": self.optimizer_step, "position": self.position, "tracker": self.tracker,
                   "callbacks": Each(self.callbacks), "loaders": loaders},
            per_process={"rng": RandomGenerators(), "metrics": self.phase_metrics,
                         "state": Attributes(self, self._registered, self.device)},
            keep_last=keep_last, keep_best=keep_best, best_metric=best_metric, best_mode=best_mode,
            experiment=self.run_context.experiment, config=self.run_context.config, async_save=checkpoint_async)
        self._own = set(self.__dict__)

    # -- the parts a user overrides: step, and the hooks (TrainerHooks) ----------------------

    def step(self, batch: Any, batch_index: BatchIndex) -> Loss:
        """Compute the loss of one batch and update the metrics; return the loss, or ``(loss, count)``.

        ``count`` is the number of samples (or tokens) the loss is the mean over, which weights
        the phase's mean loss; the default step returns the target's element count. A bare loss
        is weighted by the first dimension of the batch's first tensor. Used in every phase
        (``self.mode.is_train`` tells training apart); in training the trainer back-propagates
        the loss and steps the optimizer. In a data parallel validation, the last
        ``batch_index.padding`` rows repeat other processes' samples: the loss and metrics leave them out.
        """
        if self.loss_fn is None:
            raise TypeError("Trainer.step: no loss_fn given; pass loss_fn=... or override step(batch, batch_index)")
        x, y = self.to_device(batch)
        output = self.model(x)
        if batch_index.padding:  # repeated rows: every sample counts once (the forward ran: under FSDP, a collective)
            output, y = output[:-batch_index.padding], y[:-batch_index.padding]
        loss = self.loss_fn(output, y) if len(y) else output.sum() * 0
        for metric in self.metrics.values():
            metric.update(output, y)
        return loss, y.numel()

    # -- what steps and hooks use ----------------------------------------------------------

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far: the clock of tracking, schedules and checkpoints."""
        return self.optimizer_step.taken

    @property
    def epoch(self) -> int:
        """The epoch in progress, from 0."""
        return self.position.epoch

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics of the phase in progress, for :meth:`step` to update."""
        return self._active

    def register_state(self, name: str, value: Any = None) -> None:
        """Set attribute ``name`` to ``value`` and keep it in every checkpoint, each process its own: the state a
        custom step carries (an LSTM's hidden state), a counter. Tensors, numbers, strings and containers of
        them; a resumed run gets its values back (tensors on :attr:`device`)."""
        if not name.isidentifier() or hasattr(Trainer, name) or name in self._own:
            raise ValueError(f"Trainer.register_state: {name!r} is not a free attribute name; expected a new "
                             f"identifier (not one of the trainer's own attributes)")
        setattr(self, name, value)
        if name not in self._registered:
            self._registered.append(name)

    def to_device(self, batch: Any) -> Any:
        """Move a tensor, or a tuple/list/dict of them, to :attr:`device`."""
        return to_device(batch, self.device)

    def log(self, message: str) -> None:
        """Show a one-line message (on rank 0, with a console)."""
        if self.display is not None:
            self.display.log(message)

    def latest(self, key: str) -> float:
        """The last value tracked as ``key`` (``"valid.loss"``, ``"train.loss"``), read by callbacks such as early
        stopping; ``tracker.shown(key)`` gives a moving key's average."""
        return self.tracker.latest(key)

    def stop(self, reason: str) -> None:
        """End the run at the next optimizer step or validation's end, as finished, with ``reason`` shown."""
        self._stop_reason = reason

    @torch.no_grad()
    def evaluate(self, loader: Iterable, phase: str = "test") -> dict[str, float]:
        """The model's metrics and mean loss over every batch of ``loader`` (in evaluation mode, without gradients),
        as ``{name: value}``; tracked as ``<phase>.<name>`` at :attr:`global_step`. Outside :meth:`run` too: a
        test split, a checkpoint just resumed."""
        metrics = PhaseMetrics(self._metrics, self.device, (phase,))
        saved, was_training = (self.position.phase, self._active), self.model.training
        self.position.phase, self._active = phase, metrics[phase]
        self.model.eval()
        try:
            with self.mode.update(is_train=False, is_optimize=False):
                for idx, batch in enumerate(loader):
                    self.batch, self.batch_index = batch, BatchIndex(idx, len(loader), loader_padding(loader, idx))
                    self._eval_batch(metrics, phase)
        finally:
            self.position.phase, self._active = saved
            self.model.train(was_training)
        values = metrics.values(phase)
        self.tracker.add(self.global_step, values, kind="epoch")
        self.tracker.flush()
        return {key[len(phase) + 1:]: self.tracker.latest(key) for key in values}

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> str:
        """Train until :attr:`epochs` or ``max_steps`` are done, :meth:`stop` is called, or a signal interrupts;
        return ``"finished"`` or ``"interrupted"`` (after saving a checkpoint, with a run folder).

        A failing step marks the run ``failed`` with the error and re-raises; a second Ctrl+C marks it
        ``interrupted`` and raises ``KeyboardInterrupt``. Checkpoints already written are never touched.
        """
        self.status = None
        with Interrupts(notify=self.log) as interrupts:
            self._interrupts = interrupts
            try:
                self.tracker.declare("train.loss", "moving")
                self.clock.start(self.optimizer_step.samples)
                self.tracker.plan(self.optimizer_step.run_steps(self.epochs, len(self.train_loader), self.max_steps))
                self._hook("on_run_start")
                while not self._finished() and not self._should_stop():
                    self._run_epoch()
                self.optimizer_step.check()
                self.status = "interrupted" if interrupts.signal is not None else "finished"
                if self.status == "finished" and self._stop_reason is not None:
                    self.log(self._stop_reason)
                if self.status == "interrupted" or self._stop_reason is not None:
                    self._save_checkpoint()
                self.checkpointer.finish()
                self._hook("on_run_end")
            except BaseException as e:
                said = explained(e)  # a collective's timeout said plainly
                self.tracker.finish(*ended_by(said))
                if said is not e:
                    raise said from e
                raise
            finally:
                self._interrupts = None
                if self.display is not None:
                    self.display.close()
        self.stopped_by = interrupts.signal
        stopped = interrupts.signal and f"{signal.Signals(interrupts.signal).name}: stopped at step {self.global_step}"
        if stopped:
            self.tracker.event(self.global_step, "interrupted", stopped)
        self.tracker.finish(self.status, stopped or None)
        self.log(" ".join(part for part in ("run", self.run_context.run_id, self.status) if part))
        return self.status

    def _run_epoch(self) -> None:
        if self.position.start_epoch():
            self.phase_metrics.reset(TRAIN)
            self.phase_metrics.reset(VALID)
            self._hook("on_epoch_start")
        train = self.position.batches(self.train_loader, TRAIN)
        if self.position.validating and not self._validation_pass():  # resumed within a whole pass
            return
        k, n = self.inner_iterations, len(self.train_loader)
        for i in range(k):
            if not self._run_slice(TRAIN, train, (i + 1) * n // k) or self._stopping():
                return
            if self.valid_loader is not None and not self.valid_every:
                stop = (i + 1) * len(self.valid_loader) // k
                if self.position.done[VALID] < stop:
                    self._hook("sample")
                    if not self._run_slice(VALID, self.position.batches(self.valid_loader, VALID), stop):
                        return
                    if self._stopping():
                        return
        self.position.end_epoch()
        self.optimizer_step.end_epoch()
        self._hook("on_epoch_end")
        self._save_checkpoint()

    def _run_slice(self, phase: str, batches: Iterator, stop: int) -> bool:
        """Batches ``done..stop`` of ``phase``; return whether the slice ran to its end (not cut by a signal, or
        by a stop at an optimizer step)."""
        start, total = self.position.done[phase], len(self.train_loader if phase == TRAIN else self.valid_loader)
        if start >= stop:  # done before a resume, or more inner iterations than batches
            return True
        is_train = phase == TRAIN
        self.position.phase, self._active = phase, self.phase_metrics[phase]
        self.model.train(is_train)
        self.clock.enter(phase)
        if self.display is not None:
            self.display.start_phase(phase, total=total, epoch=self.epoch + 1, done=start)
        ended = True
        with torch.set_grad_enabled(is_train), self.mode.update(is_train=is_train, is_optimize=False):
            for idx in range(start, stop):
                self.clock.batch()
                batch = next(batches, _END)
                if batch is _END:
                    raise RuntimeError(f"the {phase} loader stopped after {idx} batches but len() said {total}")
                self.clock.to(COMPUTE)
                self.position.done[phase] = idx + 1  # taken from the loader, as the loader's own position counts it
                self.batch, self.batch_index = batch, BatchIndex(idx, total, 0 if is_train else
                                                                 loader_padding(self.valid_loader, idx))
                stepped = self._train_batch() if is_train else self._eval_batch(self.phase_metrics, VALID)
                self.clock.to(TRACKING)
                if self.display is not None:
                    self.display.advance()
                self.clock.to(OTHER)
                if (stepped and self._stopping()) or (not is_train and self._should_stop(signals_only=True)):
                    ended = idx + 1 == stop
                    break
        self.position.phase, self._active = TRAIN, self.phase_metrics[TRAIN]
        with self.clock.timed(TRACKING):
            if is_train or ended:  # the phase's metrics and where its time went, over its pass so far
                times = self.clock.report(phase, self.optimizer_step.samples if is_train else None,
                                          restart=self.position.done[phase] == total)
                self.tracker.add(self.global_step, {**self.phase_metrics.values(phase, loss=not is_train), **times},
                                 kind="epoch")
            if self.display is not None:
                self.display.end_phase()
        self.clock.leave()
        if not is_train and ended:
            self._hook("on_validation_end")
        return ended

    def _train_batch(self) -> bool:
        """Forward, backward, and, after the last batch of a window, the optimizer step; return whether it stepped."""
        self.mode.is_optimize = self.optimizer_step.ends_window(self.batch_index)
        with autocast(self.precision, self.device):
            loss, count = loss_and_count(self.step(self.batch, self.batch_index), self.batch)
        if not loss.requires_grad:
            raise TypeError("Trainer.step returned a loss that does not require grad in a training phase; "
                            "expected the loss of the batch, computed with autograd")
        self.optimizer_step.backward(loss, count, self.batch_index)
        self.phase_metrics.add_loss(TRAIN, loss, count)
        if not self.mode.is_optimize:
            return False
        self.clock.to(OPTIMIZER)
        values = self.optimizer_step.step()
        if values is None:  # skipped: nothing moves
            self.tracker.add(self.global_step, {"train.skipped_steps": self.optimizer_step.skipped})
            return False
        self.clock.to(TRACKING)
        self.tracker.add(self.global_step, values)
        self.clock.to(OTHER)
        self._hook("on_optimizer_step")
        if self.valid_every and self.valid_loader is not None and self.global_step % self.valid_every == 0:
            self._validation_pass()
        if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
            self._save_checkpoint()
        return True

    def _eval_batch(self, metrics: PhaseMetrics, phase: str) -> bool:
        """Forward only, the loss into ``phase``'s mean in ``metrics``; never an optimizer step."""
        with autocast(self.precision, self.device):
            loss, count = loss_and_count(self.step(self.batch, self.batch_index), self.batch)
        metrics.add_loss(phase, loss, count)
        return False

    def _validation_pass(self) -> bool:
        """A whole validation pass (``valid_every``, and at ``max_steps``), its metrics afresh unless resumed within
        it; a training slice in progress is shown again after it. Return whether it ran to its end."""
        within = self.display is not None and self.display.in_phase()
        if within:
            self.display.end_phase()
        if self.position.start_validation():
            self.phase_metrics.reset(VALID)
        self._hook("sample")
        total = len(self.valid_loader)
        ended = self._run_slice(VALID, self.position.batches(self.valid_loader, VALID), total)
        self.position.validating = not ended
        self.model.train(True)
        if within:
            self.display.start_phase(TRAIN, total=len(self.train_loader), epoch=self.epoch + 1,
                                     done=self.position.done[TRAIN])
        return ended

    def _finished(self) -> bool:
        return self.epoch >= self.epochs or 0 < self.max_steps <= self.global_step

    def _stopping(self) -> bool:
        """At a safe point after an optimizer step or a validation slice: whether to stop here. At ``max_steps``, a
        validation pass of the model as it ends (unless one ended at this step) comes first."""
        if 0 < self.max_steps <= self.global_step and self._stop_reason is None:
            self._stop_reason = f"max_steps={self.max_steps} reached"
            if self.valid_loader is not None and not (self.valid_every and self.global_step % self.valid_every == 0):
                self._validation_pass()
        return self._should_stop()

    def _should_stop(self, signals_only: bool = False) -> bool:
        """Whether to stop at this safe point: for a signal, or (unless ``signals_only``) :meth:`stop`; every process
        agreeing."""
        signum = self._interrupts.signal if self._interrupts is not None else None
        stop = not signals_only and self._stop_reason is not None
        if self._agreement is not None:
            signum, stop = self._agreement.agree(signum, stop)
            if signum and self._interrupts is not None and self._interrupts.signal is None:
                self._interrupts.signal = signum
            if stop and self._stop_reason is None:
                self._stop_reason = "stopped by another process"
        return signum is not None or stop

    # -- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of now into ``run_dir/checkpoints/step-<global_step>/``; return its path (on rank 0).
        Every process calls it (each saves its own random generators, metrics and registered state)."""
        if self.run_dir is None:
            raise ValueError("Trainer.save_checkpoint: the run has no folder; pass run=RunContext(run_dir=...)")
        self.optimizer_step.check()  # a checkpoint never holds a non-finite state
        metrics = {key: value for key, value in self.tracker.snapshot().items() if self.tracker.kind(key) != "value"}
        path = self.checkpointer.save(self.global_step, {"epoch": self.epoch, "metrics": metrics})
        self._saved_at = self._where()
        if path is not None:
            self.log(f"checkpoint {'being written to' if self.checkpointer.async_save else 'saved to'} {path}")
        return path

    def resume(self, path: str | Path) -> Path:
        """Restore a checkpoint (a ``step-<N>`` folder, or a run folder: its newest); return its path.

        The model must fit the checkpoint's weights and the checkpoint be of the run's experiment when
        one is set (of any number of processes); the values the run recorded after it are dropped.
        """
        path = checkpoint_path(path)
        self.checkpointer.load(path)
        self.tracker.truncate(self.global_step)
        self.tracker.event(self.global_step, "resumed", f"from {path.name} (epoch {self.epoch + 1})")
        return path

    def _save_checkpoint(self) -> None:
        """A checkpoint, when the run has a folder and the last one is not of this very point already."""
        if self.run_dir is not None and self._saved_at != self._where():
            with self.clock.timed(CHECKPOINT):
                self.save_checkpoint()

    def _where(self) -> tuple[Any, ...]:
        return self.global_step, self.optimizer_step.skipped, tuple(self.position.state_dict().values())


def _check_arguments(arguments: Mapping[str, Any]) -> None:
    """The loop's arguments checked where they enter, each error naming the argument and what was expected (the
    parts check their own)."""
    for name in ("epochs", "inner_iterations", "max_steps", "valid_every", "checkpoint_every"):
        check_number("Trainer", name, arguments[name], low=int(name in ("epochs", "inner_iterations")), integer=True)
    if arguments["valid_every"] and arguments["inner_iterations"] > 1:
        raise ValueError(f"Trainer: valid_every={arguments['valid_every']} and "
                         f"inner_iterations={arguments['inner_iterations']}; validate by one of them (valid_every "
                         f"counts optimizer steps, inner_iterations slices epochs)")
    for name in ("train_loader", "valid_loader"):
        loader = arguments[name]
        if loader is not None and not isinstance(loader, Sized):
            raise TypeError(f"Trainer: {name} of type {type(loader).__name__} has no len(); the trainer slices each "
                            f"epoch by the number of batches")
