"""The run settings every experiment's config shares."""

from __future__ import annotations

from cadence.experiments.runs import RunConfig


def test_a_run_steps_once_per_window_and_once_more_for_a_short_last_window_of_each_epoch():
    assert RunConfig(epochs=3, update_batches=4).optimizer_steps(12) == 9
    assert RunConfig(epochs=3, update_batches=4).optimizer_steps(10) == 9
    assert RunConfig(epochs=2).optimizer_steps(7) == 14


def test_every_safe_field_may_change_unless_a_config_says_otherwise():
    assert RunConfig().safe_to_change() == RunConfig.SAFE_TO_CHANGE
