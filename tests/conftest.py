"""Shared fixtures: the real data directory and seeded randomness."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# The suite's tensors are small: one intra-op thread is faster for them and immune to the
# other core being busy (OpenMP threads spin-waiting on a shared core cost 100x on tiny ops).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The directory holding the real data sets (``CADENCE_DATA``, else ``../shared/data``).

    Tests run on real data; a missing directory is an error of the set-up, not a skip.
    """
    path = Path(os.environ.get("CADENCE_DATA", REPO.parent / "shared" / "data")).resolve()
    if not (path / "mnist").is_dir():
        pytest.fail(f"real data not found at {path}: set CADENCE_DATA to the folder holding mnist/ and tinyshakespeare/")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
