"""bilayer.model.norm: channels-last instance norm equals PyTorch's, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bilayer.model import NetworkConfig, build_network
from bilayer.model.norm import InstanceNorm3d

CL = torch.channels_last_3d


@pytest.mark.parametrize("batch", [1, 3])
def test_values_and_gradients_equal_torch_instance_norm(batch):
    torch.manual_seed(0)
    reference = nn.InstanceNorm3d(5, affine=True)
    reference.weight.data.uniform_(0.5, 1.5)
    reference.bias.data.normal_()
    ours = InstanceNorm3d(5, affine=True)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(batch, 5, 6, 7, 8) * 3 + 1
    x_ref, x_cl = x.clone().requires_grad_(), x.contiguous(memory_format=CL).requires_grad_()
    out_ref, out = reference(x_ref), ours(x_cl)
    assert out.is_contiguous(memory_format=CL) or batch > 1
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out_ref)
    out_ref.backward(grad)
    out.backward(grad)
    torch.testing.assert_close(x_cl.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, atol=1e-4, rtol=1e-4)


def test_the_network_trains_the_same_in_either_layout():
    torch.manual_seed(1)
    network = build_network(NetworkConfig(filters=(4, 8, 16, 32), strides=(1, 2, 2, 2))).train()
    assert any(isinstance(m, InstanceNorm3d) for m in network.modules())
    x = torch.randn(2, 1, 16, 16, 16)
    plain = network(x)
    channels_last = network.to(memory_format=CL)(x.contiguous(memory_format=CL))
    for a, b in zip(plain, channels_last):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert set(network.state_dict()) == set(build_network(NetworkConfig(filters=(4, 8, 16, 32), strides=(1, 2, 2, 2)))
                                             .state_dict())
