"""The README's commands work from a user's fresh clone: none names a path outside the repository, the main
command uses the default data directory, and the test command is the one CI runs, on the whole suite."""

from __future__ import annotations

import ast
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELLS = ("bash", "sh", "shell", "console")


def fenced_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(marker, language, body)`` of every fenced block; ``marker`` is an HTML comment on the line before, or ''."""
    pattern = re.compile(r"(?:^(<!--[^\n]*-->)\n)?^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    return [(match[1] or "", match[2], match[3]) for match in pattern.finditer(text)]


def marked_command(marker: str) -> str:
    """The one-line command of the bash block right after ``<!-- marker -->``, as ``.ci/run`` reads it."""
    blocks = [body for comment, language, body in fenced_blocks(README.read_text()) if comment == f"<!-- {marker} -->"]
    assert len(blocks) == 1, f"README.md: expected one fenced block after <!-- {marker} -->, found {len(blocks)}"
    lines = blocks[0].splitlines()
    assert len(lines) == 1, f"README.md: the {marker} block holds {len(lines)} lines; .ci/run reads one"
    return lines[0]


def outside_paths(token: str) -> list[str]:
    """The paths in a shell word or string that leave the repository: absolute, home-relative or climbing out
    with ``..``, as a value itself or after ``NAME=`` / ``--option=``."""
    _, equals, value = token.partition("=")
    found = []
    for candidate in [token, value] if equals else [token]:
        normal = posixpath.normpath(candidate)
        if candidate.startswith(("/", "~")) or normal == ".." or normal.startswith("../"):
            found.append(candidate)
    return found


def shell_words(body: str) -> list[str]:
    """The words of a shell block, comments and ``$`` prompts left out."""
    return [word for line in body.splitlines() for word in shlex.split(line.removeprefix("$ "), comments=True)]


def python_strings(body: str) -> list[str]:
    """The string literals of a Python block."""
    return [node.value for node in ast.walk(ast.parse(body)) if isinstance(node, ast.Constant)
            and isinstance(node.value, str)]


@pytest.mark.parametrize("token, outside", [
    ("../shared/data", ["../shared/data"]),
    ("--data-dir=../shared/data", ["../shared/data"]),
    ("CADENCE_DATA=../shared/data", ["../shared/data"]),
    ("/work/shared/data", ["/work/shared/data"]),
    ("~/data", ["~/data"]),
    ("..", [".."]),
    ("runs/../../elsewhere", ["runs/../../elsewhere"]),
    ("benchmarks/norm.py", []),
    ("runs/../runs", []),
    (".venv/bin/cadence", []),
    ("optimizer.schedule=Sequential([LinearWarmup(3e-3, 100), Cosine(3e-3, 525, floor=3e-5)], [100])", []),
    ("https://example.org/data/input.txt", []),
])
def test_outside_paths_finds_what_leaves_the_repository(token, outside):
    assert outside_paths(token) == outside


def test_no_readme_command_or_example_names_a_path_outside_the_repository():
    blocks = fenced_blocks(README.read_text())
    assert sum(language in SHELLS for _, language, _ in blocks) >= 3  # main, test and more
    outside = []
    for _, language, body in blocks:
        words = shell_words(body) if language in SHELLS else python_strings(body) if language == "python" else []
        outside += [(language, path) for word in words for path in outside_paths(word)]
    assert not outside, f"README.md names paths outside the repository, which a user's clone does not have: {outside}"


def test_the_main_command_trains_mnist_in_the_default_data_directory():
    command = marked_command("main-command")
    assert command.endswith("&& .venv/bin/cadence train mnist"), command
    assert "--data-dir" not in command and "CADENCE_DATA" not in command


def test_the_test_command_runs_the_whole_suite():
    words = shlex.split(marked_command("test-command"))
    assert words[-4:] == [".venv/bin/python", "-m", "pytest", "-q"], words
    # Nothing in the configuration deselects tests either: CI runs the slow ones too.
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    selecting = ("-m", "-k", "--deselect", "--ignore", "--lf", "--last-failed", "--sw", "-x", "--exitfirst", "--maxfail")
    assert not [word for word in shlex.split(options.get("addopts", "")) if word.startswith(selecting)]
    assert options["testpaths"] == ["tests"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("shared", [True, False], ids=["with-shared-data", "without"])
def test_ci_runs_the_readmes_test_command_with_the_shared_data_when_it_exists(tmp_path, shared):
    clone = tmp_path / "clone"
    (clone / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", clone / ".ci" / "run")
    # The real README, with its test command swapped for one that shows what it was given.
    probe = 'echo "data=${CADENCE_DATA:-unset} cwd=$PWD"'
    (clone / "README.md").write_text(README.read_text().replace(marked_command("test-command"), probe))
    if shared:
        (tmp_path / "shared" / "data").mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key != "CADENCE_DATA"}
    result = subprocess.run(["bash", str(clone / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True)
    data = tmp_path / "shared" / "data" if shared else "unset"
    assert result.stdout.splitlines()[-1] == f"data={data} cwd={clone}"
    assert f"ci: {probe}" in result.stdout


def marked_block(marker: str) -> str:
    """The body of the one fenced block right after ``<!-- marker -->``."""
    blocks = [body for comment, _, body in fenced_blocks(README.read_text()) if comment == f"<!-- {marker} -->"]
    assert len(blocks) == 1, f"README.md: expected one fenced block after <!-- {marker} -->, found {len(blocks)}"
    return blocks[0]


#: Run after the README's trainer example, in its namespace: what the example promises.
TRAINER_EXAMPLE_CHECKS = """
import torch
from cadence.track import RunStore

assert status == "finished" and trainer.global_step == 200, (status, trainer.global_step)
with RunStore("runs") as store:
    (summary,) = store.list_runs()
    assert (summary.name, summary.status) == ("char-lstm", "finished"), summary
    assert "test.loss" in summary.last_metrics and summary.config == config, summary
assert best_checkpoint(run.run_dir).parent == run.run_dir / "checkpoints"

# The carried state resumes exactly: 12 steps straight, against 6, stopped, then resumed to 12.
def trained(folder, max_steps, resume=False):
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(text.vocabulary), d_embed=16, d_hidden=32, n_layers=1)
    loader = SequentialDataLoader(text=text.train_tokens, batch_size=4, seq_len=16)
    trainer = LanguageModel(model, Adam(model.parameters(), lr=3e-3), loader, run=folder, max_steps=max_steps,
                            console=False)
    if resume:
        trainer.resume(folder)
    trainer.run()
    return trainer

straight = trained("straight", 12)
trained("stopped", 6)
resumed = trained("stopped", 12, resume=True)
assert resumed.global_step == 12
assert all(torch.equal(p, q) for p, q in zip(straight.raw_model.parameters(), resumed.raw_model.parameters()))
assert all(torch.equal(s, r) for s, r in zip(straight.carried["train"], resumed.carried["train"]))
print("checked")
"""


@pytest.mark.slow
def test_the_python_trainer_example_runs_as_written(tmp_path):
    """The README's custom step with carried state, recorded run, max_steps, evaluate and best_checkpoint, run as a
    user would paste it (data from the data directory, the run in ./runs), then its promises checked."""
    code = marked_block("example: trainer") + TRAINER_EXAMPLE_CHECKS
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CADENCE_RUNS": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "checked"
    status, _, metrics = result.stdout.splitlines()[0].partition(" ")
    assert status == "finished" and metrics.startswith("{'loss': ")
