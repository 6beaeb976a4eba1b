"""Tests of :mod:`cadence.metrics.sync` and ``Metric.sync`` across two real gloo processes on loopback.

Every wait has a timeout (results, joins), so that a hang fails the test instead of the CI run.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import queue
import re
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchmetrics

from cadence.metrics import (F1, Accuracy, AccuracyDirect, BinaryAccuracy, BitsPerCharacter, ConfusionMatrix, Mean,
                             Perplexity, Precision, Recall, sync_metric)
from cadence.metrics.sync import all_reduce_sum

from tests.processes import free_port

from .conftest import classifier_batches

#: Seconds any one wait of the parent may take before the test fails.
WAIT = 120

#: The sync timeout of the process whose peer is gone: long, so that failing at once shows it did not wait for it.
GONE_TIMEOUT = 60

#: The metrics synced, each with how it reads a batch of logits ``[B, S, 10]`` and padded targets ``[B, S]``.
METRICS = {
    "accuracy": (lambda: Accuracy(top_k=2, ignore_index=-100), lambda o, t: (o, t)),
    "direct": (lambda: AccuracyDirect(ignore_index=-100), lambda o, t: (o.argmax(-1), t)),
    "binary": (lambda: BinaryAccuracy(), lambda o, t: (o[..., 1] - o[..., 0], t.remainder(2))),
    "mean": (lambda: Mean(), lambda o, t: (F.cross_entropy(o.flatten(0, 1), t.flatten()), (t != -100).sum())),
    "perplexity": (lambda: Perplexity(ignore_index=-100), lambda o, t: (o, t)),
    "bits": (lambda: BitsPerCharacter(ignore_index=-100), lambda o, t: (o, t)),
    "confusion": (lambda: ConfusionMatrix(10, ignore_index=-100), lambda o, t: (o, t)),
    "precision": (lambda: Precision(10, ignore_index=3), lambda o, t: (o, t.where(t != -100, 3))),
    "recall": (lambda: Recall(10, average="weighted", ignore_index=-100), lambda o, t: (o, t)),
    "f1": (lambda: F1(10, average=None, ignore_index=-100), lambda o, t: (o, t)),
    "torchmetrics": (lambda: torchmetrics.classification.MulticlassAccuracy(10, top_k=2, average="micro",
                                                                            ignore_index=-100),
                     lambda o, t: (o.flatten(0, 1), t.flatten())),
}

#: Batch sizes of each stage, per rank: uneven counts, and a rank without batches after the reset of stage 2.
#: (Every rank updates between two syncs of stages 0 and 1: a torchmetrics metric that has not been updated since
#: its last compute returns its cached value without joining the other processes' gather, which then waits for
#: it until the process group's timeout.)
STAGES = [{0: [9, 4, 7], 1: [8, 3]}, {0: [5, 3, 6], 1: [2]}, {0: [6, 2], 1: []}]


def shard(stage: int, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``rank`` in ``stage``: sequences of 6 tokens, each row padded (-100) after 1 to 6 of them."""
    batches = classifier_batches(STAGES[stage][rank], seq=6, seed=100 * stage + rank) if STAGES[stage][rank] else []
    g = torch.Generator().manual_seed(stage * 7 + rank)
    for _, target in batches:
        lengths = torch.randint(1, 7, (len(target),), generator=g)
        target[torch.arange(6) >= lengths[:, None]] = -100
    return batches


def values(metrics: dict) -> dict[str, list]:
    return {name: metric.compute().double().tolist() for name, metric in metrics.items()}


def stages_worker(metrics: dict, rank: int) -> list[dict[str, list]]:
    """Stage 0, then stage 1 on top of it (sync, report, update, sync again), then stage 2 after a reset."""
    reports = []
    for stage in range(len(STAGES)):
        if stage == 2:
            for metric in metrics.values():
                metric.reset()
        for output, target in shard(stage, rank):
            for name, metric in metrics.items():
                metric.update(*METRICS[name][1](output, target))
        for metric in metrics.values():
            sync_metric(metric, timeout=60)
        reports.append(values(metrics))
    return reports


