"""``cadence list``, ``cadence config`` and ``cadence train``: the built-in experiments, and sweeps of them (``-m``)."""

from __future__ import annotations

import argparse
import os

from rich.console import Console
from rich.table import Table

from cadence.cli.common import RUNS_DIR_HELP, UsageError, guarded
from cadence.config import ConfigError, apply_overrides, to_yaml
from cadence.experiments import EXPERIMENTS, Experiment, experiment_run, get_experiment, resume_config
from cadence.experiments.sweep import Point, final_and_best, run_sweep, split_values
from cadence.track.checkpoints import latest_checkpoint
from cadence.track.store import new_run_id
from cadence.train.launcher import launch
from cadence.train.interrupt import exit_code


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``list``, ``config`` and ``train`` to the command's parsers."""
    commands.add_parser("list", help="list the built-in experiments").set_defaults(handler=list_experiments)

    config = commands.add_parser("config", help="print an experiment's resolved config",
                                 usage="cadence config EXPERIMENT [key=value ...]")
    config.add_argument("experiment")
    config.set_defaults(handler=show_config, overrides_allowed=True)

    train = commands.add_parser("train", help="train an experiment, recording it as a run",
                                usage="cadence train EXPERIMENT [key=value ...] [--data-dir D] [--runs-dir R] "
                                      "[--resume RUN] [--nproc N [--max-restarts K] [--nnodes M --node-rank R "
                                      "--rdzv-endpoint HOST:PORT]] [-m]",
                                epilog="key=value: config overrides, e.g. optimizer.lr=3e-4 epochs=2 "
                                       "(`cadence config EXPERIMENT` shows the keys); with -m, key=a,b,c sweeps "
                                       "the values, e.g. -m optimizer.lr=1e-4,3e-4 optimizer.name=adam,ada_belief")
    train.add_argument("experiment")
    train.add_argument("--data-dir", help="data directory (default: $CADENCE_DATA, else the user cache)")
    train.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    train.add_argument("--resume", metavar="RUN", help="continue run RUN from its newest checkpoint, with its config "
                                                       "(overrides: only those that do not change the result)")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train data parallel in N processes on this machine, under torch's elastic agent "
                            "(as torchrun --nproc-per-node N)")
    train.add_argument("--max-restarts", type=int, default=0, metavar="K",
                       help="with --nproc: when a process dies, start the group again up to K times, resuming from "
                            "the newest checkpoint in the same run")
    train.add_argument("--nnodes", type=int, default=1, metavar="M",
                       help="with --nproc: machines in the run, each running this command with its --node-rank")
    train.add_argument("--node-rank", type=int, default=0, metavar="R", help="with --nnodes: this machine's rank, 0 "
                                                                               "on the one holding rank 0")
    train.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                       help="with --nnodes: the address node 0 listens on, the same on every node")
    train.add_argument("-m", "--multirun", action="store_true",
                       help="sweep: a run per point of the grid of the comma-separated values (Hydra's multirun), "
                            "tagged alike, then a table of each point's final and best metrics")
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
    """``cadence train EXPERIMENT [key=value ...] [--resume RUN] [--nproc N] [-m]``: build the experiment, then
    train it as a recorded run (a new one, or RUN continued from its newest checkpoint); with ``-m``, sweep it
    (:func:`sweep_experiment`).

    Errors while building (a mistyped override, missing data, an override a resumed run
    refuses) are reported in one line and record no run; errors while training are the
    training's own: the run records them and their traceback shows. A run stopped by SIGINT
    or SIGTERM, after saving its checkpoint, exits 130 or 143.
    """
    if args.nproc < 1:
        err.print(f"cadence train: error: --nproc {args.nproc}; expected a number of processes >= 1", markup=False)
        return 2
    if args.multirun:
        return sweep_experiment(args, out, err)
    if (args.nproc > 1 or args.nnodes > 1) and "WORLD_SIZE" not in os.environ:
        return _launch(args, err)
    pieces: dict = {}

    def build() -> int:
        experiment = _experiment(args.experiment)
        if args.resume is None:
            pieces.update(config=_with_sweep_hint(experiment, args.overrides), run_id=None, note="")
        else:
            pieces.update(resume_config(experiment, args.resume, args.overrides, runs_dir=args.runs_dir))
        pieces["built"] = experiment.build(pieces["config"], args.data_dir)
        return 0

    status = guarded("train", err, build)
    if status:
        return status
    try:
        with experiment_run(args.experiment, pieces["built"], runs_dir=args.runs_dir, run_id=pieces["run_id"],
                            note=pieces["note"]) as trainer:
            trainer.run()
    except KeyboardInterrupt:
        err.print("cadence train: stopped at once (a second Ctrl+C); the run is marked interrupted, its last "
                  "checkpoint kept", markup=False)
        return 130
    run_id = trainer.run_context.run_id
    if trainer.rank == 0:
        newest = latest_checkpoint(trainer.run_dir)
        out.print(f"run {run_id} {trainer.status}{f'; newest checkpoint: {newest}' if newest else ''}"
                  f"{f' (resume: cadence train {args.experiment} --resume {run_id})' if trainer.status != 'finished' else ''}",
                  markup=False, highlight=False, soft_wrap=True)
    return exit_code(trainer.stopped_by) if trainer.status == "interrupted" else 0


