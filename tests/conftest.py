"""Shared set-up: the real data sets, fetched once before the first test that needs them, and seeded randomness.

Tests that take the ``data_dir`` fixture run on real data: MNIST's IDX files and Tiny
Shakespeare in the data directory, resolved as the library resolves it (``$CADENCE_DATA``,
else the user cache folder). After collection, and before the first test runs, whatever of
it is missing is downloaded with cadence's own verified downloads; where that fails (no
network, no data) the session stops at once with one message that names the folder, the
files and ``CADENCE_DATA``, instead of failing every data test on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from cadence.data import resolve_data_dir
from tests.real_data import RealDataMissing, fetch_real_data

REPO = Path(__file__).resolve().parents[1]

# The suite's tensors are small: one intra-op thread is faster for them and immune to the
# other core being busy (OpenMP threads spin-waiting on a shared core cost 100x on tiny ops).
torch.set_num_threads(1)

# Hypothesis keeps its example database and caches in the repository's ignored .hypothesis/, wherever
# pytest runs from, and sets no deadline per example: a wall-clock limit fails at random on a loaded machine.
set_hypothesis_home_dir(REPO / ".hypothesis")
settings.register_profile("cadence", deadline=None)
settings.load_profile("cadence")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test runs: fetch the real data if a collected test needs it, or stop the session."""
    if session.config.option.collectonly or not any("data_dir" in getattr(item, "fixturenames", ())
                                                    for item in session.items):
        return
    try:
        fetch_real_data(resolve_data_dir())
    except RealDataMissing as error:
        pytest.exit(str(error), returncode=pytest.ExitCode.INTERRUPTED)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory holding the real data sets (``$CADENCE_DATA``, else the user cache folder).

    The session fetched them before the first test ran (see :func:`pytest_collection_finish`).
    """
    return resolve_data_dir()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
