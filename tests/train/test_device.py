"""Tests of cadence.train.device: auto choice and one-line refusals of devices the machine lacks."""

from __future__ import annotations

import pytest
import torch

from cadence.train.device import DeviceError, resolve_device


def test_auto_picks_the_best_device_present(monkeypatch):
    assert resolve_device("auto") == resolve_device(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_forced_devices(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"device='cuda:2': this machine has 2 CUDA devices \(cuda:0 .. cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("device, match", [
    ("cuda", r"^device='cuda': this machine has no CUDA device; it has: cpu \(device=auto picks the best of them\)$"),
    ("mps", r"^device='mps': this machine has no MPS device; it has: cpu"),
    ("gpu", r"^device='gpu' is not a device; expected one of auto, cpu, cuda, mps \(or 'cuda:<index>'\)$"),
    ("meta", r"^device='meta' is not supported; expected one of auto, cpu, cuda, mps$"),
])
def test_a_device_the_machine_lacks_fails_in_one_line(monkeypatch, device, match):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=match):
        resolve_device(device)
