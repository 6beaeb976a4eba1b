"""The built-in experiments, and running one as a recorded run."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadence.config import to_dict
from cadence.experiments import mnist
from cadence.track import RunStore, Tracker
from cadence.train import Trainer


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its config class and how to build its trainer from a config."""

    name: str
    description: str
    config: type
    build: Callable[[Any, str | Path | None], Trainer]


EXPERIMENTS: dict[str, Experiment] = {
    "mnist": Experiment("mnist", "batch-norm CNN on MNIST digits with cadence's Adam", mnist.MNISTConfig, mnist.build),
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name lists the known ones."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))} "
                       f"(see `cadence list`)")
    return EXPERIMENTS[name]


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs directory: the argument, else ``CADENCE_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get("CADENCE_RUNS") or "runs")


def run_experiment(name: str, config: Any, *, data_dir: str | Path | None = None,
                   runs_dir: str | Path | None = None, tracker_options: dict[str, Any] | None = None,
                   tags: Sequence[str] = ()) -> str:
    """Build experiment ``name`` from ``config``, then train it as a recorded run; return the run id."""
    trainer = get_experiment(name).build(config, data_dir)
    return train_as_run(name, config, trainer, runs_dir=runs_dir, tracker_options=tracker_options, tags=tags)


def train_as_run(name: str, config: Any, trainer: Trainer, *, runs_dir: str | Path | None = None,
                 tracker_options: dict[str, Any] | None = None, tags: Sequence[str] = ()) -> str:
    """Record a new run of experiment ``name`` and train ``trainer`` in it; return the run id.

    Call it once the data and model are ready, so that a typo or a missing data file leaves
    no run behind. The run records its provenance (versions, command, host, git commit and
    uncommitted diff) and ``tags``; it ends ``finished``, ``failed`` (with the error) or
    ``interrupted``; its checkpoint is written to the run's folder.
    """
    with RunStore(resolve_runs_dir(runs_dir)) as store:
        resolved = to_dict(config)
        run_id = store.create_run(name, resolved, tags=tags)
        trainer.tracker = Tracker(store=store, run_id=run_id, **(tracker_options or {}))
        trainer.checkpoint_path = store.run_dir(run_id) / "checkpoint.pt"
        trainer.config = resolved
        try:
            trainer.run()
        finally:
            trainer.tracker.close()
    return run_id
