"""The suite's own settings (tests/conftest.py): Hypothesis stores its examples in an ignored folder, with no deadline."""

from __future__ import annotations

from pathlib import Path

from hypothesis import settings
from hypothesis.configuration import storage_directory

REPO = Path(__file__).resolve().parents[1]


def test_hypothesis_keeps_its_examples_in_the_repositorys_ignored_folder_wherever_pytest_runs():
    assert storage_directory("examples").path == REPO / ".hypothesis" / "examples"
    # Where CI is set, Hypothesis's own ci profile, the parent of ours there, keeps no examples at all.
    database = settings.default.database
    assert database is None or Path(database.path) == REPO / ".hypothesis" / "examples"
    assert ".hypothesis/" in (REPO / ".gitignore").read_text().splitlines()


def test_hypothesis_sets_no_wall_clock_deadline_per_example():
    assert settings.default.deadline is None
