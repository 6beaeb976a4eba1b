"""Where each phase's wall time goes: waiting for data, compute, the optimizer, tracking, checkpoints, the rest.

Every second of a run belongs to the phase in progress (validation while a validation slice
runs, training otherwise: the time between slices, hooks and epoch-end checkpoints included)
and, within it, to the part in progress. The trainer marks the parts as its loop reaches them
(:meth:`PhaseClock.batch`, :meth:`PhaseClock.to`, :meth:`PhaseClock.timed`); the clock adds up
the seconds and reports each phase's parts as shares of its wall time
(:meth:`PhaseClock.report`): ``train.time.data``, ``.compute``, ``.optimizer``, ``.tracking``,
``.checkpoint``, ``.other`` (the remainder: the shares sum to 1), and ``train.samples_per_second``.

A report covers the phase's time since its last complete pass was reported: the trainer reports
at the end of every slice of a phase, as an ``"epoch"`` value beside the phase's metrics, and
starts the phase's count afresh once a slice ends its pass (the epoch's training, a validation
pass); the time after that (a validation's reporting, the epoch's end and its checkpoint) counts
in the next.

**On a device that runs asynchronously** (CUDA, MPS) the host's clock says when the host queued
the work, not when the device did it: a split of a step between compute and the optimizer is
meaningless there without a device synchronisation. So the parts of a batch are timed in one
batch of every ``sample_every`` of a phase only, each mark of that batch waiting for the device
(``sync``), and the other batches are not timed at all; a part's seconds are its sampled seconds
times the batches per sampled batch (a period without a sampled batch takes the run's mean per
batch). Marks that are rare (a phase entered or left, a checkpoint, a slice's reporting) always
wait for the device. On the CPU nothing waits: ``sync`` is ``None`` and every batch is timed,
a few ``time.perf_counter()`` calls each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

import torch

from cadence.checks import check_number

__all__ = ["CHECKPOINT", "COMPUTE", "DATA", "OPTIMIZER", "OTHER", "PARTS", "SAMPLE_EVERY", "TRACKING", "PhaseClock"]

#: The parts of a phase's time, in the order reported (``train.time.<part>``); their indices below.
PARTS = ("data", "compute", "optimizer", "tracking", "checkpoint", "other")
DATA, COMPUTE, OPTIMIZER, TRACKING, CHECKPOINT, OTHER = range(len(PARTS))

#: On a device that needs a synchronisation to time its work: one batch of this many is timed.
SAMPLE_EVERY = 50


class _Period:
    """One phase's seconds since its count started: wall time; per part, the sampled batches' seconds and the
    seconds of rare marks; the batches and those sampled; the samples trained on when it started."""

    def __init__(self, samples: Any = 0) -> None:
        self.wall = 0.0
        self.sampled_seconds = [0.0] * len(PARTS)
        self.rare_seconds = [0.0] * len(PARTS)
        self.batches = self.sampled = 0
        self.samples = samples


class PhaseClock:
    """The wall time of each of ``phases`` (the first is the one in progress between others), split into
    :data:`PARTS` (see the module docstring).

    * ``sync``: waits for the device (``torch.cuda.synchronize``), called before every timed mark;
      ``None`` on the CPU;
    * ``sample_every``: time the parts of one batch of this many of a phase (1: every batch);
    * ``processes``: the data parallel processes, each training on as many samples as this one (the speed
      reported is theirs together);
    * ``clock``: the time source, in seconds.
    """

    def __init__(self, phases: Iterable[str], *, sync: Callable[[], None] | None = None, sample_every: int = 1,
                 processes: int = 1, clock: Callable[[], float] = perf_counter):
        self.phases = tuple(phases)
        if not self.phases:
            raise ValueError("PhaseClock: no phases given; expected the phases to time, e.g. ('train', 'valid')")
        self.sample_every = check_number("PhaseClock", "sample_every", sample_every, low=1, integer=True)
        self.processes = check_number("PhaseClock", "processes", processes, low=1, integer=True)
        self.sync, self.clock = sync, clock
        self.start()

    @classmethod
    def for_device(cls, device: torch.device, phases: Iterable[str], processes: int = 1) -> PhaseClock:
        """A clock for work on ``device``: every batch timed on the CPU, nothing waited for; one batch of
        :data:`SAMPLE_EVERY` timed on CUDA or MPS, each of its marks waiting for the device."""
        if device.type == "cuda":
            return cls(phases, sync=lambda: torch.cuda.synchronize(device), sample_every=SAMPLE_EVERY,
                       processes=processes)
        if device.type == "mps":
            return cls(phases, sync=torch.mps.synchronize, sample_every=SAMPLE_EVERY, processes=processes)
        return cls(phases, processes=processes)

    def start(self, samples: Any = 0) -> None:
        """Start counting afresh (a run starts): every phase's time from zero, the first phase in progress;
        ``samples``, the samples trained on so far."""
        self._periods = {phase: _Period(samples) for phase in self.phases}
        self._done = {phase: _Period() for phase in self.phases}  # the sampled batches of the periods reported
        self._batches = dict.fromkeys(self.phases, 0)  # each phase's batches in the run: which are timed
        self._stack: list[tuple[str, int, bool]] = []
        self._phase, self._part, self._timing = self.phases[0], OTHER, False
        self._period = self._periods[self._phase]
        self._entered = self._mark = self.clock()  # nothing to wait for yet: no phase has begun

    # -- marks -------------------------------------------------------------------------------

    def batch(self) -> None:
        """A batch of the phase in progress starts, waiting for its data; it is timed if it is the phase's
        ``sample_every``-th since the last timed one (every batch with ``sample_every=1``)."""
        period, now = self._period, None
        if self._timing:
            now = self._now()
            period.sampled_seconds[self._part] += now - self._mark
        period.batches += 1
        self._batches[self._phase] += 1
        self._timing = self._batches[self._phase] % self.sample_every == 0
        if self._timing:
            period.sampled += 1
            self._mark = self._now() if now is None else now
        self._part = DATA

    def to(self, part: int) -> None:
        """The batch in progress moves on to ``part`` (:data:`COMPUTE`, :data:`OPTIMIZER`, ...)."""
        if self._timing:
            if self.sync is not None:
                self.sync()
            now = self.clock()
            self._period.sampled_seconds[self._part] += now - self._mark
            self._mark = now
        self._part = part

    @contextmanager
    def timed(self, part: int) -> Iterator[None]:
        """Time the work within as ``part`` of the phase in progress, in or out of a batch, timed or not (a
        checkpoint, a slice's reporting: what a report within reports counts in the next)."""
        phase, start = self._phase, self._now()
        if self._timing:
            self._period.sampled_seconds[self._part] += start - self._mark
        try:
            yield
        finally:
            self._mark = end = self._now()
            self._periods[phase].rare_seconds[part] += end - start

    def enter(self, phase: str) -> None:
        """A slice of ``phase`` starts (within a batch of another phase, too: a validation pass after an optimizer
        step); :meth:`leave` returns to the phase and part in progress."""
        self._switch()
        self._stack.append((self._phase, self._part, self._timing))
        self._phase, self._part, self._timing = phase, OTHER, False
        self._period = self._periods[phase]

    def leave(self) -> None:
        """The slice :meth:`enter` began ends."""
        self._switch()
        self._phase, self._part, self._timing = self._stack.pop()
        self._period = self._periods[self._phase]

    # -- reports -----------------------------------------------------------------------------

    def report(self, phase: str, samples: Any = None, restart: bool = False) -> dict[str, Any]:
        """``{"<phase>.time.<part>": share}`` of ``phase``'s wall time since its count started, each in [0, 1],
        summing to 1 (``other``: the remainder), and, with ``samples`` (this process's samples trained on so far: a
        number or a tensor, never read here), ``<phase>.samples_per_second`` of every process. With ``restart``,
        the phase's count starts afresh after it."""
        now = self.clock()  # no wait for the device: the wall time of a whole period needs none
        period, done = self._periods[phase], self._done[phase]
        wall = period.wall + (now - self._entered if phase == self._phase else 0.0)
        timed = period if period.sampled else done  # no batch of the period timed: the run's mean per batch
        seconds = [rare + sampled / max(timed.sampled, 1) * period.batches
                   for rare, sampled in zip(period.rare_seconds, timed.sampled_seconds)]
        total = max(wall, sum(seconds[:OTHER]), 1e-12)
        shares = {f"{phase}.time.{name}": seconds[i] / total for i, name in enumerate(PARTS[:OTHER])}
        shares[f"{phase}.time.other"] = max(0.0, 1.0 - sum(shares.values()))
        if samples is not None:
            shares[f"{phase}.samples_per_second"] = (samples - period.samples) * self.processes / max(wall, 1e-12)
        if restart:
            done.sampled += period.sampled
            done.sampled_seconds = [a + b for a, b in zip(done.sampled_seconds, period.sampled_seconds)]
            self._periods[phase] = _Period(period.samples if samples is None else samples)
            if phase == self._phase:  # the rest of the slice, no batch's, counts in the next period
                self._period, self._entered, self._timing = self._periods[phase], now, False
        return shares

    # -- internals ---------------------------------------------------------------------------

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return self.clock()

    def _switch(self) -> None:
        """The phase in progress pauses or ends here: its part and wall time counted up to now."""
        now = self._now()
        if self._timing:
            self._period.sampled_seconds[self._part] += now - self._mark
        self._period.wall += now - self._entered
        self._entered = self._mark = now
