"""The run tools: ``cadence runs``, ``show``, ``compare``, ``plot``, ``export``, ``tag`` and ``rm``.

A run is named by its id or any unique prefix of it (``cadence show 20261124-10``); an unknown
or ambiguous one is a usage error (exit status 2) that lists the candidates. These commands
only read the runs directory (``rm`` and ``tag`` aside): a missing database is reported, not
created.

``cadence show RUN --follow`` then looks at the store every ``--interval`` seconds (1) and
prints the run's latest values whenever they change, until the run's status is no longer
``running`` (finished, failed, interrupted, or any other, such as a run whose process is gone),
and prints how it ended: exit status 0. Ctrl+C stops following (the run goes on): exit status
130, as for any command stopped by SIGINT.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cadence.cli.common import RUNS_DIR_HELP, UsageError, guarded
from cadence.config import to_yaml
from cadence.track import STATES, RunStore, RunSummary, format_runs, resolve_runs_dir
from cadence.track.checkpoints import (MODEL_FILE, CheckpointError, checkpoint_path, list_checkpoints, read_meta,
                                       read_weights, write_whole_weights)
from cadence.track.console import format_duration
from cadence.track.history import MISSING, better, config_differences, histories
from cadence.track.plot import X_AXES, plot_runs
from cadence.track.tensorboard import export_run as export_tensorboard
from cadence.track.tensorboard import tensorboard_available


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add the run tools to the command's parsers."""
    runs = commands.add_parser("runs", help="list the recorded runs, filtered and sorted",
                               description="List the recorded runs: id, name, status, tags, start, duration and "
                                           "final metrics (each named as its kind: loss(avg20), accuracy(epoch)).")
    runs.add_argument("--experiment", help="only runs of this experiment")
    runs.add_argument("--status", choices=STATES, help="only runs with this status")
    runs.add_argument("--tag", action="append", default=[], help="only runs with this tag (repeat: with all of them)")
    runs.add_argument("--sort", metavar="METRIC", help="sort by a metric's final value, best first (lowest for "
                                                       "losses, highest for accuracies); default: newest first")
    runs.add_argument("--reverse", action="store_true", help="reverse the order")
    runs.set_defaults(handler=list_runs)

    show = commands.add_parser("show", help="a run's config, provenance, metrics and checkpoints")
    show.add_argument("run", help="run id, or a unique prefix of one")
    show.add_argument("--follow", action="store_true",
                      help="then print the run's latest values whenever they change, until it ends (Ctrl+C stops "
                           "following, exit status 130)")
    show.add_argument("--interval", type=float, metavar="SECONDS",
                      help="with --follow: seconds between two looks at the store (default: 1)")
    show.set_defaults(handler=show_run)

    compare = commands.add_parser("compare", help="runs' config differences and metrics side by side")
    compare.add_argument("runs", nargs="*", metavar="RUN")
    compare.add_argument("--tag", action="append", default=[],
                         help="also every run with this tag (repeat: with all of them), such as a sweep's")
    compare.set_defaults(handler=compare_runs)

    plot = commands.add_parser("plot", help="plot metrics of runs, overlaid, into an image",
                               description="Plot metrics of runs into an image: one colour per run, training "
                                           "solid and validation dashed.")
    plot.add_argument("runs", nargs="+", metavar="RUN")
    plot.add_argument("--metric", action="append", required=True,
                      help="a key (valid.loss), or a name without a phase (loss: train.loss and valid.loss); repeat "
                           "for more")
    plot.add_argument("--smooth", type=int, metavar="N",
                      help="draw the mean of the last N values of per-step series (epoch means are drawn as they are)")
    plot.add_argument("--x", choices=tuple(X_AXES), default="step", help="the x axis (default: step)")
    plot.add_argument("--log", action="store_true", help="a logarithmic y axis")
    plot.add_argument("-o", "--output", required=True, help="the image to write (.png, .svg, .pdf)")
    plot.set_defaults(handler=plot_command)

    export = commands.add_parser("export", help="a run's values as CSV, JSON or TensorBoard event files")
    export.add_argument("run")
    export.add_argument("--format", choices=("csv", "json", "tensorboard"), default="csv")
    export.add_argument("-o", "--output", help="the file to write (default: standard output); for tensorboard, "
                                               "the folder of event files (required: a new or empty one)")
    export.set_defaults(handler=export_run)

    tag = commands.add_parser("tag", help="add tags to a run (or remove them)")
    tag.add_argument("run")
    tag.add_argument("tags", nargs="+", metavar="TAG")
    tag.add_argument("--remove", action="store_true", help="remove the tags instead")
    tag.set_defaults(handler=tag_run)

    rm = commands.add_parser("rm", help="delete runs: records, values and folders (asks first)")
    rm.add_argument("runs", nargs="+", metavar="RUN")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    rm.set_defaults(handler=remove_runs)

    weights = commands.add_parser("export-weights", help="write a run's whole weights, model.safetensors, into its "
                                                         "newest checkpoint (a sharded one's shards gathered)")
    weights.add_argument("run", help="run id (or a unique prefix)")
    weights.set_defaults(handler=export_weights)

    for parser in (runs, show, compare, plot, export, tag, rm, weights):
        parser.add_argument("--runs-dir", help=RUNS_DIR_HELP)


