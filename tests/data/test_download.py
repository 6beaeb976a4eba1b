"""download: real HTTP against a local server: success, fall-through, checksum mismatch, cut, stalled, killed and
refused transfers, and the progress bar on a real pseudo-terminal."""

from __future__ import annotations

import hashlib
import http.server
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cadence.data.download as download_module
from cadence.data.download import DownloadError, download
from cadence.data.partial import STALE_SECONDS

from .conftest import base_url, serving

BODY = bytes(range(256)) * 1000
SHA = hashlib.sha256(BODY).hexdigest()


@dataclass
class Route:
    """What the server answers for a path: a status, a body, optionally a larger Content-Length, and optionally
    a pause after the first ``stall_after`` bytes until the test sets ``resume``.

    ``stall_seconds`` only bounds a pause that a failing test never ends; no test waits for it.
    """

    status: int = 200
    body: bytes = b""
    content_length: int | None = None
    stall_after: int | None = None
    resume: threading.Event = field(default_factory=threading.Event)
    stall_seconds: float = 120.0


@dataclass
class Server:
    """A local HTTP server; ``routes`` maps a path to its :class:`Route` (unknown paths get 404)."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.lstrip("/"), Route(404, b"not found"))
        self.send_response(route.status)
        length = len(route.body) if route.content_length is None else route.content_length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if route.stall_after is None:
            self.wfile.write(route.body)
            return
        self.wfile.write(route.body[: route.stall_after])
        self.wfile.flush()
        route.resume.wait(route.stall_seconds)
        try:
            self.wfile.write(route.body[route.stall_after :])
        except OSError:
            pass  # the client gave up or was killed while the server waited

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on what the client saw."""


@pytest.fixture
def server() -> Iterator[Server]:
    with serving(Handler) as httpd:
        state = Server(base_url(httpd))
        httpd.routes = state.routes
        yield state


@pytest.fixture
def refused_url(refused_base) -> str:
    """A URL on a local port nothing listens on."""
    return f"{refused_base}/file.bin"


def test_success(server, tmp_path):
    server.routes["file.bin"] = Route(body=BODY)
    dest = tmp_path / "sub" / "file.bin"
    assert download([server.url("file.bin")], dest, SHA) == dest
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SHA
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]


def test_uppercase_checksum_accepted(server, tmp_path):
    server.routes["file.bin"] = Route(body=BODY)
    download([server.url("file.bin")], tmp_path / "file.bin", SHA.upper())
    assert (tmp_path / "file.bin").read_bytes() == BODY


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_falls_through_to_next_mirror(server, tmp_path, caplog, status):
    server.routes["a/file.bin"] = Route(status, b"error page")
    server.routes["b/file.bin"] = Route(body=BODY)
    dest = download([server.url("a/file.bin"), server.url("b/file.bin")], tmp_path / "file.bin", SHA)
    assert dest.read_bytes() == BODY
    assert f"HTTP Error {status}" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.routes["file.bin"] = Route(body=BODY[:-1] + b"x")
    actual = hashlib.sha256(BODY[:-1] + b"x").hexdigest()
    url = server.url("file.bin")
    with pytest.raises(DownloadError) as info:
        download([url], tmp_path / "file.bin", SHA)
    message = str(info.value)
    assert url in message and SHA in message and actual in message
    assert f"SHA-256 mismatch: expected {SHA}, got {actual}" in message
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_falls_through_to_next_mirror(server, tmp_path):
    server.routes["bad/file.bin"] = Route(body=b"corrupt")
    server.routes["good/file.bin"] = Route(body=BODY)
    download([server.url("bad/file.bin"), server.url("good/file.bin")], tmp_path / "file.bin", SHA)
    assert (tmp_path / "file.bin").read_bytes() == BODY


def test_cut_transfer_leaves_nothing(server, tmp_path):
    server.routes["file.bin"] = Route(body=BODY[:10], content_length=len(BODY))
    with pytest.raises(DownloadError, match=f"transfer cut short: got 10 of {len(BODY)} bytes"):
        download([server.url("file.bin")], tmp_path / "file.bin", SHA)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_nothing(server, tmp_path, monkeypatch):
    class Interrupted:
        def update(self, chunk: bytes) -> None:
            raise KeyboardInterrupt

    server.routes["file.bin"] = Route(body=BODY)
    monkeypatch.setattr(download_module.hashlib, "sha256", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        download([server.url("file.bin")], tmp_path / "file.bin", SHA)
    assert list(tmp_path.iterdir()) == []


# The stalled server waits for the test, not for a time: however slow the machine, the transfer
# is still stalled when the client's timeout expires (in the body, or already in the headers).


def test_stalled_transfer_times_out_and_leaves_nothing(server, tmp_path):
    route = server.routes["file.bin"] = Route(body=BODY, stall_after=1000)
    try:
        with pytest.raises(DownloadError, match=f"{server.url('file.bin')}: .*timed out"):
            download([server.url("file.bin")], tmp_path / "file.bin", SHA, timeout=0.2)
    finally:
        route.resume.set()
    assert list(tmp_path.iterdir()) == []


def test_stalled_mirror_falls_through_to_next(server, tmp_path):
    route = server.routes["slow/file.bin"] = Route(body=BODY, stall_after=1000)
    # The next mirror is a local file: no timeout can cut it, however loaded the machine.
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "file.bin").write_bytes(BODY)
    dest = tmp_path / "data" / "file.bin"
    try:
        download([server.url("slow/file.bin"), (tmp_path / "mirror" / "file.bin").as_uri()], dest, SHA, timeout=0.2)
    finally:
        route.resume.set()
    assert dest.read_bytes() == BODY and list(dest.parent.iterdir()) == [dest]


