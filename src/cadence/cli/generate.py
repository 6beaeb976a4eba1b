"""``cadence generate RUN``: sample text from a trained language model's newest checkpoint."""

from __future__ import annotations

import argparse

from rich.console import Console

from cadence.cli.common import RUNS_DIR_HELP, UsageError, guarded
from cadence.config import from_dict
from cadence.experiments import EXPERIMENTS, get_experiment
from cadence.track import RunStore, resolve_runs_dir
from cadence.track.checkpoints import CHECKPOINTS, latest_checkpoint


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``generate`` to the command's parsers."""
    generate = commands.add_parser(
        "generate", help="sample text from a trained language model (a run of shakespeare)",
        usage="cadence generate RUN [--prompt TEXT] [--length N] [--temperature T] [--top-k K] [--seed S] "
              "[--runs-dir R]",
        epilog="temperature 0 or top-k 1: the most likely character at each step (greedy)")
    generate.add_argument("run", help="the run's id (`cadence runs` lists them)")
    generate.add_argument("--prompt", default="\n", help="the text to continue (default: a new line)")
    generate.add_argument("--length", type=int, default=300, help="characters to generate (default: 300)")
    generate.add_argument("--temperature", type=float, default=1.0,
                          help="divides the logits: below 1 sharper, above 1 flatter (default: 1)")
    generate.add_argument("--top-k", type=int, default=0,
                          help="sample among the K most likely characters only (default: 0, all of them)")
    generate.add_argument("--seed", type=int, default=0, help="seed of the sampling: the same seed, the same text")
    generate.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    generate.set_defaults(handler=generate_text)


def generate_text(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``cadence generate RUN``: the run's model, rebuilt from its recorded config with the weights of its newest
    checkpoint, continues ``--prompt`` by ``--length`` characters, printed on the standard output."""
    def work() -> int:
        with RunStore(resolve_runs_dir(args.runs_dir)) as store:
            try:
                run = store.get_run(args.run)
            except KeyError as e:
                raise UsageError(e.args[0]) from None
            root = store.run_dir(run.id) / CHECKPOINTS
        experiment = get_experiment(run.name) if run.name in EXPERIMENTS else None
        if experiment is None or experiment.generate is None:
            able = ", ".join(name for name, e in EXPERIMENTS.items() if e.generate is not None)
            raise UsageError(f"run {run.id} is a run of {run.name!r}, which generates no text; runs of {able} do")
        checkpoint = latest_checkpoint(root)
        if checkpoint is None:
            raise FileNotFoundError(f"run {run.id} has no checkpoint to sample from (none in {root})")
        config = from_dict(experiment.config, run.config)
        text = experiment.generate(config, checkpoint, args.prompt, args.length, temperature=args.temperature,
                                   top_k=args.top_k, seed=args.seed)
        out.print(text, markup=False, highlight=False, soft_wrap=True)
        return 0

    return guarded("generate", err, work)
