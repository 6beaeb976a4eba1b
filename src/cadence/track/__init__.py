"""Run tracking: the tracker and its sinks (console, SQLite run store, TensorBoard), what a value is
(its kind), what reproduces a run (provenance), model statistics, and plots of runs."""

from cadence.track.console import PhaseDisplay, format_runs
from cadence.track.kinds import KINDS, label, moving_average
from cadence.track.model_statistics import ModelSnapshot, model_statistics
from cadence.track.provenance import collect_provenance
from cadence.track.run_context import RunContext, recorded_run, resolve_runs_dir
from cadence.track.sinks import BackgroundWriter, RecordSink, StoreSink
from cadence.track.store import END_STATES, STATES, RunStore, RunSummary, Series
from cadence.track.tensorboard import TensorBoardSink
from cadence.track.tracker import SAMPLES_KEY, Tracker

__all__ = ["END_STATES", "KINDS", "SAMPLES_KEY", "STATES", "BackgroundWriter", "ModelSnapshot", "PhaseDisplay",
           "RecordSink", "RunContext", "RunStore", "RunSummary", "Series", "StoreSink", "TensorBoardSink", "Tracker",
           "collect_provenance", "format_runs", "label", "model_statistics", "moving_average", "recorded_run",
           "resolve_runs_dir"]
