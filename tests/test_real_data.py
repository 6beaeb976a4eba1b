"""The suite's real data: fetched once into the data directory, or the session stops at once with one message."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import cadence.data.download as download_module
import cadence.data.text as text_module
import tests.real_data as real_data
from cadence.data import ENV_VAR, MNIST
from tests.data.conftest import base_url, serving
from tests.real_data import REAL_DATA, RealDataMissing, fetch_real_data

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = [name.removeprefix("mnist/") for name in REAL_DATA if name.startswith("mnist/")]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on what the client saw."""


def refuse_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any download attempt fail the test."""
    monkeypatch.setattr(download_module, "download", lambda *args, **kwargs: pytest.fail("no download expected"))
    monkeypatch.setattr(text_module, "download_file", lambda *args, **kwargs: pytest.fail("no download expected"))


def test_missing_data_is_downloaded_and_verified_then_used_as_it_is(data_dir, tmp_path, monkeypatch):
    # A local mirror serving the shared files, standing in for MNIST's mirrors and Tiny Shakespeare's URL.
    served = tmp_path / "mirror"
    for name in REAL_DATA:
        (served / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / name, served / name)
    sha = {name: hashlib.sha256((served / name).read_bytes()).hexdigest() for name in REAL_DATA}
    with serving(functools.partial(Quiet, directory=str(served))) as httpd:
        text_url = f"{base_url(httpd)}/tinyshakespeare/input.txt"
        monkeypatch.setattr(MNIST, "MIRRORS", (f"{base_url(httpd)}/mnist/",))
        monkeypatch.setattr(MNIST, "SHA256", {name: sha[f"mnist/{name}"] for name in MNIST_FILES})
        monkeypatch.setattr(real_data, "TINY_SHAKESPEARE_URL", text_url)
        monkeypatch.setitem(text_module.KNOWN_SHA256, text_url, sha["tinyshakespeare/input.txt"])
        fetch_real_data(tmp_path / "data")
    for name in REAL_DATA:
        assert (tmp_path / "data" / name).read_bytes() == (served / name).read_bytes(), name
    # Present now: read as they are, without a download (the server is gone).
    refuse_downloads(monkeypatch)
    fetch_real_data(tmp_path / "data")


def first(path: Path, count: int) -> bytes:
    """The gzip IDX file ``path`` (MNIST's images, magic 2051, or labels, 2049) cut to its first ``count`` items."""
    content = gzip.decompress(path.read_bytes())
    magic, total = struct.unpack_from(">2I", content)
    dims = struct.unpack_from(">2I", content, 8) if magic == 2051 else ()  # each image's rows and columns
    assert total >= count, f"{path} holds {total} items, fewer than {count}"
    header = struct.pack(f">{2 + len(dims)}I", magic, count, *dims)
    return gzip.compress(header + content[len(header):len(header) + count * math.prod(dims)])


def test_local_files_are_checked_by_structure_not_checksum(data_dir, tmp_path, monkeypatch):
    # A subset in the official format, the first 100 digits of each split of whatever the data directory holds (the
    # official files or a subset of them): no official file's checksum, and accepted all the same, without a download.
    for name in REAL_DATA:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(first(data_dir / name, 100) if name.startswith("mnist/") else
                                      (data_dir / name).read_bytes())
    checksums = {hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in REAL_DATA}
    assert not checksums & set(MNIST.SHA256.values())
    refuse_downloads(monkeypatch)
    fetch_real_data(tmp_path)
    assert len(MNIST(tmp_path, train=True, download=False)) == len(MNIST(tmp_path, train=False, download=False)) == 100


def test_a_corrupt_local_file_is_named(data_dir, tmp_path, monkeypatch):
    for name in REAL_DATA:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / name, tmp_path / name)
    broken = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-100])
    refuse_downloads(monkeypatch)
    with pytest.raises(RealDataMissing) as info:
        fetch_real_data(tmp_path)
    message = str(info.value)
    assert f"the tests need real data in the data directory {tmp_path}" in message
    assert f"{broken}: corrupt gzip stream" in message and ENV_VAR in message


def test_uncompressed_mnist_files_are_not_enough(data_dir, tmp_path, monkeypatch):
    for name in REAL_DATA:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress((data_dir / name).read_bytes()))
        else:
            shutil.copy(data_dir / name, tmp_path / name)
    refuse_downloads(monkeypatch)
    with pytest.raises(RealDataMissing, match=r"not there: mnist/train-images-idx3-ubyte.gz, .*uncompressed files"):
        fetch_real_data(tmp_path)


@pytest.fixture
def offline_pytest(tmp_path):
    """Run pytest with the suite's conftest on a tiny test file, an empty data directory and every download refused.

    Downloads go through a proxy on a local port nothing listens on, so they are refused at once,
    with or without a network. Returns ``run(*args)`` giving the finished process.
    """
    (tmp_path / "test_tiny.py").write_text(
        "def test_needs_data(data_dir):\n"
        "    (data_dir / 'test ran').touch()\n"
        "\n"
        "\n"
        "def test_needs_nothing():\n"
        "    pass\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {key: value for key, value in os.environ.items() if key.lower() not in ("no_proxy", "all_proxy")}
    env |= {ENV_VAR: str(tmp_path / "empty"), "PYTHONPATH": str(REPO), "http_proxy": proxy, "https_proxy": proxy,
            "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy}

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                   "--rootdir", str(tmp_path), str(tmp_path / "test_tiny.py"), *args]
        # The timeout only guards against a hang; the session is expected to stop before any test runs.
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    return run


@pytest.mark.slow
def test_offline_without_data_the_session_stops_before_any_test_with_one_message(offline_pytest, tmp_path):
    result = offline_pytest()
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.INTERRUPTED, output
    assert output.count("the tests need real data in the data directory") == 1, output
    assert str(tmp_path / "empty") in output and f"Set {ENV_VAR} to a folder holding these files" in output
    assert all(name in output for name in REAL_DATA), output
    assert "Connection refused" in output  # downloads were tried, and refused
    assert output.splitlines()[-1].startswith("no tests ran in "), output  # pytest's summary: nothing ran
    assert not (tmp_path / "empty" / "test ran").exists()


@pytest.mark.slow
def test_a_session_that_needs_no_data_runs_without_it(offline_pytest, tmp_path):
    result = offline_pytest("-k", "needs_nothing")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 deselected" in result.stdout
    assert not (tmp_path / "empty").exists()  # nothing was fetched: no test needed it
