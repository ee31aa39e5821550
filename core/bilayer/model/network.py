"""The MemBrain-seg U-Net as a PyTorch module (MONAI ``DynUNet``), for training.

MemBrain-seg 0.0.10 (``segmentation/networks/unet.py``) uses a MONAI ``DynUNet`` with
residual blocks, kernel 3, strides 1-2-2-2-2-2, filters 32…1024, instance normalisation,
leaky ReLU (slope 0.01), one output channel and two deep-supervision heads: 91 M parameters.
:func:`build_network` builds the same modules under the same names, so its ``state_dict()``
keys are exactly those of MemBrain-seg's ``SemanticSegmentationUnet`` without the
Lightning module's leading ``_model.`` (:mod:`bilayer.model.layout` lists them without MONAI).

What the forward pass returns (see :class:`MembraneUNet`):

* **eval mode**: one tensor, the full-resolution logits (B, out_channels, *spatial*), like
  MONAI's ``DynUNet``. MemBrain-seg's subclass returns a list here and its inference takes
  element 0; this tensor is that element. (Inference uses :class:`~bilayer.model.lean.LeanUNet`.)
* **training mode with deep supervision**: a list ``[full, half, quarter]`` of logits at their
  own resolutions (full, 1/2, 1/4 for the default strides), compared with labels downsampled
  to match, as MemBrain-seg and nnU-Net do (MONAI instead upsamples the heads and stacks them).
"""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet
from torch import nn

from bilayer.model.config import NetworkConfig, Norm
from bilayer.model.norm import use_channels_last_norms

__all__ = ["MembraneUNet", "build_network", "count_parameters"]

_MONAI_NORM = {Norm.INSTANCE: ("INSTANCE", {"affine": True}), Norm.BATCH: ("BATCH", {})}


class MembraneUNet(DynUNet):
    """MONAI ``DynUNet`` built from a :class:`NetworkConfig`, with MemBrain-seg's
    deep-supervision outputs in training mode.

    Attributes:
        config: the architecture this network was built from.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            kernel_size=[config.kernel_size] * len(config.strides),
            strides=list(config.strides),
            upsample_kernel_size=list(config.strides[1:]),
            filters=list(config.filters),
            dropout=config.dropout or None,
            norm_name=_MONAI_NORM[config.norm],
            act_name=("leakyrelu", {"inplace": True, "negative_slope": config.negative_slope}),
            deep_supervision=config.deep_supervision,
            deep_supr_num=config.deep_supervision_heads,
            res_block=config.residual,
        )
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits for a (B, in_channels, z, y, x) batch; each spatial size a multiple of
        ``config.size_multiple``.

        Returns:
            In eval mode, or without deep supervision: the full-resolution logits
            (B, out_channels, z, y, x). In training mode with deep supervision: the list
            ``[full, head_1, …]`` where head ``i`` has the resolution of level ``i``
            (1/2, 1/4, … for stride-2 levels).
        """
        out = self.output_block(self.skip_layers(x))
        if self.training and self.deep_supervision:
            return [out, *self.heads]
        return out

    def forward_with_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[full, head_1, …]`` as in training mode, in either mode (for validation losses that
        equal the training loss; the heads are computed in eval mode too)."""
        out = self.output_block(self.skip_layers(x))
        return [out, *self.heads] if self.deep_supervision else [out]


def build_network(config: NetworkConfig) -> MembraneUNet:
    """Build the network for ``config``, freshly initialised (Kaiming normal, as MONAI does).

    Its ``state_dict()`` keys and shapes match MemBrain-seg's network for the same
    architecture, so MemBrain-seg weights load into it unchanged (after the ``_model.`` prefix
    is removed). The torch random state decides the initial weights. Its instance norms keep
    channels-last inputs channels-last (:mod:`bilayer.model.norm`), so training in that layout
    is fast.
    """
    return use_channels_last_norms(MembraneUNet(config))


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module``, each shared parameter counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
