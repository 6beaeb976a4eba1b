"""The built-in experiments, and running one as a recorded run (:mod:`cadence.experiments.runs`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadence.experiments import cifar10, mnist, shakespeare
from cadence.experiments.runs import Built, RunConfig, experiment_run, resume_config
from cadence.train import Trainer

__all__ = ["EXPERIMENTS", "Built", "Experiment", "RunConfig", "experiment_run", "get_experiment", "resume_config",
           "run_experiment"]


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its config class (a :class:`RunConfig`) and how to build it from a config and a data
    directory (a :class:`Built`: the config as it runs, and its trainer once given a run's context).

    ``generate``, for a language model, samples text from a run's checkpoint:
    ``generate(config, checkpoint, prompt, length, temperature=..., top_k=..., seed=...)``
    (``cadence generate``).
    """

    name: str
    description: str
    config: type[RunConfig]
    build: Callable[[Any, str | Path | None], Built]
    generate: Callable[..., str] | None = None


EXPERIMENTS: dict[str, Experiment] = {
    "mnist": Experiment("mnist", "batch-norm CNN on MNIST digits with cadence's Adam", mnist.MNISTConfig, mnist.build),
    "shakespeare": Experiment("shakespeare", "character-level language model of Tiny Shakespeare (LSTM or transformer)",
                              shakespeare.ShakespeareConfig, shakespeare.build, shakespeare.generate_text),
    "cifar10": Experiment("cifar10", "ResNet-20 of He et al. 2016 on CIFAR-10, with batch norm and augmentation",
                          cifar10.CIFAR10Config, cifar10.build),
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name lists the known ones."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known experiments: {', '.join(sorted(EXPERIMENTS))} "
                       f"(see `cadence list`)")
    return EXPERIMENTS[name]


def run_experiment(name: str, config: Any, *, data_dir: str | Path | None = None,
                   runs_dir: str | Path | None = None, console: bool = True, tags: Sequence[str] = ()) -> Trainer:
    """Build experiment ``name`` from ``config``, then train it as a recorded run; return its trainer, run
    (``trainer.run_context.run_id``, ``trainer.status``)."""
    built = get_experiment(name).build(config, data_dir)
    with experiment_run(name, built, runs_dir=runs_dir, tags=tags, console=console) as trainer:
        trainer.run()
    return trainer
