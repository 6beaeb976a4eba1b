"""A live ``cadence serve`` in a subprocess, for the run page's tests, and the runs they read."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cadence.track.store import RunStore

#: Seconds any wait on the server may take before the test fails instead of hanging.
TIMEOUT = 60


@contextmanager
def serving(runs_dir: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``cadence serve --runs-dir runs_dir --port 0 args...``: its address once it listens, and the process
    (stopped with SIGINT at the end, and checked to end cleanly)."""
    process = subprocess.Popen([sys.executable, "-m", "cadence", "serve", "--runs-dir", str(runs_dir), "--port", "0",
                                *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"http://\S+:\d+", line)
        assert found, f"cadence serve printed no address: {line!r} {process.stderr.read() if not line else ''}"
        yield found[0], process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.stderr.close()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of a GET, whatever the status; redirects are not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, (status, body)
    return json.loads(body)


def record(store: RunStore, name: str, config: dict, steps: int = 200, tags: tuple[str, ...] = (),
           finish: str | None = "finished") -> str:
    """A run of ``name`` with a training loss every step and a validation accuracy every 50."""
    run_id = store.create_run(name, config, tags=tags, provenance={"command": "cadence train x"})
    at = np.arange(1, steps + 1)
    store.add_values(run_id, {"train.loss": (at, 1.0 / at), "valid.accuracy": (at[49::50], at[49::50] / steps)})
    if finish:
        store.finish(run_id, finish)
    return run_id
