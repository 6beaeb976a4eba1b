"""The run settings every experiment's config shares."""

from __future__ import annotations

from cadence.config import apply_overrides
from cadence.experiments.runs import RunConfig


def test_a_run_steps_once_per_window_and_once_more_for_a_short_last_window_of_each_epoch():
    assert RunConfig(epochs=3, update_batches=4).optimizer_steps(12) == 9
    assert RunConfig(epochs=3, update_batches=4).optimizer_steps(10) == 9
    assert RunConfig(epochs=2).optimizer_steps(7) == 14


def test_every_safe_field_may_change_unless_a_schedule_is_laid_over_the_runs_length():
    assert RunConfig().safe_to_change() == RunConfig.SAFE_TO_CHANGE
    over_the_run = apply_overrides(RunConfig(), ["optimizer.schedule=cosine"])
    assert over_the_run.safe_to_change() == ("num_threads", "checkpoint_every", "keep_last", "dist_timeout", "strategy",
                                             "checkpoint_async", "tensorboard")
    assert apply_overrides(RunConfig(), ["optimizer.name=adam_warmup_cosine_decay"]).safe_to_change() == \
        over_the_run.safe_to_change()
    fixed_length = apply_overrides(RunConfig(), ["optimizer.schedule=cosine", "optimizer.total_steps=1000"])
    assert fixed_length.safe_to_change() == RunConfig.SAFE_TO_CHANGE


def test_a_batch_size_is_global_and_each_process_takes_its_part_or_a_clear_error():
    import pytest
    import torch

    from cadence.config import ConfigError
    from cadence.experiments.runs import Setup

    setup = Setup(RunConfig(), torch.device("cpu"), world_size=4, rank=3)
    assert setup.per_process("batch_size", 64) == 16
    assert setup.shard == {"world_size": 4, "rank": 3}
    with pytest.raises(ConfigError, match=r"^batch_size=30 is a global batch, shared by 4 processes: expected a "
                                          r"multiple of 4 \(e.g. batch_size=28\)$"):
        setup.per_process("batch_size", 30)
    assert Setup(RunConfig(), torch.device("cpu"), world_size=1, rank=0).per_process("batch_size", 30) == 30


def test_tensorboard_true_writes_event_files_into_the_runs_folder_and_may_change_on_resume(tmp_path):
    import functools

    import pytest
    import torch
    from torch import nn

    from cadence.experiments.runs import Built, experiment_run
    from cadence.train import Trainer

    pytest.importorskip("tensorboard")
    from tests.track.test_tensorboard import scalars

    def built(*overrides: str) -> Built:
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
        return Built(apply_overrides(RunConfig(), list(overrides)), functools.partial(
            Trainer, model, torch.optim.SGD(model.parameters(), lr=0.1), data, data[:1],
            loss_fn=nn.functional.cross_entropy, epochs=1))

    assert "tensorboard" in RunConfig().safe_to_change()
    for overrides, written in ((), False), (("tensorboard=true",), True):
        with experiment_run("tiny", built(*overrides), runs_dir=tmp_path, console=False) as trainer:
            trainer.run()
        folder = trainer.run_dir / "tensorboard"
        assert folder.is_dir() == written
    assert [step for step, _ in scalars(folder)["train/loss"]] == [1, 2, 3]
