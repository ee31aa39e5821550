"""Small U-Net variants the network and layout tests share (test_network.py, test_model_layout.py),
built on the meta device so that no weights are allocated."""

from __future__ import annotations

import torch
from bilayer.model import MembraneUNet, NetworkConfig, build_network

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


def meta_network(config: NetworkConfig) -> MembraneUNet:
    with torch.device("meta"):
        return build_network(config)
