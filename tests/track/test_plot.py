"""Plots of runs, checked on the rendered image: its size, that it is not blank, and one line per run."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from cadence.track import RunStore, Series
from cadence.track.plot import metric_keys, plot_runs


def colour_pixels(image: np.ndarray, colour: str) -> int:
    """Pixels of ``image`` (RGBA floats) within 2% of ``colour``."""
    return int((np.abs(image[..., :3] - np.asarray(to_rgb(colour))).max(axis=-1) < 0.02).sum())


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path) as store:
        yield store


def make_run(store, scale: float, samples: bool = True) -> str:
    run_id = store.create_run("a", {}, provenance={})
    steps = range(1, 101)
    columns = {"train.loss": (steps, [scale * (2 + np.sin(s / 5)) / s ** 0.5 for s in steps]),
               "valid.loss": (steps[9::10], [scale / s ** 0.5 for s in steps[9::10]])}
    if samples:
        columns["train.samples"] = (steps, [32.0 * s for s in steps])
    store.add_values(run_id, columns, {"train.loss": Series("moving", 5), "valid.loss": Series("epoch")})
    return run_id


def test_one_line_per_run_in_an_image_of_the_size_asked_for(store, tmp_path):
    runs = [make_run(store, scale) for scale in (1.0, 2.0, 3.0)]
    path = plot_runs(store, runs, ["train.loss"], tmp_path / "loss.png", size=(8, 4.5), dpi=100)
    image = imread(path)
    assert image.shape[:2] == (450, 800)
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.01  # not blank
    counts = [colour_pixels(image, f"C{i}") for i in range(4)]
    assert all(count > 200 for count in counts[:3]) and counts[3] == 0, counts


def test_train_and_valid_of_a_run_share_its_colour(store, tmp_path):
    run_id = make_run(store, 1.0)
    alone = imread(plot_runs(store, [run_id], ["train.loss"], tmp_path / "train.png"))
    both = imread(plot_runs(store, [run_id], ["loss"], tmp_path / "both.png", x="samples", smooth=10))
    assert colour_pixels(both, "C0") > colour_pixels(alone, "C0") > 200 and colour_pixels(both, "C1") == 0


def test_a_name_without_a_phase_names_every_phase(store):
    keys = ["valid.loss", "train.loss", "test.loss", "train.lr", "model.fc.loss"]
    assert metric_keys(keys, "loss") == ["train.loss", "valid.loss", "test.loss"]
    assert metric_keys(keys, "valid.loss") == ["valid.loss"] and metric_keys(keys, "f1") == []


def test_what_cannot_be_drawn_is_refused_by_name(store, tmp_path):
    run_id = make_run(store, 1.0, samples=False)
    with pytest.raises(ValueError, match=f"plot: run {run_id} records no 'train.samples'"):
        plot_runs(store, [run_id], ["loss"], tmp_path / "x.png", x="samples")
    with pytest.raises(ValueError, match=r"plot: x='epoch' is not an axis; expected one of step, samples"):
        plot_runs(store, [run_id], ["loss"], tmp_path / "x.png", x="epoch")
    assert not (tmp_path / "x.png").exists()
