"""The training loop.

An epoch alternates ``inner_iterations`` times between a slice of the training batches and
a slice of the validation batches, as labml does, so that validation figures arrive several
times an epoch. Slice ``i`` of ``n`` batches covers ``[i·n // k, (i+1)·n // k)``: the slices
partition the loader and the last one ends exactly at its end (with more alternations than
batches, some slices are empty and skipped).

Gradients accumulate over ``update_batches`` training batches before each optimizer step.
Each batch's loss is divided by the number of batches in its accumulation window, so the
accumulated gradient is the *mean* over the window: two batches of 32 give the update of
one batch of 64 (normalization statistics aside). A window cut short by the end of the
epoch is divided by its own, smaller, count and still applied.

Everything that counts time counts optimizer steps (:attr:`Trainer.global_step`): the step
of every tracked value, and the schedules of hyper-parameters.

Extend the trainer by overriding :meth:`Trainer.step`, which serves both phases (read
:attr:`Trainer.mode` to tell them apart), or use it as it is with a model, a loss function
and an optimizer.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sized
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cadence.checks import check_number
from cadence.metrics import MeanLoss, Metric
from cadence.optim.helpers.clip import clip_grad_norm, clip_grad_value
from cadence.optim.sophia import gnb_loss
from cadence.optim.helpers.hyperparams_schedule import HyperParameterScheduler
from cadence.schedule import Schedule
from cadence.track import Tracker
from cadence.train.batch_index import BatchIndex
from cadence.train.checkpoint import save_checkpoint
from cadence.train.mode import Mode

TRAIN, VALID = "train", "valid"


class Trainer:
    """Trains ``model`` with ``optimizer`` on ``train_loader``, validating on ``valid_loader``.

    * ``loss_fn(output, target)``: the loss of the default :meth:`step` (batches ``(x, y)``),
    * ``metrics``: metrics updated by the default step as ``metric(output, target)`` (cadence or
      torchmetrics ones); the trainer keeps a copy of each per phase, reported as ``train.<name>``
      and ``valid.<name>``,
    * ``epochs``, ``inner_iterations`` (train/validation alternations per epoch),
      ``update_batches`` (batches accumulated per optimizer step),
    * ``schedules``: group hyper-parameter (``"lr"``, ``"weight_decay"``, ``"betas[0]"``,
      ``"momentum"``) to a schedule of the optimizer step, applied to every group before each
      step and tracked as ``train.<key>``,
    * ``grad_clip_norm`` / ``grad_clip_value``: clip the gradients by global 2-norm or by value
      before each step; the norm before clipping is tracked as ``train.grad_norm``,
    * ``hessian_interval``: for an optimizer with ``update_hessian`` (Sophia), refresh its
      curvature estimate every this many optimizer steps with :meth:`hessian_step`,
    * ``tracker``: where values go (a silent in-memory tracker if not given),
    * ``checkpoint_path``: where the checkpoint (model, optimizer, config, epoch, step) is
      written atomically at the end of every epoch; ``config`` is stored in it,
    * ``device``: where batches are moved before the step.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
                 valid_loader: Iterable | None = None, *, loss_fn: Callable[..., torch.Tensor] | None = None,
                 metrics: Mapping[str, Metric] | None = None, epochs: int = 1, inner_iterations: int = 1,
                 update_batches: int = 1, schedules: Mapping[str, Schedule] | None = None,
                 grad_clip_norm: float | None = None, grad_clip_value: float | None = None,
                 hessian_interval: int = 10,
                 tracker: Tracker | None = None, checkpoint_path: str | Path | None = None,
                 config: Mapping[str, Any] | None = None, device: str | torch.device = "cpu"):
        for name, value in (("epochs", epochs), ("inner_iterations", inner_iterations),
                            ("update_batches", update_batches), ("hessian_interval", hessian_interval)):
            check_number("Trainer", name, value, low=1, integer=True)
        for name, loader in (("train_loader", train_loader), ("valid_loader", valid_loader)):
            if loader is not None and not isinstance(loader, Sized):
                raise TypeError(f"Trainer: {name} of type {type(loader).__name__} has no len(); the trainer "
                                f"slices each epoch by the number of batches")
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.valid_loader = valid_loader
        self.loss_fn = loss_fn
        self.metrics: dict[str, Metric] = {"loss": MeanLoss(), **(metrics or {})}
        self.epochs = epochs
        self.inner_iterations = inner_iterations
        self.update_batches = update_batches
        self.schedules = HyperParameterScheduler(optimizer, schedules or {})
        self.grad_clip_norm = grad_clip_norm
        self.grad_clip_value = grad_clip_value
        self.hessian_interval = hessian_interval
        self.tracker = tracker if tracker is not None else Tracker(console=False)
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.config = dict(config or {})
        self.device = torch.device(device)
        self.mode = Mode()
        self.epoch = 0
        #: Optimizer steps taken so far: the clock of tracking and schedules.
        self.global_step = 0
        #: One copy of every metric per phase; :attr:`metrics` is the current phase's.
        self._phase_metrics = {phase: {name: copy.deepcopy(m) for name, m in self.metrics.items()}
                               for phase in (TRAIN, VALID)}
        self._window_loss: torch.Tensor | None = None

    # -- the part a user overrides -------------------------------------------------------

    def step(self, batch: Any, batch_index: BatchIndex) -> torch.Tensor:
        """Compute the loss of one batch and update the metrics; return the loss.

        Used in both phases (``self.mode.is_train`` tells which). In training the trainer
        scales the returned loss for accumulation, back-propagates it and steps the
        optimizer; override this method to train anything else the same way.
        """
        if self.loss_fn is None:
            raise TypeError("Trainer.step: no loss_fn given; pass loss_fn=... or override step(batch, batch_index)")
        x, y = self.to_device(batch)
        output = self.model(x)
        loss = self.loss_fn(output, y)
        for name, metric in self.metrics.items():
            if name != "loss":
                metric(output, y)
        return loss

    def hessian_step(self, batch: Any) -> None:
        """Refresh the optimizer's curvature estimate on ``batch`` (Sophia's Gauss-Newton-Bartlett step):
        the gradient of the loss on labels sampled from the model's own outputs, then ``update_hessian``."""
        x, _ = self.to_device(batch)
        self.optimizer.zero_grad()
        gnb_loss(self.model(x)).backward()
        self.optimizer.update_hessian(self.batch_size(batch))
        self.optimizer.zero_grad()

    def to_device(self, batch: Any) -> Any:
        """Move a tensor, or a tuple/list/dict of them, to :attr:`device`."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        return batch

    @staticmethod
    def batch_size(batch: Any) -> int:
        """Samples in ``batch`` (the first dimension of its first tensor), weighting the mean loss."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Train for :attr:`epochs` epochs and record how the run ended.

        A failing step marks the run ``failed`` with the error (Ctrl+C: ``interrupted``)
        and re-raises; the last checkpoint written stays intact.
        """
        try:
            self.optimizer.zero_grad()
            for epoch in range(self.epoch, self.epochs):
                self.run_epoch(epoch)
                if self.checkpoint_path is not None:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.tracker.finish("interrupted", "KeyboardInterrupt")
            raise
        except BaseException as e:
            self.tracker.finish("failed", "".join(traceback.format_exception_only(type(e), e)).strip())
            raise
        self.tracker.finish("finished")

    def run_epoch(self, epoch: int) -> None:
        """One epoch: ``inner_iterations`` alternations of a training and a validation slice."""
        self.epoch = epoch
        phases = [(TRAIN, self.train_loader)] + ([(VALID, self.valid_loader)] if self.valid_loader is not None else [])
        iterators = {phase: iter(loader) for phase, loader in phases}
        totals = {phase: len(loader) for phase, loader in phases}
        for phase, _ in phases:
            for metric in self._phase_metrics[phase].values():
                metric.reset()
        k = self.inner_iterations
        for i in range(k):
            for phase, _ in phases:
                n = totals[phase]
                self._run_slice(phase, iterators[phase], i * n // k, (i + 1) * n // k, n)

    def _run_slice(self, phase: str, batches: Iterator, start: int, stop: int, total: int) -> None:
        if start == stop:  # more inner iterations than batches: nothing to run, nothing to show
            return
        is_train = phase == TRAIN
        self._use_metrics(phase)
        self.model.train(is_train)
        self.tracker.start_phase(phase, total=stop - start, epoch=self.epoch + 1)
        with torch.set_grad_enabled(is_train), self.mode.update(is_train=is_train, is_optimize=False):
            for idx in range(start, stop):
                try:
                    batch = next(batches)
                except StopIteration:
                    raise RuntimeError(f"the {phase} loader stopped after {idx} batches but len() said {total}") from None
                batch_index = BatchIndex(idx, total)
                if is_train:
                    self._train_batch(batch, batch_index)
                else:
                    self._count_loss(self.step(batch, batch_index), batch)
                self.tracker.advance()
        self._report(phase)
        self.tracker.end_phase()

    def _train_batch(self, batch: Any, batch_index: BatchIndex) -> None:
        window_start = batch_index.idx - batch_index.idx % self.update_batches
        window = min(self.update_batches, batch_index.total - window_start)
        is_optimize = batch_index.idx == window_start + window - 1
        with self.mode.update(is_optimize=is_optimize):
            loss = self.step(batch, batch_index)
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                raise TypeError(f"Trainer.step returned {type(loss).__name__} in a training phase; expected the "
                                f"loss as a tensor that requires grad")
            (loss / window).backward()
        self._count_loss(loss, batch)
        scaled = loss.detach() / window
        self._window_loss = scaled if self._window_loss is None else self._window_loss + scaled
        if is_optimize:
            self._optimizer_step()
            if hasattr(self.optimizer, "update_hessian") and self.global_step % self.hessian_interval == 0:
                self.hessian_step(batch)

    def _optimizer_step(self) -> None:
        values = {f"{TRAIN}.{key}": value for key, value in self.schedules.step(self.global_step).items()}
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        norms = []
        if self.grad_clip_value is not None:
            norms.append(clip_grad_value(params, self.grad_clip_value))
        if self.grad_clip_norm is not None:
            norms.append(clip_grad_norm(params, self.grad_clip_norm))
        if norms:  # the norm before any clipping: with both, not the one left by clipping by value
            values[f"{TRAIN}.grad_norm"] = norms[0]
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.global_step += 1
        if self.global_step == 1:
            self._report_compilation()
        values[f"{TRAIN}.loss"] = self._window_loss
        self._window_loss = None
        self.tracker.add(self.global_step, values)

    def _report_compilation(self) -> None:
        fused = getattr(self.optimizer, "fused_step", None)
        if fused is not None and fused.compile_seconds > 0:
            self.tracker.log(f"fused optimizer step compiled in {fused.compile_seconds:.1f} s (kept in Inductor's "
                             f"cache for the next runs)")

    def _count_loss(self, loss: torch.Tensor, batch: Any) -> None:
        self.metrics["loss"](loss.detach(), self.batch_size(batch))

    def _use_metrics(self, phase: str) -> None:
        self.metrics = self._phase_metrics[phase]

    def _report(self, phase: str) -> None:
        # Training loss is tracked every optimizer step; the other metrics (and the
        # validation loss) as their running value over the epoch so far.
        self.tracker.add(self.global_step, {f"{phase}.{name}": metric.compute() for name, metric in self.metrics.items()
                                            if not (phase == TRAIN and name == "loss")}, smooth=False)

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: model, optimizer, config, completed epochs and optimizer steps."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "config": self.config, "epoch": self.epoch + 1, "global_step": self.global_step}

    def save_checkpoint(self) -> Path:
        """Write :meth:`state_dict` atomically to :attr:`checkpoint_path`."""
        if self.checkpoint_path is None:
            raise ValueError("Trainer.save_checkpoint: no checkpoint_path was given")
        path = save_checkpoint(self.checkpoint_path, self.state_dict())
        self.tracker.log(f"checkpoint saved to {path}")
        return path
