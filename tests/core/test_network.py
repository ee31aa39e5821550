"""bilayer.model.network: MemBrain-seg's tensors, parameter count and outputs; small variants run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bilayer.model import NetworkConfig, build_network, count_parameters
from monai.networks.nets import DynUNet
from network_variants import SMALL_CONFIGS, meta_network
from torch import nn
from torch.nn.functional import interpolate


MEMBRAIN_KEYS = Path(__file__).parents[1] / "data" / "membrain" / "membrain_seg_0.0.10_state_dict.json"


@pytest.mark.parametrize("variant", ["default", "narrow"])
def test_state_dict_and_parameter_count_equal_membrain_seg(variant):
    reference = json.loads(MEMBRAIN_KEYS.read_text())["variants"][variant]
    config = NetworkConfig(filters=tuple(reference["channels"]))
    network = meta_network(config)
    shapes = {k: list(v.shape) for k, v in network.state_dict().items()}
    assert list(shapes) == list(reference["state_dict"])  # same names, same order
    assert shapes == reference["state_dict"]
    assert count_parameters(network) == reference["parameters"]


def test_default_network_is_membrain_seg_with_91_million_parameters():
    config = NetworkConfig()
    assert config.filters == (32, 64, 128, 256, 512, 1024) and config.strides == (1, 2, 2, 2, 2, 2)
    assert config.size_multiple == 32
    assert 90_500_000 < count_parameters(meta_network(config)) < 91_500_000


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


def test_count_parameters_counts_shared_weights_once():
    shared = nn.Linear(3, 4)
    model = nn.Sequential(shared, nn.ReLU(), nn.Linear(4, 2), shared)
    assert count_parameters(model) == (3 * 4 + 4) + (4 * 2 + 2)
    model[2].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == (3 * 4 + 4) + 2
