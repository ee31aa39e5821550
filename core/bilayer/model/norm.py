"""Instance normalisation that keeps channels-last feature maps channels-last.

PyTorch's ``instance_norm`` reshapes its input to (1, B·C, …), which for a channels-last
(N, D, H, W, C) map means a full copy to the standard layout and back, forward and backward:
in the MemBrain-seg U-Net these copies cost as much as the convolutions they sit between.
Per sample, instance norm *is* training-mode batch norm, whose fused CPU and GPU kernels
read and write channels-last maps in place; :class:`InstanceNorm3d` computes it that way.
Same parameters and state-dict keys as ``torch.nn.InstanceNorm3d``, same results.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InstanceNorm3d", "use_channels_last_norms"]


class InstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` (no running statistics) computed layout-preserving for
    channels-last inputs; other inputs take PyTorch's own path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats or x.dim() != 5 or not x.is_contiguous(memory_format=torch.channels_last_3d):
            return super().forward(x)
        samples = [F.batch_norm(x[b:b + 1], None, None, self.weight, self.bias, True, 0.0, self.eps)
                   for b in range(x.shape[0])]
        return samples[0] if len(samples) == 1 else torch.cat(samples)


def use_channels_last_norms(module: nn.Module) -> nn.Module:
    """Replace, in place, every plain ``nn.InstanceNorm3d`` of ``module`` by :class:`InstanceNorm3d`
    (sharing its parameters) and return ``module``."""
    for child in module.modules():
        if type(child) is nn.InstanceNorm3d and not child.track_running_stats:
            child.__class__ = InstanceNorm3d  # same attributes and parameters, another forward
    return module
