"""load_pickle: Python 2 CIFAR-style and numpy 2 pickles load; crafted pickles that call anything are refused unrun."""

from __future__ import annotations

import os
import pickle
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cadence.data.idx import DataFormatError
from cadence.data.unpickle import ALLOWED_GLOBALS, UnsafePickleError, load_pickle

from .cifar_files import python2_pickle


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


class RunsCommand:
    """Unpickling this calls ``os.system(command)``: the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsFunction:
    """Unpickling this calls ``function(*args)`` for any importable function."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def test_python2_cifar_batch_loads_with_str_keys_and_exact_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=(5, 3072), dtype=np.uint8)
    batch = {"batch_label": "training batch 1 of 5", "labels": [3, 1, 4, 1, 5], "data": data,
             "filenames": ["a_\xe9.png"] * 5}
    content = python2_pickle(batch)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in content and b"\x80\x02" == content[:2]
    loaded = load_pickle(write(tmp_path / "data_batch_1", content))
    assert loaded.keys() == batch.keys() and all(isinstance(key, str) for key in loaded)
    assert loaded["data"].dtype == np.uint8 and np.array_equal(loaded["data"], data)
    assert loaded["labels"] == [3, 1, 4, 1, 5] and loaded["filenames"][0] == "a_\xe9.png"


@pytest.mark.parametrize("protocol", [3, 4])
def test_numpy2_pickles_of_python3_load(tmp_path, protocol):
    value = {"data": np.arange(12, dtype=np.float32).reshape(3, 4), "names": ["x"], "raw": b"\x00\xff"}
    content = pickle.dumps(value, protocol=protocol)
    loaded = load_pickle(write(tmp_path / "p.pkl", content))
    assert np.array_equal(loaded["data"], value["data"]) and loaded["raw"] == b"\x00\xff"


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    content = pickle.dumps({"data": RunsCommand(f"touch {shlex.quote(str(marker))}")}, protocol=protocol)
    path = write(tmp_path / "data_batch_1", content)
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    error = info.value
    assert isinstance(error, DataFormatError)
    assert (error.module, error.name) == ("posix", "system")  # os.system is posix.system on Linux
    assert str(error).startswith(f"{path}: pickle refers to posix.system")
    assert "refused before anything ran" in str(error)
    assert not marker.exists()
    # The same pickle does run the command when loaded without restriction: the test is live.
    pickle.loads(content)
    assert marker.exists()


@pytest.mark.parametrize(
    ("function", "args", "refused"),
    [
        (eval, ("1 + 1",), "builtins.eval"),
        (getattr, (np.ndarray, "dump"), "builtins.getattr"),
        (subprocess.check_output, (["true"],), "subprocess.check_output"),
        (np.load, ("x.npy",), "numpy.load"),
        (np.frombuffer, (b"\x00", np.uint8), "numpy.frombuffer"),
    ],
    ids=["eval", "getattr", "subprocess", "numpy.load", "numpy.frombuffer"],
)
def test_other_callables_are_refused(tmp_path, function, args, refused):
    path = write(tmp_path / "p.pkl", pickle.dumps([1, CallsFunction(function, *args)], protocol=4))
    with pytest.raises(UnsafePickleError, match=f"pickle refers to {refused}, which a data file has no use for"):
        load_pickle(path)


def test_protocol2_bytes_of_python3_need_codecs_and_are_refused(tmp_path):
    path = write(tmp_path / "p.pkl", pickle.dumps(b"abc", protocol=2))
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        load_pickle(path)


def test_allowed_globals_are_numpys_own_objects():
    reconstruct = np.empty(0).__reduce__()[0]
    assert ALLOWED_GLOBALS == {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a valid pickle: EOFError"),
        (python2_pickle({"a": [1, 2, 3]})[:-5], "not a valid pickle"),
        (b"\x80\x02garbage", "not a valid pickle: UnpicklingError"),
        (b"\x80\x02P0\n.", "not a valid pickle: UnpicklingError: .*persistent"),
    ],
    ids=["empty", "truncated", "garbage", "persistent-id"],
)
def test_corrupt_pickles_name_the_file(tmp_path, content, match):
    path = write(tmp_path / "test_batch", content)
    with pytest.raises(DataFormatError, match=match) as info:
        load_pickle(path)
    assert str(info.value).startswith(str(path))
    assert not isinstance(info.value, UnsafePickleError)


def test_array_whose_shape_exceeds_its_data_is_a_format_error(tmp_path):
    content = python2_pickle(np.zeros(4, dtype=np.uint8)).replace(b"K\x04\x85", b"M\x00\x10\x85")
    with pytest.raises(DataFormatError, match="not a valid pickle: ValueError"):
        load_pickle(write(tmp_path / "p.pkl", content))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pickle(tmp_path / "absent")
