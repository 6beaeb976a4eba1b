"""Running an experiment as a recorded run: a new one, or one resumed from its newest checkpoint.

Every experiment's config is a :class:`RunConfig` (the trainer's settings, shared) extended
with its own fields. A run is created in the run store once the experiment is built (a typo
or missing data leaves no run behind), its checkpoints go to its folder, and its values to
the store.

**Resuming** (``cadence train mnist --resume RUN``) continues a run in the same run record,
from its newest checkpoint, with the config recorded for it. An override that would change
the result (a learning rate, a seed) is refused, naming it; the ones in
:attr:`RunConfig.SAFE_TO_CHANGE` (more epochs, say) are accepted and recorded in the run's
config. The store forgets the values recorded after the checkpoint's step, which the resumed
run records again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch.distributed as dist

from cadence.checks import check_number
from cadence.config import ConfigError, apply_overrides, from_dict, to_dict
from cadence.track import RunStore, Tracker
from cadence.train import Trainer
from cadence.track.checkpoints import CHECKPOINTS, latest_checkpoint
from cadence.train.distributed import world

if TYPE_CHECKING:
    from cadence.experiments import Experiment

__all__ = ["RunConfig", "resolve_runs_dir", "resume_config", "train_as_run", "trainer_options"]


@dataclass
class RunConfig:
    """The trainer's settings, shared by every experiment's config (each ``key=value`` on the command line)."""

    #: Seeds the model's initialisation and the shuffling of the training batches.
    seed: int = 0
    epochs: int = 5
    #: Alternations of training and validation slices per epoch.
    inner_iterations: int = 1
    #: Batches whose gradients are averaged into each optimizer step.
    update_batches: int = 1
    #: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:<index> or mps.
    device: str = "auto"
    #: 32, bf16 (autocast) or fp16 (autocast and a gradient scaler).
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

    #: Fields a resumed run may change: they change how long or how it runs, not what it computes.
    SAFE_TO_CHANGE: ClassVar[tuple[str, ...]] = ("epochs", "num_threads", "checkpoint_every", "keep_last")
    #: Overrides that one override implies (see :func:`~cadence.config.apply_overrides`): an optimizer's recipe.
    RECIPES: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        where = f"{type(self).__name__}"
        for name in ("epochs", "inner_iterations", "update_batches", "keep_last"):
            check_number(where, name, getattr(self, name), low=1, integer=True)
        for name in ("seed", "num_threads", "checkpoint_every"):
            check_number(where, name, getattr(self, name), low=0, integer=True)
        check_number(where, "grad_clip_norm", self.grad_clip_norm, low=0)
        for name, allowed in (("precision", ("32", "bf16", "fp16")), ("nonfinite", ("raise", "skip"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{where}: {name}={getattr(self, name)!r}; expected one of {', '.join(allowed)}")

    def optimizer_steps(self, batches_per_epoch: int) -> int:
        """The optimizer steps of the whole run: ``epochs`` times an epoch's, where the last window of an epoch
        steps even when it is short of ``update_batches`` batches (the length of a schedule over the run)."""
        return self.epochs * -(-batches_per_epoch // self.update_batches)

    def safe_to_change(self) -> tuple[str, ...]:
        """The fields a resumed run of this config may change (:attr:`SAFE_TO_CHANGE`, unless the config makes
        one of them change the result)."""
        return self.SAFE_TO_CHANGE


def trainer_options(config: RunConfig) -> dict[str, Any]:
    """The :class:`~cadence.train.Trainer` arguments a :class:`RunConfig` sets."""
    return {"epochs": config.epochs, "inner_iterations": config.inner_iterations,
            "update_batches": config.update_batches, "device": config.device, "precision": config.precision,
            "compile": config.compile, "grad_clip_norm": config.grad_clip_norm or None,
            "nonfinite": config.nonfinite, "checkpoint_every": config.checkpoint_every,
            "keep_last": config.keep_last}


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs directory: the argument, else ``CADENCE_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get("CADENCE_RUNS") or "runs")


def train_as_run(name: str, config: Any, trainer: Trainer, *, runs_dir: str | Path | None = None,
                 tracker_options: dict[str, Any] | None = None, run_id: str | None = None, note: str = "",
                 tags: Sequence[str] = ()) -> str:
    """Train ``trainer`` as a run of experiment ``name``: a new run, or run ``run_id`` resumed; return the run id.

    Call it once the data and model are ready, so that a typo or a missing data file leaves
    no run behind. The run ends ``finished``, ``failed`` (with the error) or ``interrupted``
    (:attr:`Trainer.status`); its checkpoints are written to the run's folder. In a data
    parallel run, rank 0 creates and records the run (with its provenance and ``tags``) and the
    others learn its id. ``note`` is shown when the run resumes (what changed).
    """
    world_size, rank = world()
    resolved = to_dict(config)
    runs = resolve_runs_dir(runs_dir)
    # Only rank 0 touches the run store; the others learn the run's id from it.
    with RunStore(runs) if rank == 0 else contextlib.nullcontext() as store:
        if store is not None:
            if run_id is None:
                run_id = store.create_run(name, resolved, tags=tags)  # and its provenance
            else:
                store.update_config(run_id, resolved)
            trainer.tracker = Tracker(store=store, run_id=run_id, **(tracker_options or {}))
        else:
            trainer.tracker = Tracker(console=False)
        if world_size > 1:
            shared = [run_id]
            dist.broadcast_object_list(shared, src=0)
            run_id = shared[0]
        trainer.run_dir = runs / run_id
        trainer.experiment, trainer.config = name, resolved
        try:
            if latest_checkpoint(trainer.run_dir / CHECKPOINTS) is not None:
                path = trainer.resume(trainer.run_dir)
                trainer.log(f"resumed run {run_id} from {path} (step {trainer.global_step}, epoch {trainer.epoch + 1})"
                            f"{'; ' + note if note else ''}")
            trainer.run()
        finally:
            trainer.tracker.close()
    return run_id


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
        root = store.run_dir(summary.id) / CHECKPOINTS
    if summary.name != experiment.name:
        raise ConfigError(f"--resume {summary.id}: run {summary.id} is a run of {summary.name!r}, not of "
                          f"{experiment.name!r}; resume it with `cadence train {summary.name} --resume {summary.id}`")
    recorded = from_dict(experiment.config, summary.config)
    config = apply_overrides(recorded, overrides)
    before, after = _flat(to_dict(recorded)), _flat(to_dict(config))
    changed = [key for key in after if after[key] != before.get(key)]
    refused = [key for key in changed if key not in recorded.safe_to_change()]
    if refused:
        details = "; ".join(f"{key}: {before.get(key)!r} -> {after[key]!r}" for key in refused)
        raise ConfigError(f"--resume {summary.id}: an override would change what the run computes ({details}); "
                          f"only {', '.join(recorded.safe_to_change())} may change when resuming. Start a "
                          f"new run for another config")
    if latest_checkpoint(root) is None:
        raise FileNotFoundError(f"--resume {summary.id}: run {summary.id} has no checkpoint to resume from (none in "
                                f"{root})")
    note = ", ".join(f"{key}: {before.get(key)!r} -> {after[key]!r}" for key in changed)
    return {"config": config, "run_id": summary.id, "note": note}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