def worker(rank: int, port: int, scenario: str, results, release) -> None:
    """One process of the group: runs ``scenario`` and puts ``(rank, outcome, payload)`` on ``results``.

    Payloads are plain Python values: a tensor on a queue is shared through its sender, which may be gone.
    """
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    try:
        # The group's own timeout outlasts the parent's WAIT, so that a sync that ignored its own timeout fails the
        # test by WAIT's deadline rather than raising the group's timeout error in its place.
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                                timeout=datetime.timedelta(seconds=2 * WAIT))
        if scenario == "stages":
            metrics = {name: make() for name, (make, _) in METRICS.items()}
            results.put((rank, "ok", stages_worker(metrics, rank)))
        elif rank == 1:
            # The other process: gone before syncing, or alive but never syncing until released.
            if scenario == "gone":
                results.put((rank, "ok", "exiting"))
                results.close()
                results.join_thread()
                os._exit(0)
            release.wait(WAIT)
        else:
            metric = Accuracy() if scenario == "gone" else Mean()
            metric.update(*((torch.randn(3, 4), torch.tensor([0, 1, 2])) if scenario == "gone" else (1.0, 2)))
            try:
                # Gone: a timeout far longer than the error takes, so that only the connection's end can raise it.
                metric.sync(timeout=3 if scenario == "silent" else GONE_TIMEOUT)
                results.put((rank, "no error", None))
            except RuntimeError as e:
                own = {name: state.tolist() for name, state in metric.state_dict().items()}
                results.put((rank, "raised", (str(e), own)))
    except BaseException:
        results.put((rank, "error", traceback.format_exc()))
    results.close()
    results.join_thread()
    # Leave at once: a process group whose peer is gone or stuck can block the interpreter's shutdown.
    os._exit(0)


def launch(scenario: str, expected: int) -> dict[int, tuple[str, object]]:
    """Run ``scenario`` in two spawned processes; the first ``expected`` results, by rank."""
    ctx = multiprocessing.get_context("spawn")
    results, release = ctx.Queue(), ctx.Event()
    port = free_port()
    processes = [ctx.Process(target=worker, args=(rank, port, scenario, results, release), daemon=True)
                 for rank in range(2)]
    for process in processes:
        process.start()
    outcomes = {}
    try:
        for _ in range(expected):
            rank, outcome, payload = results.get(timeout=WAIT)
            assert outcome != "error", f"rank {rank} failed:\n{payload}"
            outcomes[rank] = (outcome, payload)
    except queue.Empty:
        pytest.fail(f"{scenario}: no result within {WAIT} s (got {outcomes})")
    finally:
        release.set()
        for process in processes:
            process.join(timeout=WAIT)
        stuck = [process.pid for process in processes if process.is_alive()]
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    assert not stuck, f"{scenario}: processes {stuck} did not exit within {WAIT} s"
    return outcomes


def single_process_values() -> list[dict[str, list]]:
    """What one process gives over all the data of each stage (stages 0-1 accumulate; stage 2 is afresh)."""
    metrics = {name: make() for name, (make, _) in METRICS.items()}
    reports = []
    for stage in range(len(STAGES)):
        if stage == 2:
            for metric in metrics.values():
                metric.reset()
        for rank in (0, 1):
            for output, target in shard(stage, rank):
                for name, metric in metrics.items():
                    metric.update(*METRICS[name][1](output, target))
        reports.append(values(metrics))
    return reports


@pytest.mark.slow
def test_two_processes_with_uneven_batches_give_the_value_of_one_over_all_the_data():
    outcomes = launch("stages", expected=2)
    expected = single_process_values()
    for rank in (0, 1):
        outcome, reports = outcomes[rank]
        assert outcome == "ok"
        for stage, (report, want) in enumerate(zip(reports, expected)):
            for name in METRICS:
                np.testing.assert_allclose(report[name], want[name], rtol=1e-12 if name != "torchmetrics" else 1e-6,
                                           err_msg=f"rank {rank}, stage {stage}, {name}")
    # The data made every kind of value meaningful: not NaN, counts not zero.
    assert all(not np.isnan(v).any() for report in expected for v in report.values())


@pytest.mark.slow
def test_a_sync_with_a_process_gone_fails_naming_the_metric():
    outcomes = launch("gone", expected=2)
    outcome, payload = outcomes[0]
    assert outcome == "raised", outcome
    message, state = payload
    assert message.startswith("Accuracy.sync: summing its states across the 2 processes failed")
    # It failed on the closed connection, at once, not when its timeout ran out (a hang fails by WAIT's deadline).
    assert f"(timeout {GONE_TIMEOUT} s)" in message and "timed out" not in message.lower(), message
    assert state["total"] == 3  # the metric's own counts are left as they were


@pytest.mark.slow
def test_a_sync_with_a_process_that_never_joins_fails_after_its_timeout():
    outcomes = launch("silent", expected=1)
    outcome, payload = outcomes[0]
    assert outcome == "raised", outcome
    message, _ = payload
    assert re.match(r"Mean\.sync: summing its states across the 2 processes failed after \d+\.\d s \(timeout 3 s\): "
                    r"Operation timed out", message), message


def test_a_timeout_is_a_positive_number():
    with pytest.raises(ValueError, match=r"Accuracy.sync: timeout=0.0 is out of range; expected timeout > 0"):
        all_reduce_sum([torch.zeros(())], datetime.timedelta(0), where="Accuracy.sync")
    with pytest.raises(TypeError, match=r"Mean.sync: timeout='1' is a str"):
        all_reduce_sum([torch.zeros(())], "1", where="Mean.sync")
