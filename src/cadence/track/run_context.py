"""A run's context, and recording a run from Python in one call.

A trainer is given the context of the run it trains (:class:`RunContext`): the tracker its
values go to, the run's folder (its checkpoints, its samples), and what the run is (the
experiment's name and config, stored with every checkpoint). :func:`recorded_run` makes the
context of a run recorded in the run store, the way ``cadence train`` records one::

    from cadence.track import recorded_run
    from cadence.train import Trainer

    with recorded_run("char-lm", config={"lr": 3e-3, "epochs": 10}) as run:
        trainer = Trainer(model, optimizer, train_loader, valid_loader, run=run, epochs=10)
        trainer.run()

The run is then listed by ``cadence runs`` with its config, provenance, values and status,
and its checkpoints are in ``runs/<run id>/checkpoints/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist

from cadence.track.provenance import collect_provenance
from cadence.track.store import RunStore
from cadence.track.tracker import Tracker

__all__ = ["RUNS_ENV", "RUN_ID_ENV", "RunContext", "ended_by", "recorded_run", "resolve_runs_dir"]

#: The environment variable naming the runs directory.
RUNS_ENV = "CADENCE_RUNS"
#: The environment variable by which the launcher of a run's processes names the run: rank 0 creates it under this
#: id, or joins it when it exists (the processes were started again after one of them died).
RUN_ID_ENV = "CADENCE_RUN_ID"


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs directory: the argument, else ``$CADENCE_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get(RUNS_ENV) or "runs")


def ended_by(error: BaseException) -> tuple[str, str]:
    """``(status, error)`` of a run ended by ``error``: ``"interrupted"`` by a ``KeyboardInterrupt`` (a second
    Ctrl+C), else ``"failed"`` with the error's one-line description."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "KeyboardInterrupt (a second Ctrl+C: no checkpoint saved)"
    return "failed", "".join(traceback.format_exception_only(type(error), error)).strip()


@dataclass
class RunContext:
    """What a trainer records its run with.

    * ``tracker``: where the run's values go (by default a tracker recording nowhere);
    * ``run_dir``: the run's folder, for its checkpoints (``run_dir/checkpoints/step-<N>/``) and
      anything else it writes (samples); ``None``: no checkpoints;
    * ``experiment``, ``config``: what the run is, stored with every checkpoint (a checkpoint of
      another experiment is refused on resume);
    * ``run_id``: its id in the run store, when it is recorded there.
    """

    tracker: Tracker = field(default_factory=Tracker)
    run_dir: Path | None = None
    experiment: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.run_dir is not None:
            self.run_dir = Path(self.run_dir)


@contextlib.contextmanager
def recorded_run(name: str, config: Mapping[str, Any] | Any = None, *, runs_dir: str | os.PathLike | None = None,
                 resume: str | None = None, tags: Sequence[str] = (), code: str | os.PathLike | None = None,
                 **tracker_options: Any) -> Iterator[RunContext]:
    """The context of a run of ``name`` with ``config`` (a mapping, or a dataclass) recorded in the run store of
    ``runs_dir`` (see :func:`resolve_runs_dir`), for the ``with`` block.

    * a new run, with its provenance (the state of the code in folder ``code``, by default the
      script running: see :func:`cadence.track.provenance.running_code`) and ``tags``; or
      ``resume``, the id (or a unique prefix) of a run to continue, its recorded config replaced
      by ``config`` (the values may continue only the same computation); resume the trainer from
      ``run.run_dir`` (:meth:`cadence.train.Trainer.resume`: its newest checkpoint);
    * ``tracker_options``: the :class:`Tracker`'s (``smoothing``, ``tensorboard_dir``, ...); ``tensorboard_dir``
      on rank 0 only.

    With several processes, rank 0 records the run and the others learn its id (they record
    nothing). Started by a launcher that names the run (:data:`RUN_ID_ENV`), rank 0 creates it
    under that id, or, when the launcher started the processes again, joins it and records the
    restart as an event. A block that raises before the trainer records the run's end records it
    ``failed`` with the error (``interrupted`` for a ``KeyboardInterrupt``). The tracker is
    closed when the block ends.
    """
    config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})
    world_size, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() \
        else (1, 0)
    runs = resolve_runs_dir(runs_dir)
    with RunStore(runs) if rank == 0 else contextlib.nullcontext() as store:
        run_id, planned, restart = resume, os.environ.get(RUN_ID_ENV), os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if store is not None:
            if resume is None and planned is not None and store.run_dir(planned).is_dir():
                resume = planned  # the launcher started the processes again: the same run
            if resume is None:
                provenance, diff = collect_provenance(code=code)
                run_id = store.create_run(name, config, tags=tags, provenance=provenance, diff=diff, run_id=planned)
            else:
                run_id = store.resolve(resume)
                store.update_config(run_id, config)
            if restart not in (None, "0"):
                store.add_event(run_id, "restarted", f"the processes were started again (restart {restart}) after "
                                                     f"one of them ended")
        if world_size > 1:
            shared = [run_id]
            dist.broadcast_object_list(shared, src=0)
            run_id = shared[0]
        if store is not None:
            tracker = Tracker(store, run_id, **tracker_options)
        else:  # the other ranks record nothing: no event files either (rank 0 writes the run's)
            tracker = Tracker(**{k: v for k, v in tracker_options.items() if k != "tensorboard_dir"})
        run = RunContext(tracker, runs / run_id, name, config, run_id)
        try:
            yield run
        except BaseException as e:
            if tracker.status is None:
                tracker.finish(*ended_by(e))
            raise
        finally:
            tracker.close()