def _with_sweep_hint(experiment: Experiment, overrides: list[str]) -> object:
    """The config of ``overrides``; an override refused for holding several values says how to sweep them."""
    try:
        return apply_overrides(experiment.config(), overrides)
    except ConfigError as e:
        swept = []
        for override in overrides:
            try:
                if len(split_values(override)[1]) > 1:
                    swept.append(override)
            except ConfigError:
                pass
        if swept:
            raise ConfigError(f"{e} ({', '.join(swept)}: several values; to sweep them, add -m)") from None
        raise


def sweep_experiment(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence train EXPERIMENT -m key=a,b ...``: a recorded run per point of the grid, tagged alike, then a table
    of each point's final and best metrics. Exit status 0 when every point finished, 1 when one failed, 130 or 143
    when a Ctrl+C or SIGTERM stopped the sweep."""
    if args.resume is not None or args.nproc > 1:
        err.print(f"cadence train: error: -m (a sweep) trains new runs in this process; it takes neither "
                  f"{'--resume' if args.resume is not None else '--nproc'}", markup=False)
        return 2
    log = (lambda message: err.print(message, markup=False, highlight=False, soft_wrap=True))
    result: dict = {}

    def work() -> int:
        result["tag"], result["points"] = run_sweep(_experiment(args.experiment), args.overrides,
                                                    data_dir=args.data_dir, runs_dir=args.runs_dir, log=log)
        return 0

    try:
        status = guarded("train", err, work)
    except KeyboardInterrupt:
        err.print("cadence train: sweep stopped at once (a second Ctrl+C)", markup=False)
        return 130
    if status:
        return status
    tag, points = result["tag"], result["points"]
    out.print(_sweep_table(args, tag, points))
    out.print(f"sweep {tag}: {sum(p.status == 'finished' for p in points)} of {len(points)} points finished "
              f"(cadence runs --tag {tag})", markup=False, highlight=False, soft_wrap=True)
    interrupted = [p for p in points if p.status == "interrupted"]
    if interrupted:
        return exit_code(interrupted[0].stopped_by)
    return 1 if any(p.status == "failed" for p in points) else 0


def _sweep_table(args: argparse.Namespace, tag: str, points: list[Point]) -> Table:
    """A row per point: what it set (the swept keys only), its run, its status, and per metric ``final (best)``."""
    varying = [i for i in range(len(points[0].overrides)) if len({p.overrides[i] for p in points}) > 1]
    values = final_and_best(args.runs_dir, [p.run_id for p in points if p.run_id is not None])
    keys = sorted({key for run in values.values() for key in run}, key=lambda k: (not k.startswith("valid."), k))
    table = Table("point", "run", "status", *keys, title=f"sweep {tag}: final (best) of each point",
                  title_justify="left")
    for point in points:
        metrics = values.get(point.run_id, {})
        cells = []
        for key in keys:
            final, best = metrics.get(key, (None, None))
            cells.append("-" if final is None else f"{final[1]:.4g}" + (f" ({best[1]:.4g})" if best else ""))
        table.add_row(" ".join(point.overrides[i] for i in varying) or "(one point)", point.run_id or "-",
                      point.status, *cells)
    return table


#: The options of the launcher, which the processes it starts do not take.
LAUNCHER_OPTIONS = ("--nproc", "--max-restarts", "--nnodes", "--node-rank", "--rdzv-endpoint")


def _launch(args: argparse.Namespace, err: Console) -> int:
    """``cadence train ... --nproc N``: the processes of the run, under torch's elastic agent; a new run's id drawn
    here, so that every attempt of the group records into one run."""
    try:
        return launch(args.nproc, _without_launcher_options(args.argv), nnodes=args.nnodes, node_rank=args.node_rank,
                      endpoint=args.rdzv_endpoint, max_restarts=args.max_restarts,
                      run_id=new_run_id() if args.resume is None and args.node_rank == 0 else None)
    except ValueError as e:
        err.print(f"cadence train: error: {e}", markup=False)
        return 2


def _without_launcher_options(argv: list[str]) -> list[str]:
    """``argv`` without the launcher's options (``--nproc N`` or ``--nproc=N``, ...): what each process runs."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCHER_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in LAUNCHER_OPTIONS)):
            kept.append(arg)
    return kept
