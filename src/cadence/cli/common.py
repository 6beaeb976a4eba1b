"""What the command's modules share: the exit statuses of errors, and the runs directory option."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from cadence.config import ConfigError

RUNS_DIR_HELP = "runs directory (default: $CADENCE_RUNS, else ./runs)"


class UsageError(Exception):
    """A command line that names something that does not exist (exit status 2)."""


def guarded(command: str, err: Console, work: Callable[[], int]) -> int:
    """Run ``work``; report a usage error (2), a one-line error (1) or an interrupt (130) as ``cadence <command>``
    does, and return the status. Anything else is a bug and goes up with its traceback."""
    try:
        return work()
    except (ConfigError, UsageError) as e:
        err.print(f"cadence {command}: error: {e}", markup=False, highlight=False)
        return 2
    except (OSError, ValueError) as e:
        err.print(f"cadence {command}: error: {e}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print(f"cadence {command}: interrupted", markup=False, highlight=False)
        return 130
