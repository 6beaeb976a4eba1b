"""The benchmarks find their data as the library does: ``--data-dir``, else ``$CADENCE_DATA``, else the user cache."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from cadence.data import ENV_VAR, default_data_dir

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def parse_args(monkeypatch):
    """``benchmarks/common.py``'s ``parse_args(data_dir=True)`` on the given command-line arguments."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)

    def parse(*argv: str):
        # glibc's own allocator: the steady one would change this test process's malloc for good.
        monkeypatch.setattr(sys, "argv", ["benchmark", "--allocator", "default", *argv])
        return common.parse_args("A benchmark.", repeats=1, data_dir=True)

    return parse


def test_data_dir_option_then_environment_then_user_cache(parse_args, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert parse_args("--data-dir", str(tmp_path / "from_option")).data_dir == tmp_path / "from_option"
    assert parse_args().data_dir == tmp_path / "from_env"
    monkeypatch.delenv(ENV_VAR)
    assert parse_args().data_dir == default_data_dir().resolve()


def test_data_dir_is_made_absolute(parse_args, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "relative")
    assert parse_args().data_dir == tmp_path / "relative"


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda path: path.name)
def test_no_benchmark_has_a_data_default_of_its_own(path):
    strings = [node.value for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    assert not [s for s in strings if s == "shared" or "../" in s or "shared/data" in s], path.name
    if path.name != "common.py":
        assert "--data-dir" not in strings, f"{path.name} defines --data-dir itself: use parse_args(data_dir=True)"
