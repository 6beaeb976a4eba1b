"""What every experiment shares: its config's run settings, the prologue of its build, and running it as a run.

Every experiment's config is a :class:`RunConfig` (the trainer's settings and the optimizer)
extended with its own fields. Its ``build`` loads the data and makes the model, between the
two steps every experiment shares: :func:`prepare` (threads, device, process group, seed, the
precision resolved) and :func:`build_trainer` (parameter groups, optimizer, schedules over the
run's length, the optimizer's callbacks, the trainer's options). It returns a :class:`Built`:
the config as it will run and a trainer waiting for its run's context, so that a typo or a
missing data file fails before any run is recorded. :func:`experiment_run` then records the run
(:func:`cadence.track.recorded_run`) and makes the trainer in it.

**Resuming** (``cadence train mnist --resume RUN``) continues a run in the same run record,
from its newest checkpoint, with the config recorded for it. An override that would change
the result (a learning rate, a seed) is refused, naming it; the ones in
:meth:`RunConfig.safe_to_change` (more epochs, say) are accepted and recorded in the run's
config. The store forgets the values recorded after the checkpoint's step, which the resumed
run records again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

import cadence
from cadence.checks import check_number
from cadence.config import ConfigError, apply_overrides, from_dict, to_dict
from cadence.optim import (OptimizerConfig, build_optimizer, build_schedules, optimizer_callbacks, param_groups,
                           reads_run_length)
from cadence.track import RunStore, recorded_run, resolve_runs_dir
from cadence.track.checkpoints import latest_checkpoint
from cadence.track.history import flatten
from cadence.train import Trainer, resolve_device
from cadence.train.distributed import STRATEGIES, from_rank0, init_from_environment, shard_model, world
from cadence.train.optimizer_step import run_steps
from cadence.train.precision import PRECISIONS, check_precision, resolve_precision

if TYPE_CHECKING:
    from cadence.experiments import Experiment

__all__ = ["Built", "RunConfig", "Setup", "build_trainer", "experiment_run", "prepare", "resume_config"]


@dataclass
class RunConfig:
    """The settings every experiment shares (each a ``key=value`` on the command line)."""

    #: Seeds the model's initialisation and the shuffling of the training batches.
    seed: int = 0
    epochs: int = 5
    #: Stop after this many optimizer steps (0: after the epochs); the run ends with a validation pass.
    max_steps: int = 0
    #: Alternations of training and validation slices per epoch.
    inner_iterations: int = 1
    #: Batches whose gradients are averaged into each optimizer step.
    update_batches: int = 1
    #: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:<index> or mps.
    device: str = "auto"
    #: auto (bf16 where the device computes it natively and fast, else 32; the run records which), 32, bf16
    #: (autocast) or fp16 (autocast and a gradient scaler).
    precision: str = "32"
    #: torch.compile the model.
    compile: bool = False
    #: Threads torch may use (0: torch's default).
    num_threads: int = 0
    #: Clip gradients to this global 2-norm before each step (0: no clipping).
    grad_clip_norm: float = 0.0
    #: What a NaN or infinite loss or gradient does: raise, or skip the update.
    nonfinite: str = "raise"
    #: A checkpoint every this many optimizer steps (0: at epoch ends and on interruption only).
    checkpoint_every: int = 0
    #: Checkpoints kept: the newest this many.
    keep_last: int = 3
    #: Seconds a process of a data parallel run waits for the others in a collective before the run ends with an
    #: error (a process stopped or cut off), never a hang.
    dist_timeout: float = 300.0
    #: Several processes: ddp (a replica of the model in each) or fsdp (each holds a shard of every parameter,
    #: gradient and optimizer state: FSDP2). No effect on one process.
    strategy: str = "ddp"
    #: Write checkpoints in the background while training goes on (torch.distributed.checkpoint's async_save);
    #: unset: on under fsdp.
    checkpoint_async: bool | None = None
    #: Give biases, normalization weights and embeddings no weight decay (nanoGPT's and timm's rule).
    no_decay_on_norms_and_biases: bool = True
    #: Write TensorBoard event files into the run's folder (``<run>/tensorboard``, the ``tensorboard`` extra) as it
    #: trains; ``cadence export RUN --format tensorboard`` writes them afterwards from the store instead, at no cost
    #: to training.
    tensorboard: bool = False
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    #: Fields a resumed run may change: they change how long or how it runs, not what it computes.
    SAFE_TO_CHANGE: ClassVar[tuple[str, ...]] = ("epochs", "max_steps", "num_threads", "checkpoint_every",
                                                 "keep_last", "dist_timeout", "strategy", "checkpoint_async",
                                                 "tensorboard")
    #: Overrides that one override implies (see :func:`~cadence.config.apply_overrides`): an optimizer's recipe.
    RECIPES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        where = f"{type(self).__name__}"
        for name in ("epochs", "inner_iterations", "update_batches", "keep_last"):
            check_number(where, name, getattr(self, name), low=1, integer=True)
        for name in ("seed", "max_steps", "num_threads", "checkpoint_every"):
            check_number(where, name, getattr(self, name), low=0, integer=True)
        check_number(where, "grad_clip_norm", self.grad_clip_norm, low=0)
        check_number(where, "dist_timeout", self.dist_timeout, low=0, low_open=True)
        for name, allowed in (("precision", PRECISIONS), ("nonfinite", ("raise", "skip")), ("strategy", STRATEGIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{where}: {name}={getattr(self, name)!r}; expected one of {', '.join(allowed)}")

    def optimizer_steps(self, batches_per_epoch: int) -> int:
        """The optimizer steps of the whole run: ``epochs`` times an epoch's (the last window of an epoch steps even
        when it is short of ``update_batches`` batches), or ``max_steps`` when fewer: the length of a schedule over
        the run."""
        return run_steps(self.epochs, batches_per_epoch, self.update_batches, self.max_steps)

    def safe_to_change(self) -> tuple[str, ...]:
        """The fields a resumed run of this config may change: :attr:`SAFE_TO_CHANGE`, but for the run's length
        (``epochs``, ``max_steps``) when its learning rate follows a schedule laid over that length."""
        fixed = ("epochs", "max_steps") if reads_run_length(self.optimizer) else ()
        return tuple(key for key in self.SAFE_TO_CHANGE if key not in fixed)


@dataclass(frozen=True)
class Setup:
    """What :func:`prepare` made ready: the config as it will run (``precision`` resolved), the device, and this
    process's place in the process group."""

    config: RunConfig
    device: torch.device
    world_size: int
    rank: int

    @property
    def shard(self) -> dict[str, int]:
        """The loaders' ``world_size`` and ``rank``: which part of every epoch this process reads."""
        return {"world_size": self.world_size, "rank": self.rank}

    def per_process(self, name: str, size: int) -> int:
        """This process's part of a global batch of ``size`` (the config's ``name``): ``size / world_size``.

        A config's batch sizes are global, the same run on any number of processes: each loads
        its part of each global batch (:mod:`cadence.data.epochs` shards them so), and together
        they take one process's steps."""
        if size % self.world_size:
            nearest = max(size // self.world_size, 1) * self.world_size
            raise ConfigError(f"{name}={size} is a global batch, shared by {self.world_size} processes: expected a "
                              f"multiple of {self.world_size} (e.g. {name}={nearest})")
        return size // self.world_size


@dataclass(frozen=True)
class Built:
    """An experiment built: its config as it will run, and its trainer, made once given the run's context."""

    config: RunConfig
    #: The trainer, made when called with the run's context (``run=``) and the trainer's display (``console=``).
    trainer: Callable[..., Trainer]


def prepare(config: RunConfig) -> Setup:
    """The prologue of every experiment's build: torch's threads, the device, the process group of a data parallel
    run, the precision resolved for the device (``auto``: the run records which it is) and the seed."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    init_from_environment(device, config.dist_timeout)
    world_size, rank = world()
    config = dataclasses.replace(config, precision=resolve_precision(config.precision, device))
    torch.manual_seed(config.seed)
    return Setup(config, device, world_size, rank)


def build_trainer(setup: Setup, model: nn.Module, train_loader: Sized, valid_loader: Iterable | None, *,
                  trainer: Callable[..., Trainer] = Trainer, callbacks: Sequence[Any] = (), **options: Any) -> Built:
    """The rest of every experiment's build: ``model`` sharded (``strategy=fsdp``, several processes), its parameter
    groups (``no_decay_on_norms_and_biases``), the optimizer and its schedules over the run's length (:meth:`RunConfig.optimizer_steps` of ``train_loader``), its
    callbacks, and ``trainer`` (a :class:`Trainer` class) with the config's options and ``options``, waiting for
    the run's context. ``callbacks`` come after the optimizer's own."""
    config = setup.config
    check_precision(config.precision, setup.device, model)
    if config.strategy == "fsdp":
        shard_model(model.to(setup.device), config.precision)  # before the optimizer, which holds the shards
    steps = config.optimizer_steps(len(train_loader))
    optimizer = build_optimizer(config.optimizer, param_groups(model, config.optimizer.weight_decay)
                                if config.no_decay_on_norms_and_biases else model, model=model, total_steps=steps)
    schedules = build_schedules(config.optimizer, total_steps=steps)
    return Built(config, functools.partial(
        trainer, model, optimizer, train_loader, valid_loader, schedules=schedules,
        callbacks=[*optimizer_callbacks(optimizer), *callbacks], epochs=config.epochs, max_steps=config.max_steps,
        inner_iterations=config.inner_iterations, update_batches=config.update_batches, device=setup.device,
        precision=config.precision, compile=config.compile, grad_clip_norm=config.grad_clip_norm or None,
        nonfinite=config.nonfinite, checkpoint_every=config.checkpoint_every, keep_last=config.keep_last,
        checkpoint_async=config.checkpoint_async, **options))


@contextlib.contextmanager
def experiment_run(name: str, built: Built, *, runs_dir: str | Path | None = None,
                   tracker_options: dict[str, Any] | None = None, run_id: str | None = None, note: str = "",
                   tags: Sequence[str] = (), console: bool = True) -> Iterator[Trainer]:
    """For the ``with`` block, the trainer of experiment ``name`` ``built``, in a recorded run: a new one (with
    ``tags``), or run ``run_id`` continued from its newest checkpoint (``note`` says what changed);
    ``console``: show its progress.

    The run records the config as it runs, and cadence's own code as its provenance. The run ends
    ``finished``, ``failed`` (with the error) or ``interrupted``; its checkpoints are in its folder, and with
    ``tensorboard=true`` its TensorBoard event files (``<run>/tensorboard``). In a data parallel run, rank 0
    records the run and the others learn its id.
    """
    options = {"tensorboard_dir": built.config.tensorboard, **(tracker_options or {})}
    with recorded_run(name, to_dict(built.config), runs_dir=runs_dir, resume=run_id, tags=tags,
                      code=Path(cadence.__file__).parent, **options) as run:
        trainer = built.trainer(run=run, console=console)
        if from_rank0(latest_checkpoint(run.run_dir) is not None):  # every process resumes, or none
            path = trainer.resume(run.run_dir)
            trainer.log(f"resumed run {run.run_id} from {path} (step {trainer.global_step}, epoch {trainer.epoch + 1})"
                        f"{'; ' + note if note else ''}")
        yield trainer


def resume_config(experiment: Experiment, run: str, overrides: list[str], *,
                  runs_dir: str | Path | None = None) -> dict[str, Any]:
    """What resuming run ``run`` of ``experiment`` needs: ``{"config", "run_id", "note"}``.

    The config is the one recorded for the run with ``overrides`` applied; an override of a
    field outside :meth:`RunConfig.safe_to_change` that changes it is refused, naming it. The
    run must be of ``experiment`` and have a checkpoint. ``note`` says what changed.
    """
    with RunStore(resolve_runs_dir(runs_dir)) as store:
        try:
            summary = store.get_run(run)
        except KeyError as e:  # an unknown or ambiguous id: what to type instead
            raise ConfigError(f"--resume {run}: {e.args[0]}") from None
        run_dir = store.run_dir(summary.id)
    if summary.name != experiment.name:
        raise ConfigError(f"--resume {summary.id}: run {summary.id} is a run of {summary.name!r}, not of "
                          f"{experiment.name!r}; resume it with `cadence train {summary.name} --resume {summary.id}`")
    recorded = from_dict(experiment.config, summary.config)
    config = apply_overrides(recorded, overrides)
    before, after = flatten(to_dict(recorded)), flatten(to_dict(config))
    changed = [key for key in after if after[key] != before.get(key)]
    refused = [key for key in changed if key not in recorded.safe_to_change()]
    if refused:
        details = "; ".join(f"{key}: {before.get(key)!r} -> {after[key]!r}" for key in refused)
        raise ConfigError(f"--resume {summary.id}: an override would change what the run computes ({details}); "
                          f"only {', '.join(recorded.safe_to_change())} may change when resuming. Start a "
                          f"new run for another config")
    if latest_checkpoint(run_dir) is None:
        raise FileNotFoundError(f"--resume {summary.id}: run {summary.id} has no checkpoint to resume from (none in "
                                f"{run_dir / 'checkpoints'})")
    note = ", ".join(f"{key}: {before.get(key)!r} -> {after[key]!r}" for key in changed)
    return {"config": config, "run_id": summary.id, "note": note}
