"""Provenance: versions, command, host, and the git commit and uncommitted diff of the working tree."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import cadence
from cadence import __version__
from cadence.track import RunStore, collect_provenance
from cadence.track.provenance import running_code

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with one commit of ``train.py``."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "a@b.c")
    git(tmp_path, "config", "user.name", "A")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_versions_command_and_host(tmp_path):
    provenance, diff = collect_provenance(["/venv/bin/cadence", "train", "mnist", "optimizer.lr=3e-4 x"], tmp_path)
    assert provenance["cadence"] == __version__ and provenance["torch"] == torch.__version__
    assert provenance["python"] == platform.python_version() and provenance["host"]
    assert provenance["command"] == "cadence train mnist 'optimizer.lr=3e-4 x'"
    assert provenance["cwd"] == str(tmp_path) and provenance["git"] is None and diff == ""


def test_a_clean_working_tree_gives_its_commit_and_no_diff(repo):
    provenance, diff = collect_provenance([], repo)
    assert provenance["git"] == {"root": str(repo), "commit": git(repo, "rev-parse", "HEAD"), "branch": "main",
                                 "dirty": False, "untracked": [], "untracked_total": 0}
    assert diff == ""


def test_uncommitted_changes_give_the_diff_that_restores_them(repo, tmp_path_factory):
    (repo / "train.py").write_text("lr = 0.3\n")
    (repo / "model.py").write_text("staged = True\n")
    git(repo, "add", "model.py")
    (repo / "notes.txt").write_text("untracked\n")
    provenance, diff = collect_provenance([], repo)
    assert provenance["git"]["dirty"] and provenance["git"]["untracked"] == ["notes.txt"]
    assert "-lr = 0.1" in diff and "+lr = 0.3" in diff and "+staged = True" in diff
    # The commit and the diff give back the code that ran.
    clone = tmp_path_factory.mktemp("clone")
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=30)
    git(clone, "checkout", "-q", provenance["git"]["commit"])
    subprocess.run(["git", "-C", str(clone), "apply", "-"], input=diff, text=True, check=True, timeout=30)
    assert (clone / "train.py").read_text() == "lr = 0.3\n" and (clone / "model.py").read_text() == "staged = True\n"


def test_a_repository_without_commits(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    provenance, diff = collect_provenance([], tmp_path)
    assert provenance["git"]["commit"] is None and "+x = 1" in diff


def test_a_run_created_in_a_repository_keeps_its_diff(repo, monkeypatch):
    (repo / "train.py").write_text("lr = 0.3\n")
    monkeypatch.chdir(repo)
    with RunStore(repo / "runs") as store:
        run = store.get_run(store.create_run("a", {}))
    assert run.provenance["git"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert "+lr = 0.3" in (repo / "runs" / run.id / "source.diff").read_text()


def test_the_repository_recorded_is_the_one_of_the_script_run_not_of_the_folder_it_runs_in(repo, tmp_path_factory):
    (repo / "train.py").write_text("import json\nfrom cadence.track import collect_provenance\n"
                                   "print(json.dumps(collect_provenance()[0]['git']))\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    git(elsewhere, "init", "-q")
    result = subprocess.run([sys.executable, str(repo / "train.py")], cwd=elsewhere, capture_output=True, text=True,
                            timeout=120, check=True)
    recorded = json.loads(result.stdout)
    assert recorded["root"] == str(repo) and recorded["commit"] == git(repo, "rev-parse", "HEAD")
    assert recorded["dirty"]  # train.py, as run, differs from its commit


@pytest.mark.parametrize("entry", ["cadence/__main__.py", "bin/cadence"])
def test_the_cadence_command_records_cadences_own_code(monkeypatch, tmp_path, entry):
    package = Path(cadence.__file__).parent.resolve()
    main = types.ModuleType("__main__")
    main.__file__ = str(package / "__main__.py" if entry.startswith("cadence/") else tmp_path / entry)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert running_code() == package


def test_an_installed_tool_or_a_notebook_records_the_folder_it_runs_in(monkeypatch, tmp_path):
    main = types.ModuleType("__main__")
    main.__file__ = str(tmp_path / "venv" / "lib" / "site-packages" / "pytest" / "__main__.py")
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert running_code(tmp_path) == tmp_path
    del main.__file__  # an interactive session
    monkeypatch.chdir(tmp_path)
    assert running_code() == tmp_path
