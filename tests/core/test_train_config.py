"""bilayer.train.config: TrainConfig is MemBrain-seg's recipe, round-trips through JSON, names bad values."""

from __future__ import annotations

import json

import pytest

from bilayer.augment import AugmentConfig
from bilayer.errors import ConfigError
from bilayer.losses import LossConfig
from bilayer.model import NetworkConfig
from bilayer.train import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision


def test_defaults_are_membrain_segs_recipe():
    config = TrainConfig()
    assert (config.patch_size, config.batch_size, config.epochs) == (160, 2, 1000)
    assert (config.learning_rate, config.momentum, config.weight_decay, config.poly_power) == (1e-2, 0.99, 3e-5, 0.9)
    assert config.voxel_size == 10.0 and config.network == NetworkConfig() and config.loss == LossConfig()
    assert config.augment == AugmentConfig() and config.precision is TrainPrecision.AUTO
    assert (config.clip_grad_norm, config.time_limit, config.steps_per_epoch) == (0.0, 0.0, 0)
    assert FINETUNE_DEFAULTS == {"learning_rate": 1e-5, "epochs": 100}


def test_round_trip_through_json_and_defaults_for_missing_keys():
    config = TrainConfig(network=NetworkConfig(filters=(8, 16, 32, 64), strides=(1, 2, 2, 2)), patch_size=64,
                         precision="bfloat16", augment=None, loss=LossConfig(surface_dice=True), time_limit=90,
                         seed=7)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["precision"] == "bfloat16" and data["augment"] is None and data["network"]["filters"] == [8, 16, 32, 64]
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig.from_dict({}) == TrainConfig()
    assert TrainConfig.from_dict({"augment": AugmentConfig().to_dict()}).augment == AugmentConfig()
    assert type(TrainConfig(learning_rate=1).learning_rate) is float and TrainConfig(time_limit=90).time_limit == 90.0


@pytest.mark.parametrize(("values", "words"), [
    ({"patch_size": 100}, "patch_size 100 must be a multiple of 32 .* e.g. 96"),
    ({"patch_size": 0}, "training patch_size=0"),
    ({"learning_rate": 0.0}, "training learning_rate=0.0"),
    ({"momentum": 1.0}, "training momentum=1.0"),
    ({"epochs": 2.5}, "training epochs=2.5 must be an integer"),
    ({"precision": "half"}, "training precision='half' is not one of auto, float32, bfloat16, float16"),
    ({"compile": "yes"}, "training compile='yes' must be true or false"),
    ({"time_limit": -1.0}, "training time_limit=-1.0"),
])
def test_bad_values_are_config_errors_naming_them(values, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**values)


def test_unknown_keys_are_named_and_changes_are_checked_again():
    with pytest.raises(ConfigError, match="'learning_rat'"):
        TrainConfig.from_dict({"learning_rat": 0.1})
    config = TrainConfig()
    assert config.but(epochs=5).epochs == 5 and config.epochs == 1000
    with pytest.raises(ConfigError, match="batch_size"):
        config.but(batch_size=0)
