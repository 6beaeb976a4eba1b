"""``cadence runs``: the recorded runs."""

from __future__ import annotations

import argparse

from rich.console import Console

from cadence.cli.common import RUNS_DIR_HELP, guarded
from cadence.experiments import resolve_runs_dir
from cadence.track import RunStore, format_runs

def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``runs`` to the command's parsers."""
    parser = commands.add_parser("runs", help="list the recorded runs")
    parser.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    parser.set_defaults(handler=list_runs)


def list_runs(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence runs``: id, name, status, start, duration and last metrics of every run."""
    def work() -> int:
        with RunStore(resolve_runs_dir(args.runs_dir)) as store:
            out.print(format_runs(store.list_runs()))
        return 0

    return guarded("runs", err, work)
