"""bilayer.model.config: NetworkConfig round-trips through JSON and refuses bad architectures by name."""

from __future__ import annotations

import json

import pytest
from bilayer.errors import ConfigError
from bilayer.model import NetworkConfig, Norm


def test_config_dict_round_trip_through_json():
    config = NetworkConfig(filters=[8, 16, 32, 64], strides=[1, 2, 2, 2], norm="batch", dropout=0.1, negative_slope=0.2)
    assert config.filters == (8, 16, 32, 64) and config.norm is Norm.BATCH
    data = json.loads(json.dumps(config.to_dict()))
    assert NetworkConfig.from_dict(data) == config
    assert NetworkConfig.from_dict({}) == NetworkConfig()
    assert hash(config) == hash(NetworkConfig.from_dict(data))


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="'channels'"):
        NetworkConfig.from_dict({"channels": [1, 2, 3]})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"filters": (8, 16, 32), "strides": (1, 2, 2, 2)}, "same length"),
        ({"filters": (8, 16), "strides": (1, 2)}, "at least 3"),
        ({"filters": (8, -16, 32), "strides": (1, 2, 2)}, "filters"),
        ({"strides": (1, 2, 0, 2, 2, 2)}, "strides"),
        ({"strides": (1, 2, 2, 5, 2, 2)}, "kernel_size"),
        ({"kernel_size": 4}, "odd"),
        ({"in_channels": True}, "in_channels"),
        ({"out_channels": 1.5}, "out_channels"),
        ({"deep_supervision_heads": 5}, "at most 4"),
        ({"norm": "group"}, "instance, batch"),
        ({"dropout": 1.0}, "dropout"),
        ({"negative_slope": -0.1}, "negative_slope"),
        ({"residual": "yes"}, "residual"),
        ({"filters": "32"}, "filters"),
    ],
)
def test_invalid_configs_are_refused_with_the_value_named(changes, named):
    with pytest.raises(ConfigError, match=named):
        NetworkConfig(**changes)
