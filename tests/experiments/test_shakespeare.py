"""The Tiny Shakespeare experiment: its config, truncated BPTT, the trainer's loss, samples and resume."""

from __future__ import annotations

import math
import os
import re
import signal

import pytest
import torch
import torch.nn.functional as F

from cadence.config import ConfigError, apply_overrides
from cadence.experiments import run_experiment
from cadence.experiments.shakespeare import CharLMTrainer, ShakespeareConfig, build
from cadence.track import RunStore
from cadence.train import BatchIndex

#: A run of a few steps on the first characters of the real text, with a tiny model.
TINY = ["subset=6000", "epochs=2", "batch_size=4", "seq_len=32", "valid_batch_size=2", "valid_seq_len=64",
        "optimizer.warmup=2", "model.lstm.d_embed=8", "model.lstm.d_hidden=16", "model.lstm.n_layers=1",
        "model.transformer.d_model=16", "model.transformer.n_layers=1", "model.transformer.n_heads=2",
        "sample_length=40", "num_threads=1"]


def tiny(*overrides: str) -> ShakespeareConfig:
    return apply_overrides(ShakespeareConfig(), [*TINY, *overrides])


@pytest.mark.parametrize("override, message", [
    ("model.kind=gru", "model.kind='gru' is not a known model; expected one of: lstm, transformer"),
    ("model.dropout=1.0", "model: dropout=1.0 is out of range; expected dropout in [0, 1)"),
    ("sample_temperature=-1", "temperature=-1.0 is out of range"),
    ("sample_prompt=''", "sample_prompt=''; expected at least one character"),
    ("model.lstm.d_hidden=0", "model.lstm: d_hidden=0 is out of range; expected d_hidden >= 1"),
])
def test_a_bad_config_is_refused_naming_the_value(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(ShakespeareConfig(), [override])


def test_epochs_may_not_change_when_resuming_since_they_set_the_schedule():
    assert "epochs" not in ShakespeareConfig().safe_to_change()


def test_the_step_carries_a_detached_state_resets_it_at_each_pass_and_counts_characters(data_dir):
    trainer = build(tiny("epochs=1", "model.dropout=0", "precision=32"), data_dir).trainer(console=False)
    batches = list(trainer.train_loader)
    x, y = batches[0]
    with torch.no_grad():
        expected = F.cross_entropy(trainer.raw_model(x)[0].flatten(0, 1), y.flatten())
    calls, forward = [], trainer.model.forward
    trainer.model.forward = lambda x, state=None: (calls.append(state), forward(x, state))[1]
    with trainer.mode.update(is_train=True):
        loss, count = trainer.step(batches[0], BatchIndex(0, len(batches)))
        carried = trainer.carried["train"]
        trainer.step(batches[1], BatchIndex(1, len(batches)))
        trainer.step(batches[0], BatchIndex(0, len(batches)))
    assert count == 32 * 4 and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(s.grad_fn is None and not s.requires_grad for s in carried)
    assert calls[0] is None and calls[1] is carried and calls[2] is None
    assert trainer.carried["valid"] is None


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_a_run_reports_loss_and_bits_per_character_and_stores_its_samples(tmp_path, data_dir, kind):
    config = tiny(f"model.kind={kind}")
    run_id = run_experiment("shakespeare", config, data_dir=data_dir, runs_dir=tmp_path,
                            console=False).run_context.run_id
    with RunStore(tmp_path) as store:
        run = store.get_run(run_id)
        steps, loss = store.values(run_id, "valid.loss")
        bpc = store.values(run_id, "valid.bpc")[1]
        speed = store.values(run_id, "train.samples_per_second")[1]
        trained = store.values(run_id, "train.samples")[1]
        keys = store.series(run_id)
    assert run.status == "finished" and len(loss) == 2 and len(speed) == 2 and (speed > 0).all()
    assert "train.chars_per_second" not in keys and "train.time.compute" in keys
    assert bpc.tolist() == pytest.approx([v / math.log(2) for v in loss])
    # The validation loss is over the whole validation split: every character but the first of each column (and
    # the fewer than batch_size left over when the columns are cut).
    trainer = build(config, data_dir).trainer(console=False)
    assert sum(y.numel() for _, y in trainer.valid_loader) == len(trainer.valid_loader.data.flatten()) - 2
    # The speed is in characters: a step counts the characters of its batch.
    assert trained[-1] == 2 * sum(y.numel() for _, y in trainer.train_loader)
    samples = sorted((tmp_path / run_id / "samples").iterdir())
    assert [p.name for p in samples] == [f"step-{step}.txt" for step in steps]
    text = samples[-1].read_text()
    assert text.startswith("\n") and len(text) == 41


def test_a_run_interrupted_mid_epoch_resumes_with_its_carried_state_to_the_same_weights(tmp_path, data_dir,
                                                                                      monkeypatch):
    """The carried LSTM state is part of the checkpoint: a run stopped within an epoch and resumed ends
    bit-identical to one never stopped."""
    def trainer(run_dir) -> CharLMTrainer:
        return build(tiny(), data_dir).trainer(run=run_dir, console=False)

    straight = trainer(tmp_path / "straight")
    assert straight.run() == "finished"
    # A first Ctrl+C after step 20 of the 2 x 42 steps: the run stops there, in its first epoch, and saves.
    monkeypatch.setattr(CharLMTrainer, "on_optimizer_step",
                        lambda self: os.kill(os.getpid(), signal.SIGINT) if self.global_step == 20 else None)
    stopped = trainer(tmp_path / "stopped")
    assert stopped.run() == "interrupted" and stopped.global_step == 20 and stopped.carried["train"] is not None
    monkeypatch.undo()
    resumed = trainer(tmp_path / "stopped")
    resumed.resume(tmp_path / "stopped")
    assert all(torch.equal(a, b) for a, b in zip(resumed.carried["train"], stopped.carried["train"]))
    assert resumed.run() == "finished" and resumed.global_step == straight.global_step
    for key, value in straight.raw_model.state_dict().items():
        assert torch.equal(value, resumed.raw_model.state_dict()[key]), key
