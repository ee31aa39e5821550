"""bilayer.train.settings: defaults ← fine-tuning ← file ← explicit values; no network for fine-tuning."""

from __future__ import annotations

import pytest

from bilayer.errors import ConfigError
from bilayer.train import TrainConfig, training_config


def test_without_settings_the_defaults_and_for_fine_tuning_its_own():
    assert training_config() == TrainConfig()
    tuned = training_config(finetune=True)
    assert (tuned.learning_rate, tuned.epochs) == (1e-5, 100) and tuned.batch_size == TrainConfig().batch_size


def test_a_file_overrides_the_defaults_and_explicit_values_override_the_file(tmp_path):
    settings = tmp_path / "train.yaml"
    settings.write_text("epochs: 7\nlearning_rate: 0.002\nbatch_size: 4\nloss:\n  bce_weight: 0.5\n")
    config = training_config(settings, finetune=True, epochs=3, batch_size=None)  # None: not given
    assert (config.epochs, config.learning_rate, config.batch_size) == (3, 0.002, 4)
    assert config.loss.bce_weight == 0.5 and not config.loss.surface_dice
    switched = training_config(settings, augment=False, surface_dice=True)
    assert switched.augment is None
    assert switched.loss.surface_dice and switched.loss.bce_weight == 0.5  # the file's loss settings stay
    assert training_config(settings, surface_dice=False).loss.surface_dice is False


def test_fine_tuning_keeps_the_checkpoints_network_and_bad_settings_are_named(tmp_path):
    settings = tmp_path / "net.json"
    settings.write_text('{"network": {"filters": [8, 16, 32, 64], "strides": [1, 2, 2, 2]}}')
    assert training_config(settings).network.filters == (8, 16, 32, 64)
    with pytest.raises(ConfigError, match=r"net\.json set a network, but fine-tuning keeps the checkpoint's"):
        training_config(settings, finetune=True)
    with pytest.raises(ConfigError, match="must be a mapping of LossConfig fields"):
        training_config(loss=[1, 2], surface_dice=True)
    with pytest.raises(ConfigError, match="'epoch'"):
        training_config(epoch=3)
