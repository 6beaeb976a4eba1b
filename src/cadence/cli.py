"""The ``cadence`` command: train the built-in experiments, show their configs, list runs.

    cadence list                                   the experiments
    cadence config mnist [key=value ...]           the resolved config, as YAML
    cadence train mnist [key=value ...] [--data-dir D] [--runs-dir R]
    cadence runs [--runs-dir R]                    the recorded runs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from cadence import __version__
from cadence.config import ConfigError, apply_overrides, to_yaml
from cadence.experiments import EXPERIMENTS, get_experiment, resolve_runs_dir, train_as_run
from cadence.track import RunStore, format_runs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cadence", description="Train the built-in experiments and inspect runs.")
    parser.add_argument("--version", action="version", version=f"cadence {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="list the built-in experiments")

    config = commands.add_parser("config", help="print an experiment's resolved config",
                                 usage="cadence config EXPERIMENT [key=value ...]")
    config.add_argument("experiment")

    train = commands.add_parser("train", help="train an experiment, recording it as a run",
                                usage="cadence train EXPERIMENT [key=value ...] [--data-dir D] [--runs-dir R]",
                                epilog="key=value: config overrides, e.g. optimizer.lr=3e-4 epochs=2 "
                                       "(`cadence config EXPERIMENT` shows the keys)")
    train.add_argument("experiment")
    train.add_argument("--data-dir", help="data directory (default: $CADENCE_DATA, else the user cache)")
    train.add_argument("--runs-dir", help="runs directory (default: $CADENCE_RUNS, else ./runs)")

    runs = commands.add_parser("runs", help="list the recorded runs")
    runs.add_argument("--runs-dir", help="runs directory (default: $CADENCE_RUNS, else ./runs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    # Overrides may stand anywhere among the options: whatever argparse leaves over is one.
    args, args.overrides = parser.parse_known_args(argv)
    stray = [a for a in args.overrides if a.startswith("-") or args.command not in ("config", "train")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    out, err = Console(), Console(stderr=True, soft_wrap=True)
    if not out.is_terminal:  # a file or a pipe: no reason to fold tables at 80 columns
        out.width = 200
    trainer = None
    try:
        # Only the experiment's name is looked up here: a KeyError from anywhere else is a bug, and shows as one.
        experiment = get_experiment(args.experiment) if args.command in ("config", "train") else None
    except KeyError as e:
        err.print(f"cadence {args.command}: error: {e.args[0]}", markup=False, highlight=False)
        return 2
    try:
        if args.command == "list":
            table = Table("experiment", "description", title="experiments")
            for known in EXPERIMENTS.values():
                table.add_row(known.name, known.description)
            out.print(table)
        elif args.command == "config":
            config = apply_overrides(experiment.config(), args.overrides)
            out.print(to_yaml(config), end="", markup=False, highlight=False)
        elif args.command == "train":
            config = apply_overrides(experiment.config(), args.overrides)
            trainer = experiment.build(config, args.data_dir)
        elif args.command == "runs":
            with RunStore(resolve_runs_dir(args.runs_dir)) as store:
                out.print(format_runs(store.list_runs()))
    except ConfigError as e:
        err.print(f"cadence {args.command}: error: {e}", markup=False, highlight=False)
        return 2
    except (OSError, ValueError) as e:
        err.print(f"cadence {args.command}: error: {e}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:  # a download, say: no run was recorded yet
        err.print(f"cadence {args.command}: interrupted", markup=False, highlight=False)
        return 130
    if trainer is not None:
        # Errors from here on are the training's own: the run records them and the traceback shows.
        try:
            run_id = train_as_run(args.experiment, config, trainer, runs_dir=args.runs_dir)
        except KeyboardInterrupt:
            err.print("cadence train: interrupted; the run is marked interrupted and its last checkpoint kept",
                      markup=False)
            return 130
        out.print(f"checkpoint: {resolve_runs_dir(args.runs_dir) / run_id / 'checkpoint.pt'}", markup=False,
                  highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
