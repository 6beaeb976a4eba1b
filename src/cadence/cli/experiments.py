"""``cadence list``, ``cadence config`` and ``cadence train``: the built-in experiments."""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.table import Table

from cadence.cli.common import RUNS_DIR_HELP, UsageError, guarded
from cadence.config import apply_overrides, to_yaml
from cadence.experiments import EXPERIMENTS, Experiment, get_experiment, resume_config, train_as_run
from cadence.train.checkpoint import CHECKPOINTS, latest_checkpoint
from cadence.train.distributed import launch
from cadence.train.interrupt import exit_code


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``list``, ``config`` and ``train`` to the command's parsers."""
    commands.add_parser("list", help="list the built-in experiments").set_defaults(handler=list_experiments)

    config = commands.add_parser("config", help="print an experiment's resolved config",
                                 usage="cadence config EXPERIMENT [key=value ...]")
    config.add_argument("experiment")
    config.set_defaults(handler=show_config, overrides_allowed=True)

    train = commands.add_parser("train", help="train an experiment, recording it as a run",
                                usage="cadence train EXPERIMENT [key=value ...] [--data-dir D] [--runs-dir R] "
                                      "[--resume RUN] [--nproc N]",
                                epilog="key=value: config overrides, e.g. optimizer.lr=3e-4 epochs=2 "
                                       "(`cadence config EXPERIMENT` shows the keys)")
    train.add_argument("experiment")
    train.add_argument("--data-dir", help="data directory (default: $CADENCE_DATA, else the user cache)")
    train.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    train.add_argument("--resume", metavar="RUN", help="continue run RUN from its newest checkpoint, with its config "
                                                       "(overrides: only those that do not change the result)")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train data parallel in N processes on this machine (as torchrun --nproc_per_node N)")
    train.set_defaults(handler=train_experiment, overrides_allowed=True)


def _experiment(name: str) -> Experiment:
    try:
        return get_experiment(name)
    except KeyError as e:  # only the lookup's: a KeyError from an experiment's own code is a bug, and shows as one
        raise UsageError(e.args[0]) from None


def list_experiments(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence list``: the experiments and what each trains."""
    table = Table("experiment", "description", title="experiments")
    for experiment in EXPERIMENTS.values():
        table.add_row(experiment.name, experiment.description)
    out.print(table)
    return 0


def show_config(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence config EXPERIMENT [key=value ...]``: the resolved config, as YAML."""
    def work() -> int:
        config = apply_overrides(_experiment(args.experiment).config(), args.overrides)
        out.print(to_yaml(config), end="", markup=False, highlight=False)
        return 0

    return guarded("config", err, work)


def train_experiment(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence train EXPERIMENT [key=value ...] [--resume RUN] [--nproc N]``: build the experiment, then train it
    as a recorded run (a new one, or RUN continued from its newest checkpoint).

    Errors while building (a mistyped override, missing data, an override a resumed run
    refuses) are reported in one line and record no run; errors while training are the
    training's own: the run records them and their traceback shows. A run stopped by SIGINT
    or SIGTERM, after saving its checkpoint, exits 130 or 143.
    """
    if args.nproc < 1:
        err.print(f"cadence train: error: --nproc {args.nproc}; expected a number of processes >= 1", markup=False)
        return 2
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch(args.nproc, _without_nproc(args.argv))
    pieces: dict = {}

    def build() -> int:
        experiment = _experiment(args.experiment)
        if args.resume is None:
            pieces.update(config=apply_overrides(experiment.config(), args.overrides), run_id=None, note="")
        else:
            pieces.update(resume_config(experiment, args.resume, args.overrides, runs_dir=args.runs_dir))
        pieces["trainer"] = experiment.build(pieces["config"], args.data_dir)
        return 0

    status = guarded("train", err, build)
    if status:
        return status
    trainer = pieces["trainer"]
    try:
        run_id = train_as_run(args.experiment, pieces["config"], trainer, runs_dir=args.runs_dir,
                              run_id=pieces["run_id"], note=pieces["note"])
    except KeyboardInterrupt:
        err.print("cadence train: stopped at once (a second Ctrl+C); the run is marked interrupted, its last "
                  "checkpoint kept", markup=False)
        return 130
    if trainer.rank == 0:
        newest = latest_checkpoint(trainer.run_dir / CHECKPOINTS)
        out.print(f"run {run_id} {trainer.status}{f'; newest checkpoint: {newest}' if newest else ''}"
                  f"{f' (resume: cadence train {args.experiment} --resume {run_id})' if trainer.status != 'finished' else ''}",
                  markup=False, highlight=False, soft_wrap=True)
    return exit_code(trainer.stopped_by) if trainer.status == "interrupted" else 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` (or ``--nproc=N``): what each process runs."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept
