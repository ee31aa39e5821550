"""bilayer.model.network: MemBrain-seg's architecture, its configuration, and reading it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bilayer.errors import ConfigError
from bilayer.model import (
    MembraneUNet,
    NetworkConfig,
    Norm,
    build_network,
    check_state_dict,
    config_from_state_dict,
    count_parameters,
)
from monai.networks.nets import DynUNet
from torch import nn
from torch.nn.functional import interpolate

MEMBRAIN_KEYS = Path(__file__).parents[1] / "data" / "membrain" / "membrain_seg_0.0.10_state_dict.json"

SMALL_CONFIGS = {
    "three_levels": NetworkConfig(filters=(4, 8, 16), strides=(1, 2, 2), deep_supervision_heads=1),
    "four_levels": NetworkConfig(filters=(4, 8, 8, 16), strides=(1, 2, 2, 2)),
    "plain_blocks_batch_norm": NetworkConfig(
        filters=(4, 8, 16, 16), strides=(1, 2, 2, 2), residual=False, norm="batch"
    ),
    "no_deep_supervision": NetworkConfig(filters=(3, 6, 12, 12), strides=(1, 2, 2, 2), deep_supervision=False),
    "two_in_three_out_kernel5": NetworkConfig(
        in_channels=2, out_channels=3, filters=(4, 8, 16), strides=(1, 2, 2), kernel_size=5, deep_supervision_heads=1
    ),
    "six_levels_narrow": NetworkConfig(filters=(2, 4, 4, 8, 8, 16)),
}


def _meta_network(config: NetworkConfig) -> MembraneUNet:
    with torch.device("meta"):
        return build_network(config)


@pytest.mark.parametrize("variant", ["default", "narrow"])
def test_state_dict_and_parameter_count_equal_membrain_seg(variant):
    reference = json.loads(MEMBRAIN_KEYS.read_text())["variants"][variant]
    config = NetworkConfig(filters=tuple(reference["channels"]))
    network = _meta_network(config)
    shapes = {k: list(v.shape) for k, v in network.state_dict().items()}
    assert list(shapes) == list(reference["state_dict"])  # same names, same order
    assert shapes == reference["state_dict"]
    assert count_parameters(network) == reference["parameters"]


def test_default_network_is_membrain_seg_with_91_million_parameters():
    config = NetworkConfig()
    assert config.filters == (32, 64, 128, 256, 512, 1024) and config.strides == (1, 2, 2, 2, 2, 2)
    assert config.size_multiple == 32
    assert 90_500_000 < count_parameters(_meta_network(config)) < 91_500_000


def _membrain_style_dynunet(filters: list[int]) -> DynUNet:
    """A DynUNet made with the arguments MemBrain-seg's SemanticSegmentationUnet passes."""
    return DynUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        kernel_size=(3, 3, 3, 3, 3, 3),
        strides=(1, 2, 2, 2, 2, 2),
        upsample_kernel_size=(1, 2, 2, 2, 2, 2),
        filters=filters,
        res_block=True,
        deep_supervision=True,
        deep_supr_num=2,
    )


def test_outputs_equal_monai_dynunet_built_like_membrain_seg():
    torch.manual_seed(3)
    reference = _membrain_style_dynunet([2, 4, 4, 8, 8, 16])
    ours = build_network(NetworkConfig(filters=(2, 4, 4, 8, 8, 16)))
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32, 64)
    with torch.no_grad():
        reference.eval(), ours.eval()
        expected = reference(x)
        got = ours(x)
        assert isinstance(got, torch.Tensor) and got.shape == (2, 1, 32, 32, 64)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        reference.train(), ours.train()
        stacked = reference(x)  # MONAI: heads upsampled to full size and stacked on dim 1
        outputs = ours(x)  # ours: heads at their own resolution, as MemBrain-seg
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 32, 32, 64), (2, 1, 16, 16, 32), (2, 1, 8, 8, 16)]
    for i, output in enumerate(outputs):
        torch.testing.assert_close(interpolate(output, x.shape[2:]), stacked[:, i])


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_small_variants_run_in_eval_and_training(name):
    config = SMALL_CONFIGS[name]
    torch.manual_seed(0)
    network = build_network(config)
    size = max(config.size_multiple, 16)
    x = torch.randn(2, config.in_channels, size, size, 2 * size)
    network.eval()
    with torch.no_grad():
        out = network(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, config.out_channels, size, size, 2 * size)
    network.train()
    outputs = network(x)
    if not config.deep_supervision:
        assert isinstance(outputs, torch.Tensor) and outputs.shape == out.shape
        return
    assert len(outputs) == 1 + config.deep_supervision_heads
    for level, output in enumerate(outputs):
        factor = 2**level
        assert output.shape == (2, config.out_channels, size // factor, size // factor, 2 * size // factor)
    sum(o.mean() for o in outputs).backward()
    assert all(p.grad is not None for p in network.parameters())


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_config_is_read_back_from_weights(name):
    config = SMALL_CONFIGS[name]
    found = config_from_state_dict(_meta_network(config).state_dict())
    if not config.deep_supervision:  # the head count is meaningless without heads
        found = NetworkConfig.from_dict({**found.to_dict(), "deep_supervision_heads": config.deep_supervision_heads})
    assert found == config


def test_weights_of_another_architecture_are_named_in_the_error():
    state = _meta_network(SMALL_CONFIGS["four_levels"]).state_dict()
    with pytest.raises(ConfigError, match="missing"):
        config_from_state_dict({k: v for k, v in state.items() if "norm2" not in k})
    with pytest.raises(ConfigError, match="unexpected.*'extra.weight'"):
        config_from_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="input_block.conv1.conv.weight"):
        config_from_state_dict({"something.else": torch.zeros(3)})
    with pytest.raises(ConfigError, match="wrong shape"):
        check_state_dict(SMALL_CONFIGS["four_levels"], {**state, "output_block.conv.conv.bias": torch.zeros(2)})
    check_state_dict(SMALL_CONFIGS["four_levels"], state)


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


def test_count_parameters_counts_shared_weights_once():
    shared = nn.Linear(3, 4)
    model = nn.Sequential(shared, nn.ReLU(), nn.Linear(4, 2), shared)
    assert count_parameters(model) == (3 * 4 + 4) + (4 * 2 + 2)
    model[2].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == (3 * 4 + 4) + 2