def run_download(url: str, dest: Path, **popen) -> subprocess.Popen:
    """A separate Python process that downloads ``url`` to ``dest`` with cadence's sources."""
    code = "import sys; from cadence.data.download import download; download([sys.argv[1]], sys.argv[2], sys.argv[3])"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-c", code, url, str(dest), SHA], env=env, **popen)


def test_killed_download_leaves_no_file_under_the_final_name(server, tmp_path):
    route = server.routes["file.bin"] = Route(body=BODY, stall_after=len(BODY) // 2)
    dest = tmp_path / "file.bin"
    process = run_download(server.url("file.bin"), dest)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part") and p.stat().st_size > 0 for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    route.resume.set()
    assert not dest.exists()
    [partial] = tmp_path.iterdir()  # a killed process cannot clean up; the partial file never looks complete
    assert partial.name.startswith(".file.bin.") and partial.stat().st_size < len(BODY)
    server.routes["file.bin"] = Route(body=BODY)
    download([server.url("file.bin")], dest, SHA)
    assert dest.read_bytes() == BODY
    assert partial.exists()  # it might still be another process's transfer
    # An hour later nothing can still be writing it: the next download of the file removes it.
    stale = time.time() - STALE_SECONDS - 1
    os.utime(partial, (stale, stale))
    dest.unlink()
    download([server.url("file.bin")], dest, SHA)
    assert list(tmp_path.iterdir()) == [dest]


def shown_amounts(screen: bytes) -> set[float]:
    """The kB amounts of the 256 kB transfer that the progress bar's frames on ``screen`` show."""
    return {float(amount) for amount in re.findall(r"([\d.]+)/256\.0 kB", screen.decode("utf-8", "replace"))}


def test_progress_bar_shows_on_a_real_terminal(server, tmp_path):
    # The transfer stalls halfway until the terminal shows a frame of it there: however slow the
    # machine, the bar gets its chance to draw one.
    route = server.routes["data.bin"] = Route(body=BODY, stall_after=len(BODY) // 2)
    controller, terminal = pty.openpty()
    process = run_download(server.url("data.bin"), tmp_path / "data.bin", stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process exited
                break
            if not chunk:
                break
            screen += chunk
            if any(0 < amount < 256 for amount in shown_amounts(screen)):
                route.resume.set()
    finally:
        route.resume.set()
        os.close(controller)
    assert process.wait(timeout=60) == 0
    text = screen.decode("utf-8", "replace")
    assert "data.bin" in text and "━" in text
    shown = shown_amounts(screen)
    assert 0.0 in shown and 256.0 in shown
    assert any(0 < amount < 256 for amount in shown), f"no frame mid-transfer, only {shown}"
    assert (tmp_path / "data.bin").read_bytes() == BODY


def test_failed_download_keeps_existing_file(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    server.routes["file.bin"] = Route(body=b"corrupt")
    with pytest.raises(DownloadError):
        download([server.url("file.bin")], dest, SHA)
    assert dest.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [dest]


def test_all_mirrors_fail_lists_each_with_reason(server, refused_url, tmp_path):
    server.routes["gone/file.bin"] = Route(500, b"oops")
    urls = [server.url("missing/file.bin"), server.url("gone/file.bin"), refused_url]
    with pytest.raises(DownloadError) as info:
        download(urls, tmp_path / "file.bin", SHA)
    error = info.value
    assert isinstance(error, OSError)
    assert [url for url, _ in error.failures] == urls
    message = str(error)
    assert f"could not download file.bin into {tmp_path}" in message
    assert f"{urls[0]}: HTTPError: HTTP Error 404" in message
    assert f"{urls[1]}: HTTPError: HTTP Error 500" in message
    assert f"{urls[2]}: URLError: <urlopen error [Errno 111] Connection refused>" in message
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_only_on_a_terminal(server, tmp_path, monkeypatch, capsys):
    server.routes["file.bin"] = Route(body=BODY)
    download([server.url("file.bin")], tmp_path / "a.bin", SHA)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    download([server.url("file.bin")], tmp_path / "b.bin", SHA)
    assert "file.bin" in capsys.readouterr().err
    assert (tmp_path / "b.bin").read_bytes() == BODY


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no URLs given to download file.bin"):
        download([], tmp_path / "file.bin", SHA)
    with pytest.raises(ValueError, match="sha256 'abc' for file.bin is not a SHA-256 digest"):
        download(["http://127.0.0.1/file.bin"], tmp_path / "file.bin", "abc")
