"""``cadence serve``: prints its address, ends cleanly on Ctrl+C, refuses what it cannot serve in one line."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys

import pytest

from cadence.track.store import RunStore
from tests.serve.server import TIMEOUT, get, get_json, record, serving

pytestmark = pytest.mark.slow


def test_serve_prints_its_address_serves_and_ends_cleanly_on_ctrl_c(tmp_path):
    with RunStore(tmp_path) as store:
        run_id = record(store, "mnist", {})
    with serving(tmp_path) as (url, process):
        assert url.startswith("http://127.0.0.1:")
        assert [r["id"] for r in get_json(f"{url}/api/runs")["runs"]] == [run_id]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=TIMEOUT) == 0
        assert "cadence serve: stopped" in process.stdout.read()
        assert "Traceback" not in process.stderr.read()


def test_a_folder_without_runs_yet_is_served_and_its_first_run_shows(tmp_path):
    with serving(tmp_path) as (url, _):
        assert get_json(f"{url}/api/runs")["runs"] == []
        assert get(f"{url}/")[0] == 200
        with RunStore(tmp_path) as store:
            run_id = record(store, "mnist", {})
        assert [r["id"] for r in get_json(f"{url}/api/runs")["runs"]] == [run_id]


def test_another_host_than_loopback_is_warned_about(tmp_path):
    with serving(tmp_path, "--host", "0.0.0.0") as (url, process):
        assert get(f"{url.replace('0.0.0.0', '127.0.0.1')}/api/runs")[0] == 200
        process.send_signal(signal.SIGINT)
        process.wait(timeout=TIMEOUT)
        assert "warning: listening on 0.0.0.0: anyone who can reach" in process.stderr.read()


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cadence", "serve", *args], capture_output=True, text=True,
                          timeout=TIMEOUT)


def test_a_port_in_use_is_refused_in_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = _serve("--runs-dir", str(tmp_path), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"cadence serve: error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port chooses another" in done.stderr and "Traceback" not in done.stderr


def test_a_database_of_another_schema_or_no_folder_is_refused_in_one_line(tmp_path):
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.execute("PRAGMA user_version = 2")
        db.execute("CREATE TABLE runs (id TEXT)")
    done = _serve("--runs-dir", str(tmp_path), "--port", "0")
    assert done.returncode == 1 and "schema version is 2" in done.stderr and "Traceback" not in done.stderr
    done = _serve("--runs-dir", str(tmp_path / "nowhere"), "--port", "0")
    assert done.returncode == 1 and "no runs folder" in done.stderr
    (tmp_path / "fresh").mkdir()
    done = _serve("--runs-dir", str(tmp_path / "fresh"), "--port", "70000")
    assert done.returncode == 1 and "--port 70000 is not a port" in done.stderr
