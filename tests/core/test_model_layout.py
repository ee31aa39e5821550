"""bilayer.model.layout: tensors from the configuration, the configuration from weights, misfits named."""

from __future__ import annotations

import pytest
import torch
from bilayer.errors import ConfigError
from bilayer.model import NetworkConfig, check_state_dict, config_from_state_dict
from bilayer.model.layout import state_dict_shapes
from network_variants import SMALL_CONFIGS, meta_network


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_shapes_are_those_of_the_built_network(name):
    config = SMALL_CONFIGS[name]
    built = {key: tuple(value.shape) for key, value in meta_network(config).state_dict().items()}
    assert state_dict_shapes(config) == built


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_config_is_read_back_from_weights(name):
    config = SMALL_CONFIGS[name]
    found = config_from_state_dict(meta_network(config).state_dict())
    if not config.deep_supervision:  # the head count is meaningless without heads
        found = NetworkConfig.from_dict({**found.to_dict(), "deep_supervision_heads": config.deep_supervision_heads})
    assert found == config


def test_weights_of_another_architecture_are_named_in_the_error():
    state = meta_network(SMALL_CONFIGS["four_levels"]).state_dict()
    with pytest.raises(ConfigError, match="missing"):
        config_from_state_dict({k: v for k, v in state.items() if "norm2" not in k})
    with pytest.raises(ConfigError, match="unexpected.*'extra.weight'"):
        config_from_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="input_block.conv1.conv.weight"):
        config_from_state_dict({"something.else": torch.zeros(3)})
    with pytest.raises(ConfigError, match="wrong shape"):
        check_state_dict(SMALL_CONFIGS["four_levels"], {**state, "output_block.conv.conv.bias": torch.zeros(2)})
    check_state_dict(SMALL_CONFIGS["four_levels"], state)
