"""`cadence train shakespeare` for a few steps on the real text, then `cadence generate` from the run."""

from __future__ import annotations

import re

import pytest

from cadence.cli import main
from cadence.track import RunStore
from tests.experiments.test_shakespeare import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir) -> tuple[str, str]:
    """A finished run of the tiny Shakespeare model: ``(runs dir, run id)``."""
    runs = str(tmp_path_factory.mktemp("runs"))
    assert main(["train", "shakespeare", *TINY, "--data-dir", str(data_dir), "--runs-dir", runs]) == 0
    with RunStore(runs) as store:
        [run] = store.list_runs()
    assert run.status == "finished"
    return runs, run.id


def generate(capsys, trained, *options: str) -> str:
    runs, run_id = trained
    assert main(["generate", run_id, "--runs-dir", runs, *options]) == 0
    return capsys.readouterr().out.removesuffix("\n")


def test_generate_continues_the_prompt_by_length_characters(capsys, trained):
    text = generate(capsys, trained, "--prompt", "ROMEO:", "--length", "120")
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 120
    assert "<pad>" not in text and "<unk>" not in text


def test_the_same_seed_gives_the_same_text_and_another_seed_another(capsys, trained):
    first, again, other = (generate(capsys, trained, "--seed", seed, "--length", "200") for seed in ("1", "1", "2"))
    assert first == again and first != other


def test_temperature_0_and_top_k_1_are_the_same_greedy_text(capsys, trained):
    greedy = generate(capsys, trained, "--temperature", "0", "--length", "80", "--seed", "1")
    assert greedy == generate(capsys, trained, "--top-k", "1", "--length", "80", "--seed", "2")


def test_a_character_outside_the_vocabulary_or_a_bad_option_is_a_one_line_error(capsys, trained):
    runs, run_id = trained
    assert main(["generate", run_id, "--runs-dir", runs, "--prompt", "ROMEO~"]) == 1
    assert re.search(r"cadence generate: error: the text 'ROMEO~' has tokens outside the vocabulary of \d+: '~'$",
                     capsys.readouterr().err)
    assert main(["generate", run_id, "--runs-dir", runs, "--temperature", "-1"]) == 1
    assert "temperature=-1.0 is out of range; expected temperature >= 0" in capsys.readouterr().err


def test_an_unknown_run_or_a_run_of_an_experiment_without_text_is_a_usage_error(capsys, tmp_path, trained):
    runs, _ = trained
    assert main(["generate", "nope", "--runs-dir", runs]) == 2
    assert "cadence generate: error: no run 'nope'" in capsys.readouterr().err
    with RunStore(tmp_path) as store:
        other = store.create_run("mnist", {})
    assert main(["generate", other, "--runs-dir", str(tmp_path)]) == 2
    assert f"run {other} is a run of 'mnist', which generates no text; runs of shakespeare do" in \
        capsys.readouterr().err


def test_a_run_without_checkpoint_says_so(capsys, tmp_path, trained):
    from cadence.config import to_dict
    from cadence.experiments.shakespeare import ShakespeareConfig

    with RunStore(tmp_path) as store:
        run_id = store.create_run("shakespeare", to_dict(ShakespeareConfig()))
    assert main(["generate", run_id, "--runs-dir", str(tmp_path)]) == 1
    assert f"run {run_id} has no checkpoint to sample from" in capsys.readouterr().err


def test_a_run_with_sharded_checkpoints_generates_the_same_and_exports_its_whole_weights(capsys, tmp_path, trained,
                                                                                        data_dir):
    """A checkpoint of torch.distributed.checkpoint's shards (what FSDP and checkpoint_async write) holds no
    model.safetensors: generate reads the shards whole, and export-weights writes the file any reader opens."""
    import safetensors.torch

    from cadence.track.checkpoints import is_sharded, latest_checkpoint

    runs = str(tmp_path / "runs")
    assert main(["train", "shakespeare", *TINY, "checkpoint_async=true", "--data-dir", str(data_dir),
                 "--runs-dir", runs]) == 0
    with RunStore(runs) as store:
        [run] = store.list_runs()
        checkpoint = latest_checkpoint(store.run_dir(run.id))
    assert is_sharded(checkpoint) and not (checkpoint / "model.safetensors").exists()
    capsys.readouterr()
    assert main(["generate", run.id, "--runs-dir", runs, "--prompt", "ROMEO:", "--length", "60"]) == 0
    sharded = capsys.readouterr().out
    assert sharded == generate(capsys, trained, "--prompt", "ROMEO:", "--length", "60") + "\n"
    assert main(["export-weights", run.id[:-1], "--runs-dir", runs]) == 0
    assert capsys.readouterr().out.strip() == str(checkpoint / "model.safetensors")
    exported = safetensors.torch.load_file(checkpoint / "model.safetensors")
    trained_runs, trained_id = trained
    with RunStore(trained_runs) as store:
        whole = safetensors.torch.load_file(latest_checkpoint(store.run_dir(trained_id)) / "model.safetensors")
    assert exported.keys() == whole.keys() and all(exported[k].equal(whole[k]) for k in whole)
    assert main(["generate", run.id, "--runs-dir", runs, "--prompt", "ROMEO:", "--length", "60"]) == 0
    assert capsys.readouterr().out == sharded
