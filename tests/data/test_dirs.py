"""resolve_data_dir: argument > $CADENCE_DATA > user cache folder."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from cadence.data.dirs import ENV_VAR, default_data_dir, resolve_data_dir


def test_argument_wins_over_environment(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_data_dir(tmp_path / "from_arg") == tmp_path / "from_arg"
    assert resolve_data_dir(str(tmp_path / "from_arg")) == tmp_path / "from_arg"


def test_environment_wins_over_cache(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_data_dir() == tmp_path / "from_env"


@pytest.mark.parametrize("env", [None, ""], ids=["unset", "empty"])
def test_cache_folder_last(monkeypatch, env):
    if env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, env)
    expected = (Path(platformdirs.user_cache_dir("cadence")) / "data").resolve()
    assert resolve_data_dir() == expected == default_data_dir().resolve()


def test_expands_home_and_makes_absolute(tmp_path, monkeypatch):
    tmp_path = tmp_path.resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("~/data") == tmp_path / "data"
    assert resolve_data_dir("relative") == tmp_path / "relative"
    assert resolve_data_dir("relative").is_absolute()


def test_empty_argument_is_an_error():
    with pytest.raises(ValueError, match="data_dir is an empty string"):
        resolve_data_dir("")
