"""bilayer.model.lean: the slab-wise inference forward computes what the MONAI network computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bilayer.errors import ConfigError
from bilayer.model import NetworkConfig, build_network
from bilayer.model.lean import LeanUNet

SMALL = dict(filters=(4, 8, 16, 32), strides=(1, 2, 2, 2))


def _network(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    network = build_network(NetworkConfig(**{**SMALL, **overrides})).eval()
    for module in network.modules():  # non-trivial norm parameters and running statistics
        if isinstance(module, (nn.InstanceNorm3d, nn.BatchNorm3d)):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.3)
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return network


def _reference(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(x)


@pytest.mark.parametrize("overrides", [{}, {"residual": False}, {"norm": "batch"}, {"kernel_size": 5}, {"kernel_size": 7, "strides": (1, 2, 2, 2)}],
                         ids=["residual", "basic", "batch-norm", "kernel-5", "kernel-7"])
@pytest.mark.parametrize("slab_bytes", [1, 20_000, 10**9], ids=["2-row-slabs", "some-slabs", "one-slab"])
def test_float32_forward_equals_the_network(overrides, slab_bytes):
    network = _network(**overrides)
    x = torch.randn(2, 1, 40, 24, 32, generator=torch.Generator().manual_seed(1)) * 3 + 2
    expected = _reference(network, x)
    with torch.inference_mode():
        out = LeanUNet.from_network(network, torch.float32, slab_bytes=slab_bytes)(x)
    assert out.shape == expected.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=5e-5, rtol=1e-4)


def test_slabs_do_not_change_the_result():
    network, x = _network(seed=3), torch.randn(1, 1, 48, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        whole = LeanUNet.from_network(network, torch.float32, slab_bytes=10**9)(x)
        slabs = LeanUNet.from_network(network, torch.float32, slab_bytes=1)(x)
    torch.testing.assert_close(slabs, whole, atol=2e-5, rtol=1e-5)


def test_each_sample_of_a_batch_is_normalised_on_its_own():
    network = _network(seed=5)
    x = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(6))
    x[1] = x[1] * 10 + 4  # instance norm makes the scores of a sample independent of the others
    lean = LeanUNet.from_network(network, torch.float32, slab_bytes=1)
    with torch.inference_mode():
        batched = lean(x)
        single = torch.cat([lean(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=2e-5, rtol=1e-5)


def test_bfloat16_forward_stays_close_to_float32():
    network = _network(seed=7)
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(8))
    expected = _reference(network, x)
    with torch.inference_mode():
        out = LeanUNet.from_network(network, torch.bfloat16, slab_bytes=1)(x)
    assert out.dtype == torch.float32
    scale = expected.abs().max()
    assert (out - expected).abs().max() < 0.05 * scale
    confident = expected.abs() > 0.05 * scale
    assert torch.equal(out[confident] > 0, expected[confident] > 0)


def test_the_network_is_left_as_it_was():
    network = _network(seed=11)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    lean = LeanUNet.from_network(network, torch.bfloat16)
    after = network.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    weight = lean.encoder[0].conv1.weight
    assert weight.dtype == torch.bfloat16 and weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert lean.encoder[0].norm1.weight.dtype == torch.float32  # norms keep float32 parameters


def test_weights_of_another_architecture_are_refused():
    network = _network()
    state = network.state_dict()
    state["input_block.conv2.conv.weight"] = torch.zeros(4, 4, 3, 3, 1)
    with pytest.raises(ConfigError, match="wrong shape"):
        LeanUNet(network.config, state)
    with pytest.raises(ConfigError, match="unexpected"):
        LeanUNet(NetworkConfig(filters=(4, 8, 16), strides=(1, 2, 2), deep_supervision_heads=1), network.state_dict())
