"""Ctrl+C and SIGTERM while training: the first asks the loop to stop at its next safe point.

The trainer runs inside :class:`Interrupts`. The first SIGINT (Ctrl+C) or SIGTERM only
records the signal: the loop finishes the step it is in, saves a checkpoint, marks the run
interrupted and returns, so nothing already computed is lost. A second SIGINT stops at once
(``KeyboardInterrupt``, as Python's default handler would), for a step that hangs.

Handlers can be installed only in the main thread; elsewhere (a trainer run from a worker
thread) signals keep their default behaviour.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

__all__ = ["Interrupts", "exit_code"]


def exit_code(signum: int) -> int:
    """The exit status of a process ended by signal ``signum``, as shells report it: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


class Interrupts:
    """While entered, the first SIGINT or SIGTERM sets :attr:`signal`; a second SIGINT raises ``KeyboardInterrupt``.

    ``notify`` is told, in one line, what the first signal will do: at once, from the handler, unless that fails
    (the signal came in the middle of something the message needs, an import of the console's, say): then when
    :attr:`signal` is next read, at the loop's next safe point. A message never fails the run.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self.notify = notify
        self._signal: int | None = None
        self._unsent: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def signal(self) -> int | None:
        """The first signal received (``signal.SIGINT`` or ``signal.SIGTERM``), or ``None``."""
        if self._unsent is not None and self.notify is not None:
            message, self._unsent = self._unsent, None
            self.notify(message)
        return self._signal

    @signal.setter
    def signal(self, signum: int | None) -> None:
        self._signal = signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self._signal is None:
            self._signal = signum
            if self.notify is not None:
                again = "; press Ctrl+C again to stop at once" if signum == signal.SIGINT else ""
                message = f"{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint{again}"
                try:
                    self.notify(message)
                except Exception:  # the main thread was inside what the message needs: tell it at the next safe point
                    self._unsent = message

    def __enter__(self) -> Interrupts:
        self._signal, self._unsent = None, None
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
