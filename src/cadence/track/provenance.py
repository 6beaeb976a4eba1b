"""What reproduces a run, besides its config: the versions, the command, the host and the source.

:func:`collect_provenance` is recorded with every new run (:meth:`cadence.track.RunStore.create_run`)::

    {"cadence": "0.1.0", "torch": "2.13.0", "python": "3.11.7", "platform": "Linux-6.1-x86_64",
     "command": "cadence train mnist optimizer.lr=3e-4", "cwd": "/home/me/project", "host": "gpu-3",
     "git": {"root": "/home/me/project", "commit": "4f1c...", "branch": "main", "dirty": true,
             "untracked": ["notes.txt"]}}

and, as labml's ``source.diff`` did, the uncommitted changes of the working tree (``git diff
HEAD``: staged and unstaged changes to tracked files) are returned as text, which the store
writes to ``source.diff`` in the run's folder: the commit and that diff give back the code
that ran. Untracked files are listed by name, not copied. Outside a repository, or without
``git``, ``git`` is ``None``.

The repository is the one of **the code being run** (:func:`running_code`), not of whatever
folder the command was started in: ``python ~/lm/train.py`` started in ``~/data`` records
``~/lm``'s commit and diff; ``cadence train`` records cadence's own.
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cadence import __version__

#: Seconds each ``git`` command may take before it is given up (a huge or networked repository).
GIT_TIMEOUT = 10.0

#: Untracked files listed by name at most (a working tree full of outputs would list thousands).
MAX_UNTRACKED = 200


def collect_provenance(argv: Sequence[str] | None = None, cwd: str | os.PathLike | None = None,
                       code: str | os.PathLike | None = None) -> tuple[dict[str, Any], str]:
    """``(provenance, diff)`` of a run started now by the command ``argv`` (default ``sys.argv``) in
    ``cwd`` (default the current folder), running the code in folder ``code`` (default
    :func:`running_code`), whose repository's state is recorded: see the module docstring.
    ``diff`` is ``""`` outside a repository or with no uncommitted change."""
    cwd = Path.cwd() if cwd is None else Path(cwd)
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name or argv[0]
    git, diff = _git(running_code(cwd) if code is None else Path(code))
    return {
        "cadence": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": shlex.join(argv),
        "cwd": str(cwd),
        "host": socket.gethostname(),
        "git": git,
    }, diff


def running_code(cwd: str | os.PathLike | None = None) -> Path:
    """The folder of the code this process runs: its script's (``python train.py``, ``python -m pkg.train``), or
    cadence's own package for the ``cadence`` command (and ``python -m cadence``); ``cwd`` (default: the current
    folder) where there is no script of the user's (an interactive session, a notebook, an installed tool such as
    ``python -m pytest`` running code from there)."""
    file = getattr(sys.modules.get("__main__"), "__file__", None)
    script, package = Path(file or ".").resolve(), Path(__file__).resolve().parents[1]
    if file is not None and (script.name == "cadence" or script.is_relative_to(package)):
        return package
    if file is None or {"site-packages", "dist-packages"} & set(script.parts):
        return Path.cwd() if cwd is None else Path(cwd)
    return script.parent


def _git(cwd: Path) -> tuple[dict[str, Any] | None, str]:
    """The repository around ``cwd`` (root, commit, branch, dirty, untracked files) and ``git diff HEAD``."""
    root = _run(["rev-parse", "--show-toplevel"], cwd)
    if root is None:
        return None, ""
    commit = _run(["rev-parse", "--verify", "--quiet", "HEAD"], cwd)
    branch = _run(["symbolic-ref", "--short", "--quiet", "HEAD"], cwd)
    # Without a commit yet, everything staged is the change.
    diff = _run(["diff", "HEAD"] if commit else ["diff", "--cached"], cwd, strip=False) or ""
    untracked = (_run(["ls-files", "--others", "--exclude-standard"], cwd) or "").splitlines()
    return {"root": root, "commit": commit, "branch": branch, "dirty": bool(diff or untracked),
            "untracked": untracked[:MAX_UNTRACKED], "untracked_total": len(untracked)}, diff


def _run(args: list[str], cwd: Path, strip: bool = True) -> str | None:
    """The output of ``git args`` in ``cwd``, or ``None`` if it fails (not a repository, no git, too slow)."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, errors="replace",
                                timeout=GIT_TIMEOUT, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() if strip else result.stdout
