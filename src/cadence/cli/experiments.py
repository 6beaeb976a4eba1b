"""``cadence list``, ``cadence config`` and ``cadence train``: the built-in experiments."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from cadence.cli.common import RUNS_DIR_HELP, UsageError, guarded
from cadence.config import apply_overrides, to_yaml
from cadence.experiments import EXPERIMENTS, Experiment, get_experiment, resolve_runs_dir, train_as_run


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``list``, ``config`` and ``train`` to the command's parsers."""
    commands.add_parser("list", help="list the built-in experiments").set_defaults(handler=list_experiments)

    config = commands.add_parser("config", help="print an experiment's resolved config",
                                 usage="cadence config EXPERIMENT [key=value ...]")
    config.add_argument("experiment")
    config.set_defaults(handler=show_config, overrides_allowed=True)

    train = commands.add_parser("train", help="train an experiment, recording it as a run",
                                usage="cadence train EXPERIMENT [key=value ...] [--data-dir D] [--runs-dir R]",
                                epilog="key=value: config overrides, e.g. optimizer.lr=3e-4 epochs=2 "
                                       "(`cadence config EXPERIMENT` shows the keys)")
    train.add_argument("experiment")
    train.add_argument("--data-dir", help="data directory (default: $CADENCE_DATA, else the user cache)")
    train.add_argument("--runs-dir", help=RUNS_DIR_HELP)
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
    """``cadence train EXPERIMENT [key=value ...]``: build the experiment, then train it as a recorded run.

    Errors while building (a mistyped override, missing data) are reported in one line and
    record no run; errors while training are the training's own: the run records them and
    their traceback shows.
    """
    built = {}

    def build() -> int:
        config = apply_overrides(_experiment(args.experiment).config(), args.overrides)
        built.update(config=config, trainer=_experiment(args.experiment).build(config, args.data_dir))
        return 0

    status = guarded("train", err, build)
    if status:
        return status
    try:
        run_id = train_as_run(args.experiment, built["config"], built["trainer"], runs_dir=args.runs_dir)
    except KeyboardInterrupt:
        err.print("cadence train: interrupted; the run is marked interrupted and its last checkpoint kept",
                  markup=False)
        return 130
    out.print(f"checkpoint: {resolve_runs_dir(args.runs_dir) / run_id / 'checkpoint.pt'}", markup=False,
              highlight=False, soft_wrap=True)
    return 0