def _with_store(args: argparse.Namespace, command: str, err: Console, work: Callable[[RunStore], int]) -> int:
    """Run ``work`` on the existing run store of ``args.runs_dir``, under :func:`guarded`."""
    def guarded_work() -> int:
        with RunStore(resolve_runs_dir(args.runs_dir), create=False) as store:
            return work(store)

    return guarded(command, err, guarded_work)


def _runs(store: RunStore, runs: list[str]) -> list[RunSummary]:
    """The runs named, each once (two prefixes may name one run), every name checked before anything is done."""
    return list({summary.id: summary for summary in (_run(store, run) for run in runs)}.values())


def _run(store: RunStore, run: str) -> RunSummary:
    """The run that ``run`` (an id or a unique prefix) names; an unknown or ambiguous one is a usage error."""
    try:
        return store.get_run(run)
    except KeyError as e:
        raise UsageError(e.args[0]) from None


# -- cadence runs ----------------------------------------------------------------------------------

def list_runs(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence runs``: the runs, filtered by experiment, status and tags, newest first or by a metric."""
    if not (resolve_runs_dir(args.runs_dir) / "runs.sqlite").is_file():
        out.print(format_runs([]))
        return 0

    def work(store: RunStore) -> int:
        runs = [run for run in store.list_runs() if (args.experiment is None or run.name == args.experiment)
                and (args.status is None or run.status == args.status) and set(args.tag) <= set(run.tags)]
        if args.sort is not None:
            runs = _sorted(runs, args.sort)
        if args.reverse:
            runs.reverse()
        out.print(format_runs(runs, first=args.sort))
        return 0

    return _with_store(args, "runs", err, work)


def _sorted(runs: list[RunSummary], metric: str) -> list[RunSummary]:
    """Runs by their final ``metric``, best first; runs without it last, newest first."""
    sign = -1 if better(metric) == "higher" else 1
    having = [run for run in runs if not math.isnan(run.last_metrics.get(metric, math.nan))]
    if not having and runs:
        keys = sorted({key for run in runs for key in run.last_metrics})
        raise UsageError(f"--sort {metric}: no run listed has {metric!r}; their metrics: {', '.join(keys) or 'none'}")
    rest = [run for run in runs if run not in having]
    return sorted(having, key=lambda run: sign * run.last_metrics[metric]) + rest


# -- cadence show ----------------------------------------------------------------------------------

def show_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence show RUN [--follow]``: how the run stands or ended, its events (resumes, restarts, interruptions),
    its provenance, config, final and best metrics and checkpoints; then, with ``--follow``, its latest values until
    it ends."""
    if args.interval is not None and (not args.follow or not args.interval > 0):
        err.print(f"cadence show: error: --interval {args.interval:g}: " +
                  ("expected seconds > 0" if args.follow else "goes with --follow"), markup=False, highlight=False)
        return 2

    def work(store: RunStore) -> int:
        run = _run(store, args.run)
        started = _time(run.start_time)
        lines = [f"run {run.id} of {run.name}" + (f", tagged {', '.join(run.tags)}" if run.tags else ""),
                 f"started {started}, {_state(run)}"]
        if run.error:
            lines.append(f"error: {run.error}")
        lines += [f"{_time(event.time)} {event.kind}{'' if event.step is None else f' at step {event.step}'}: "
                  f"{event.message}" for event in store.events(run.id)]
        lines += _provenance(run.provenance, store.run_dir(run.id))
        _lines(out, lines)
        out.print("\nconfig:", markup=False, highlight=False)
        _lines(out, ["  " + line for line in to_yaml(run.config).rstrip("\n").splitlines()] if run.config
               else ["  (empty)"])
        out.print(_metrics_table(store, run.id))
        found = list_checkpoints(store.run_dir(run.id))
        if found:
            table = Table(title="checkpoints", title_justify="left", box=None, padding=(0, 2, 0, 0))
            table.add_column("checkpoint", no_wrap=True, min_width=max(len(str(path)) for path in found))
            for column in ("step", "epoch"):
                table.add_column(column, no_wrap=True)
            table.add_column("metrics", overflow="fold")
            for path in found:
                try:
                    meta = read_meta(path)
                except CheckpointError:  # listed all the same, without what its meta.json would say
                    meta = {}
                table.add_row(str(path), _or_dash(meta.get("step")), _or_dash(meta.get("epoch")),
                              " ".join(f"{k}={_number(v)}" for k, v in (meta.get("metrics") or {}).items()))
            out.print(table)
        else:
            _lines(out, ["checkpoints: none"])
        return _follow(store, run, args.interval or 1.0, out, err) if args.follow else 0

    return _with_store(args, "show", err, work)


def _follow(store: RunStore, run: RunSummary, interval: float, out: Console, err: Console) -> int:
    """Print ``run``'s latest values (each as its kind defines it) whenever they change, looking every ``interval``
    seconds, until its status is no longer ``running``; then how it ended (0). Ctrl+C: 130, the run goes on."""
    if run.status != "running":
        _lines(out, [f"\nrun {run.id} is not running ({run.status}): nothing to follow"])
        return 0
    _lines(out, [f"\nfollowing run {run.id}: its latest values when they change (Ctrl+C stops following)"])
    shown = None
    try:
        while True:
            try:
                run = store.get_run(run.id)  # its status read before its values: an ended run's values are final
            except KeyError:
                raise ValueError(f"run {run.id} was removed from {store.path} while followed") from None
            values = " ".join(f"{s.label(key)}={_number(run.last_metrics[key])}" for key, s in run.series.items()
                              if key in run.last_metrics)
            if values != shown:
                at = "" if run.step is None else f" step {run.step}"
                _lines(out, [f"{_time(time.time())}{at} {values or '(no values yet)'}"])
                out.file.flush()  # a line as it comes, through a pipe or ssh too
                shown = values
            if run.status != "running":
                _lines(out, [f"run {run.id} {_state(run)}" + (f": {run.error}" if run.error else "")])
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        err.print(f"cadence show: stopped following run {run.id}, which goes on", markup=False, highlight=False)
        return 130


def _state(run: RunSummary) -> str:
    """How the run stands: running (at which step, about how long left), dead (since when), or how it ended."""
    if run.status == "running":
        left = run.time_left(time.time())
        return "running" + ("" if run.step is None else f", at step {run.step}") + \
            ("" if left is None else f", about {format_duration(left)} left")
    if run.status == "dead":
        return (f"dead: recorded running, but its process is gone (last sign of life "
                f"{_time(run.heartbeat) if run.heartbeat else 'never'} on {run.host or 'an unknown host'})")
    return f"{run.status} at {_time(run.end_time)} after {format_duration(run.duration)}"


def _provenance(provenance: dict[str, Any], run_dir: Path) -> list[str]:
    if not provenance:
        return ["provenance: not recorded (a run of an earlier cadence)"]
    lines = [f"command: {provenance.get('command', '?')} (in {provenance.get('cwd', '?')}, on "
             f"{provenance.get('host', '?')})",
             f"versions: cadence {provenance.get('cadence', '?')}, torch {provenance.get('torch', '?')}, "
             f"python {provenance.get('python', '?')}, {provenance.get('platform', '?')}"]
    git = provenance.get("git")
    if not git:
        lines.append("source: not in a git repository")
    else:
        where = f"commit {git.get('commit') or '(none yet)'}" + (f" on {git['branch']}" if git.get("branch") else "")
        diff = run_dir / "source.diff"
        changes = []
        if diff.is_file():
            changes.append(f"uncommitted changes in {diff}")
        if git.get("untracked_total"):
            changes.append(f"{git['untracked_total']} untracked file(s) not recorded")
        lines.append(f"source: {git.get('root')} at {where}" + (f"; {'; '.join(changes)}" if changes else
                                                                   ", no uncommitted change"))
    return lines


def _metrics_table(store: RunStore, run_id: str) -> Table:
    table = Table("metric", "final", "at step", "best", "at step", title="metrics (each as its kind: avgN the mean "
                  "of the last N values, epoch the phase's mean over the epoch so far)", title_justify="left",
                  box=None, padding=(0, 2, 0, 0))
    for key, history in histories(store, run_id).items():
        final, best = history.final(), history.best()
        table.add_row(history.shown()[1], *(_cells(final) if final else ("-", "-")),
                      *(_cells(best) if best else ("-", "-")))
    if not table.row_count:
        table.add_row("(no values recorded)", "", "", "", "")
    return table


def _cells(point: tuple[int, float]) -> tuple[str, str]:
    return _number(point[1]), str(point[0])


# -- cadence compare -------------------------------------------------------------------------------

def compare_runs(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence compare RUN RUN... [--tag TAG]``: the config and provenance entries that differ, and the final (best)
    metrics, of the runs named and those tagged (oldest first, as a sweep ran them)."""
    def work(store: RunStore) -> int:
        tagged = sorted((run for run in store.list_runs() if args.tag and set(args.tag) <= set(run.tags)),
                        key=lambda run: run.start_time)
        runs = list({run.id: run for run in (*_runs(store, args.runs), *tagged)}.values())
        if len(runs) < 2:
            got = runs[0].id + " alone" if runs else "none"
            raise UsageError(f"compare needs two runs or more; got {got}" +
                             (f" (tagged {', '.join(args.tag)})" if args.tag else ""))
        ids = [run.id for run in runs]
        configs = [{"name": run.name, "config": run.config,
                    "provenance": {k: v for k, v in run.provenance.items() if k != "cwd"}} for run in runs]
        differences = config_differences(configs)
        table = Table("key", *ids, title="config differences", title_justify="left", box=None,
                      padding=(0, 2, 0, 0))
        for key, values in differences.items():
            table.add_row(key.removeprefix("config."), *("(absent)" if v is MISSING else _value(v) for v in values))
        if not differences:
            table.add_row("(none: the same config)", *[""] * len(ids))
        out.print(table)
        every = [histories(store, run.id) for run in runs]
        metrics = Table("metric", *ids, title="metrics: final (best)", title_justify="left", box=None,
                        padding=(0, 2, 0, 0))
        for key in sorted({key for h in every for key in h}, key=lambda k: (not k.startswith("valid."), k)):
            name = next(h[key].shown()[1] for h in every if key in h)
            cells = []
            for h in every:
                final, best = (h[key].final(), h[key].best()) if key in h else (None, None)
                cells.append("-" if final is None else _number(final[1]) + (f" ({_number(best[1])})" if best else ""))
            metrics.add_row(name, *cells)
        out.print(metrics)
        if args.tag:
            view = f"tag={args.tag[0]}" if len(args.tag) == 1 and not args.runs else f"runs={','.join(ids)}"
            _lines(out, [f"\non the run page (cadence serve): /compare?{view}"])
        return 0

    return _with_store(args, "compare", err, work)


# -- cadence plot ----------------------------------------------------------------------------------

def plot_command(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence plot RUN... --metric M -o out.png``: the metrics of the runs overlaid in one image."""
    def work(store: RunStore) -> int:
        if args.smooth is not None and args.smooth < 1:
            raise UsageError(f"--smooth {args.smooth}: expected a window of 1 or more values")
        run_ids = [run.id for run in _runs(store, args.runs)]
        path = plot_runs(store, run_ids, args.metric, args.output, smooth=args.smooth, x=args.x, log=args.log)
        out.print(f"plot: {path}", markup=False, highlight=False, soft_wrap=True)
        return 0

    return _with_store(args, "plot", err, work)


# -- cadence export --------------------------------------------------------------------------------

def export_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence export RUN --format csv|json|tensorboard``: every recorded value (CSV: step, key, kind, window,
    value; JSON: the run's record and each series; TensorBoard: event files in the folder ``-o``, as the run would
    have written them live with ``tensorboard=true``)."""
    if args.format == "tensorboard" and not args.output:
        err.print("cadence export: error: --format tensorboard writes a folder of event files: name it with -o DIR "
                  "(a new or empty folder)", markup=False, highlight=False)
        return 2

    def work(store: RunStore) -> int:
        run = _run(store, args.run)
        if args.format == "tensorboard":
            if not tensorboard_available():
                raise ValueError("--format tensorboard needs the tensorboard package: pip install "
                                 "'cadence[tensorboard]'")
            count = export_tensorboard(store, run.id, args.output)
            err.print(f"cadence export: {run.id} written to {args.output}: {count} values as TensorBoard event "
                      f"files (tensorboard --logdir {args.output})", markup=False, highlight=False, soft_wrap=True)
            return 0
        series = histories(store, run.id)
        if args.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["step", "key", "kind", "window", "value"])
            for key, h in series.items():
                for step, value in zip(h.steps.tolist(), h.values.tolist()):
                    writer.writerow([step, key, h.series.kind, h.series.window or "", repr(value)])
            text = buffer.getvalue()
        else:
            record = {"id": run.id, "name": run.name, "status": run.status, "tags": list(run.tags),
                      "start_time": run.start_time, "end_time": run.end_time, "error": run.error,
                      "config": run.config, "provenance": run.provenance}
            text = json.dumps({"run": record, "series": {
                key: {"kind": h.series.kind, "window": h.series.window, "label": h.shown()[1],
                      "steps": h.steps.tolist(), "values": [None if math.isnan(v) else v for v in h.values.tolist()]}
                for key, h in series.items()}}, indent=1) + "\n"
        if args.output:
            Path(args.output).write_text(text)
            err.print(f"cadence export: {run.id} written to {args.output}", markup=False, highlight=False)
        else:
            out.file.write(text)
        return 0

    return _with_store(args, "export", err, work)


# -- cadence tag, cadence rm -----------------------------------------------------------------------

def tag_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence tag RUN TAG... [--remove]``: add (or remove) tags."""
    def work(store: RunStore) -> int:
        run = _run(store, args.run)
        tags = [t for t in run.tags if t not in args.tags] if args.remove else [*run.tags, *args.tags]
        store.set_tags(run.id, tags)
        out.print(f"{run.id}: tags {' '.join(store.get_run(run.id).tags) or '(none)'}", markup=False,
                  highlight=False)
        return 0

    return _with_store(args, "tag", err, work)


def remove_runs(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence rm RUN... [--yes]``: delete runs (records, values, folders), after asking unless ``--yes``."""
    def work(store: RunStore) -> int:
        runs = _runs(store, args.runs)  # every id checked before any deletion
        for run in runs:
            out.print(f"{run.id} {run.name} {run.status}{' (still running?)' if run.status == 'running' else ''} "
                      f"{store.run_dir(run.id)}", markup=False, highlight=False)
        if not args.yes:
            err.print(f"remove {len(runs)} run(s): their records, values and folders? [y/N] ", end="",
                      markup=False, highlight=False)
            answer = (sys.stdin.readline() if sys.stdin is not None else "").strip().lower()
            if answer not in ("y", "yes"):
                err.print("cadence rm: nothing removed", markup=False, highlight=False)
                return 1
        for run in runs:
            store.delete_run(run.id)
        out.print(f"removed {len(runs)} run(s)", markup=False, highlight=False)
        return 0

    return _with_store(args, "rm", err, work)


# -- formatting ------------------------------------------------------------------------------------

def _lines(out: Console, lines: list[str]) -> None:
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, str)) or value is None else _number(value)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


# -- cadence export-weights -----------------------------------------------------------------------

def export_weights(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence export-weights RUN``: the newest checkpoint's whole weights as ``model.safetensors`` in its folder (a
    sharded checkpoint's shards gathered into this process; one that has them already is left as it is); prints
    the file's path."""
    def work(store: RunStore) -> int:
        run = _run(store, args.run)
        checkpoint = checkpoint_path(store.run_dir(run.id))
        path = checkpoint / MODEL_FILE
        if not path.is_file():
            path = write_whole_weights(checkpoint, read_weights(checkpoint, read_meta(checkpoint)))
        out.print(str(path), markup=False, highlight=False, soft_wrap=True)
        return 0

    return _with_store(args, "export-weights", err, work)
