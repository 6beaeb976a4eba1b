"""Tests of cadence.train.rng: every generator restored, through a weights_only checkpoint file."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from cadence.train.rng import rng_state, set_rng_state


def draws() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(3).tolist(), torch.randn(2).tolist())


def test_every_generator_replays_after_a_weights_only_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()  # leave every generator mid-stream (NumPy and Python with a cached Gaussian)
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = draws()
    draws()
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert draws() == expected
