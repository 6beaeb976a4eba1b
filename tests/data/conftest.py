"""Local HTTP servers for the download tests: real transfers on 127.0.0.1, nothing outside."""

from __future__ import annotations

import functools
import gzip
import http.server
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def serving(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serve ``handler`` on an ephemeral port of 127.0.0.1 for the length of the block."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def base_url(httpd: http.server.ThreadingHTTPServer) -> str:
    """``http://127.0.0.1:<port>`` of a server started by :func:`serving`."""
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file's header gives (``(N, 28, 28)`` for MNIST's images), read with gzip and struct.

    The real data's counts come from its files: the shared subset holds 8,000 / 2,000 digits, the
    official files that a fresh machine downloads 60,000 / 10,000.
    """
    with gzip.open(path, "rb") as file:
        ndim = file.read(4)[3]
        return struct.unpack(f">{ndim}I", file.read(4 * ndim))


@pytest.fixture
def refused_base() -> str:
    """``http://127.0.0.1:<port>`` of a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def mirror(tmp_path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder: yields ``(base URL ending in /, folder)``; files put there are served."""
    folder = tmp_path / "mirror"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests assert on what the client saw."""

    with serving(functools.partial(Quiet, directory=str(folder))) as httpd:
        yield f"{base_url(httpd)}/", folder
