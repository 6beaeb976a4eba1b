"""A run read back: values as their kinds define them, final and best, config differences, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cadence.track import RunStore, Series, moving_average
from cadence.track.history import MISSING, better, config_differences, flatten, histories


def test_the_moving_average_is_the_mean_of_the_last_values_and_a_nan_spoils_only_its_windows():
    np.testing.assert_allclose(moving_average([1.0, 2.0, 3.0, 4.0], 3), [1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(moving_average([1.0, 2.0, 3.0, math.nan, 5.0, 6.0, 7.0], 2),
                               [1.0, 1.5, 2.5, math.nan, math.nan, 5.5, 6.5])
    assert moving_average([], 3).size == 0


@pytest.mark.parametrize("key, direction", [
    ("valid.loss", "lower"), ("train.nll", "lower"), ("valid.perplexity", "lower"), ("valid.bits_per_character", "lower"),
    ("valid.accuracy", "higher"), ("valid.top5_accuracy", "higher"), ("valid.f1", "higher"), ("valid.recall", "higher"),
    ("train.lr", None), ("model.fc.grad_norm", None),
])
def test_which_way_is_better_is_read_from_the_key(key, direction):
    assert better(key) == direction


def test_final_and_best_are_taken_as_the_kind_defines_the_values(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = store.create_run("a", {}, provenance={})
        store.add_values(run_id, {"train.loss": ([1, 2, 3, 4], [5.0, 0.1, 5.0, 3.0]),
                                  "valid.accuracy": ([2, 4], [0.8, 0.7]), "train.lr": ([1], [0.1])},
                         {"train.loss": Series("moving", 2), "valid.accuracy": Series("epoch")})
        h = histories(store, run_id)
    # train.loss averages over 2: 5, 2.55, 2.55, 4; the single batch at 0.1 is not the best loss.
    assert h["train.loss"].final() == (4, 4.0) and h["train.loss"].best() == (2, pytest.approx(2.55))
    assert h["train.loss"].shown()[1] == "train.loss(avg2)" and h["train.loss"].shown(smooth=1)[1] == "train.loss"
    assert h["valid.accuracy"].best() == (2, 0.8) and h["valid.accuracy"].shown(smooth=5)[1] == "valid.accuracy(epoch)"
    assert h["train.lr"].best() is None and h["train.lr"].final() == (1, 0.1)


def test_config_differences_list_only_what_differs():
    configs = [{"seed": 0, "optimizer": {"name": "adam", "lr": 0.1}, "tags": [1]},
               {"seed": 0, "optimizer": {"name": "adam", "lr": 0.01}, "tags": [1], "extra": True},
               {"seed": 0, "optimizer": {"name": "adam", "lr": 0.1}, "tags": [1]}]
    assert flatten(configs[0]) == {"seed": 0, "optimizer.name": "adam", "optimizer.lr": 0.1, "tags": [1]}
    assert config_differences(configs) == {"optimizer.lr": [0.1, 0.01, 0.1], "extra": [MISSING, True, MISSING]}
    assert config_differences([{"a": 1}, {"a": 1.0}, {"a": True}]) == {"a": [1, 1.0, True]}
