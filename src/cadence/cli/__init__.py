"""The ``cadence`` command: train the built-in experiments, and list, show, compare and plot their runs.

    cadence list                                   the experiments
    cadence config mnist [key=value ...]           the resolved config, as YAML
    cadence train mnist [key=value ...] [--data-dir D] [--runs-dir R] [--resume RUN] [--nproc N]
    cadence runs [--experiment E] [--status S] [--tag T] [--sort METRIC]   the recorded runs
    cadence show RUN [--follow [--interval S]]     config, provenance, final and best metrics, checkpoints;
                                                   then its latest values until it ends
    cadence compare RUN RUN...                     config differences and metrics side by side
    cadence plot RUN... --metric M [--smooth N] [--x step|samples] [--log] -o out.png
    cadence export RUN --format csv|json [-o FILE]
    cadence export RUN --format tensorboard -o DIR  TensorBoard event files, from the store
    cadence tag RUN TAG... [--remove]
    cadence rm RUN... [--yes]
    cadence generate RUN [--prompt TEXT] [--length N] [--temperature T] [--top-k K] [--seed S]
                                                   text sampled from a language model's run
    cadence serve [--runs-dir R] [--port P] [--host H]   the run page, live, in a browser

A run is named by its id or any unique prefix of it.

Each command lives in a module of this package (:mod:`cadence.cli.experiments`,
:mod:`cadence.cli.runs`, :mod:`cadence.cli.generate`, :mod:`cadence.cli.serve`), which adds its parser and handler. Exit
status: 0 for success, 1 for an error the command reports in one line (missing data, a bad
value), 2 for a usage error (an unknown experiment, key or argument), 130 or 143 for a run
stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from cadence import __version__
from cadence.cli import experiments, generate, runs, serve
from cadence.cli.common import UsageError, guarded

__all__ = ["UsageError", "guarded", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cadence", description="Train the built-in experiments and inspect runs.")
    parser.add_argument("--version", action="version", version=f"cadence {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    experiments.add_parsers(commands)
    runs.add_parsers(commands)
    generate.add_parsers(commands)
    serve.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Config overrides may stand anywhere among the options: whatever argparse leaves over is one.
    args, args.overrides = parser.parse_known_args(argv)
    args.argv = argv
    stray = [a for a in args.overrides if a.startswith("-") or not getattr(args, "overrides_allowed", False)]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    out, err = Console(), Console(stderr=True, soft_wrap=True)
    if not out.is_terminal:  # a file or a pipe: no reason to fold tables at 80 columns
        out.width = 200
    return args.handler(args, out, err)


if __name__ == "__main__":
    sys.exit(main())
