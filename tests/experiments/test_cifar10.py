"""The CIFAR-10 ResNet: the paper's networks, their shortcuts, and `cadence train cifar10` on generated archives read
through the real archive's code path (this machine has no CIFAR-10)."""

from __future__ import annotations

import re

import pytest
import torch

from cadence.cli import main
from cadence.config import ConfigError, apply_overrides
from cadence.experiments.cifar10 import BasicBlock, CIFAR10Config, ResNet, build
from cadence.nn.norm import BatchNorm
from cadence.schedule import Cosine
from cadence.track import RunStore
from tests.data.cifar_files import cifar10_archive


@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_the_networks_have_the_papers_parameter_counts(depth, millions):
    """He et al. 2016, Table 6: ResNet-20 has 0.27M parameters, ..., ResNet-110 1.7M."""
    model = ResNet(depth)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2 if depth < 110 else 1) == millions
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) + 1 == depth  # 6n + 1 convolutions and the linear layer; option A adds none
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) == len(convolutions)


def test_the_stages_halve_the_feature_map_and_double_the_filters():
    model = ResNet(20)
    shapes = []
    x = torch.relu(model.bn(model.conv(torch.randn(2, 3, 32, 32))))
    for stage in model.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_is_the_identity_on_every_other_pixel_with_zero_channels_added():
    block = BasicBlock(4, 8, stride=2, shortcut="A")
    x = torch.randn(2, 4, 6, 6)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 8, 3, 3)
    assert torch.equal(shortcut[:, :4], x[:, :, ::2, ::2]) and not shortcut[:, 4:].any()
    same = BasicBlock(4, 4)
    assert same.shortcut(x) is x and same.projection is None
    projected = BasicBlock(4, 8, stride=2, shortcut="B")
    assert projected.shortcut(x).shape == (2, 8, 3, 3) and projected.projection is not None


@pytest.mark.parametrize("override, message", [
    ("model.depth=21", "model.depth=21 is not 6n + 2; expected one of 20, 32, 44, 56, 110, ... (nearest: 20 or 26)"),
    ("model.shortcut=C", "model.shortcut='C'; expected one of: A, B"),
    ("optimizer.warmup=-1", "optimizer: warmup=-1 is out of range; expected warmup >= 0"),
])
def test_a_bad_config_is_refused_naming_the_value(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(CIFAR10Config(), [override])


def test_the_defaults_are_the_papers_recipe_with_a_cosine_schedule(tmp_path):
    (tmp_path / "cifar10").mkdir()
    cifar10_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", per_batch=40, test_size=10)
    config = CIFAR10Config()
    assert (config.model.depth, config.batch_size, config.epochs) == (20, 128, 164)
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.momentum,
            config.optimizer.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    trainer = build(apply_overrides(config, ["batch_size=32", "num_threads=1"]), tmp_path).trainer(console=False)
    # 200 generated training images: 6 batches of 32 an epoch (the short last one dropped), 164 epochs.
    assert trainer.optimizer_step.schedules.schedules["lr"][2] == Cosine(0.1, 164 * 6, floor=0.0)
    assert repr(trainer.train_loader.augment) == "Compose(RandomCrop(padding=4, fill=0), RandomHorizontalFlip(p=0.5))"
    assert {g["weight_decay"] for g in trainer.optimizer.param_groups} == {1e-4}
    assert "epochs" not in config.safe_to_change() and "max_steps" not in config.safe_to_change()


def test_cadence_train_cifar10_on_generated_archives(tmp_path, capsys):
    """A few steps from the command line, on a format-faithful archive in the data directory: extracted and read
    as the official one is."""
    (tmp_path / "data" / "cifar10").mkdir(parents=True)
    images = cifar10_archive(tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz", per_batch=20, test_size=30)
    assert len(images["train_labels"]) == 100
    runs = tmp_path / "runs"
    assert main(["train", "cifar10", "epochs=2", "batch_size=16", "valid_batch_size=16", "model.width=4",
                 "optimizer.warmup=3", "num_threads=1", "--data-dir", str(tmp_path / "data"), "--runs-dir", str(runs)]) == 0
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()
    with RunStore(runs) as store:
        [run] = store.list_runs()
        steps, accuracy = store.values(run.id, "valid.accuracy")
        lr = store.values(run.id, "train.lr")[1].tolist()
    # 100 images in batches of 16, the short last one dropped: 6 steps an epoch, 12 in all.
    assert run.status == "finished" and steps.tolist() == [6, 12]
    assert all(0 <= value <= 1 for value in accuracy)
    assert lr[:4] == pytest.approx([0, 0.1 / 3, 0.2 / 3, 0.1]) and lr[-1] < lr[4]
    assert (runs / run.id / "checkpoints" / "step-12" / "model.safetensors").is_file()
    assert f"run {run.id} finished" in capsys.readouterr().out
