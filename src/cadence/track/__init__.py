"""Run tracking: the tracker, its console display and the SQLite run store."""

from cadence.track.console import ConsoleSink, format_runs
from cadence.track.store import END_STATES, RunStore, RunSummary
from cadence.track.tracker import Tracker

__all__ = ["END_STATES", "ConsoleSink", "RunStore", "RunSummary", "Tracker", "format_runs"]
