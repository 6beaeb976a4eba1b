"""Verified downloads: try each mirror in turn, stream into a temporary file, check SHA-256, rename.

A file appears under its final name only once its checksum is right, so a failed, interrupted
or corrupt transfer never leaves a file that looks valid. :func:`fetch_missing` is the data
sets' front end: it downloads the files missing from a data set's folder, or fails with a
:class:`DataNotFoundError` that says which files to put where.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from cadence.data.partial import partial_path

__all__ = ["DEFAULT_TIMEOUT", "DataNotFoundError", "DownloadError", "download", "fetch_missing"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a connection, and then for each read, before giving up on a mirror."""

_CHUNK = 1 << 16
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """No URL delivered the file with the right checksum.

    ``dest`` is the file that was to be written and ``failures`` the ``(url, reason)`` of each
    attempt, in the order tried; the message lists them all.
    """

    def __init__(self, dest: Path, failures: Sequence[tuple[str, str]]) -> None:
        self.dest = dest
        self.failures = list(failures)
        tried = "".join(f"\n  {url}: {reason}" for url, reason in self.failures)
        super().__init__(f"could not download {dest.name} into {dest.parent}; tried:{tried}")


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing from its folder and could not be downloaded.

    The message names the folder, the files to place there (``also`` adds the forms that
    serve as well, e.g. uncompressed or extracted) and why nothing was downloaded: either
    ``download=False`` or each mirror with its error. ``root`` is the folder and ``names`` the
    files still missing.
    """

    def __init__(self, dataset: str, root: Path, names: Sequence[str], *, also: str = "", reason: str) -> None:
        self.root = root
        self.names = list(names)
        super().__init__(
            f"{dataset} files missing from {root}: place {', '.join(names)} there{also}, "
            f"or point the data directory (--data-dir or $CADENCE_DATA) at a folder whose {root.name}/ holds them; "
            f"{reason}"
        )


class _AttemptFailed(Exception):
    """One URL did not deliver the file; the message is the reason."""


def download(urls: Sequence[str], dest: str | Path, sha256: str, *, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download a file from the first of ``urls`` that delivers it with SHA-256 ``sha256``.

    Each URL is tried in turn: an HTTP error (404, 500, ...), a refused or timed-out
    connection, a transfer cut short or a checksum mismatch falls through to the next. The
    body is streamed into a temporary file in ``dest``'s folder, hashed on the way, and
    renamed to ``dest`` (with :func:`os.replace`, replacing any file there) only when its
    checksum matches. Whatever goes wrong, including ``KeyboardInterrupt``, the temporary
    file is deleted. A progress bar is shown when stderr is a terminal.

    Args:
        urls: the mirrors' URLs of the file, tried in order.
        dest: where the file goes; its folder is created if needed.
        sha256: the expected SHA-256 of the file, as 64 hex digits.
        timeout: seconds to wait for a connection and for each read.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``urls`` is empty or ``sha256`` is not 64 hex digits.
        DownloadError: every URL failed; the message lists each URL with its reason.
    """
    dest = Path(dest)
    if not urls:
        raise ValueError(f"no URLs given to download {dest.name}: expected at least one mirror")
    expected = sha256.lower()
    if not _SHA256.fullmatch(expected):
        raise ValueError(f"sha256 {sha256!r} for {dest.name} is not a SHA-256 digest: expected 64 hex digits")
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: list[tuple[str, str]] = []
    for url in urls:
        logger.info("downloading %s to %s", url, dest)
        try:
            _fetch(url, dest, expected, timeout)
        except _AttemptFailed as failure:
            failures.append((url, str(failure)))
            logger.warning("download of %s failed: %s", url, failure)
        else:
            return dest
    raise DownloadError(dest, failures)


def _fetch(url: str, dest: Path, expected: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file next to ``dest``, verify it, and rename it to ``dest``."""
    # Not tempfile.mkstemp: its 0600 mode would stick to the final file; "xb" honours the umask.
    temp = partial_path(dest)
    out = temp.open("xb")
    try:
        with out:
            actual, size = _stream(url, out, timeout)
        if actual != expected:
            raise _AttemptFailed(f"SHA-256 mismatch: expected {expected}, got {actual} ({size} bytes)")
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _stream(url: str, out: BinaryIO, timeout: float) -> tuple[str, int]:
    """Copy the body of ``url`` into ``out``; return its SHA-256 hex digest and its size in bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "cadence"})
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress(url.rsplit("/", 1)[-1], total) as advance:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    advance(len(chunk))
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise _AttemptFailed(f"{type(error).__name__}: {error}") from error
    if total is not None and size != total:
        raise _AttemptFailed(f"transfer cut short: got {size} of {total} bytes")
    return digest.hexdigest(), size


@contextlib.contextmanager
def _progress(name: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar for one transfer when stderr is a terminal; yields ``advance(nbytes)``."""
    if not sys.stderr.isatty():
        yield lambda nbytes: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(name, total=total)
        yield lambda nbytes: progress.advance(task, nbytes)


def fetch_missing(
    dataset: str,
    root: Path,
    names: Sequence[str],
    mirrors: Sequence[str],
    sha256: Mapping[str, str],
    *,
    allowed: bool,
    also: str = "",
    error: type[DataNotFoundError] = DataNotFoundError,
) -> None:
    """Download each of ``names`` (files missing from a data set's folder ``root``) from ``mirrors``.

    File ``name`` comes from ``mirror + name`` for each mirror in turn and must have SHA-256
    ``sha256[name]``. The first file that no mirror delivers stops the downloads.

    Args:
        dataset: the data set's name for messages (``"MNIST"``).
        root: the data set's folder; the files go there.
        names: the missing files' names.
        mirrors: base URLs ending in ``/``.
        sha256: the expected SHA-256 of each file, by name.
        allowed: the data set's ``download`` flag; if false, any missing file is an error.
        also: appended to the list of files in the message, e.g. ``" (or uncompressed)"``.
        error: the :class:`DataNotFoundError` subclass to raise.

    Raises:
        DataNotFoundError: (``error``) a file is still missing; the message names the folder,
            the files still missing, and each mirror tried with its error.
    """
    if not allowed:
        raise error(dataset, root, names, also=also, reason="download=False, so no download was tried")
    for i, name in enumerate(names):
        try:
            download([mirror + name for mirror in mirrors], root / name, sha256[name])
        except DownloadError as failure:
            raise error(dataset, root, names[i:], also=also, reason=str(failure)) from failure
