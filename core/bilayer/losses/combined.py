"""The training loss over all the network's outputs: MemBrain-seg's recipe as one module.

In training mode the network returns the full-resolution logits and, with deep supervision,
lower-resolution heads (1/2, 1/4, ...). Each output is compared with the labels brought to
its own size (nearest-neighbour, so the ignore label survives), as nnU-Net and MemBrain-seg
do, and the per-output losses are summed with fixed weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bilayer.errors import ConfigError
from bilayer.losses._tensors import check_pair, float32_math, per_sample_sum, valid_voxels
from bilayer.losses.config import LossConfig
from bilayer.losses.region import masked_bce, masked_dice_loss
from bilayer.losses.skeleton import surface_dice_loss

__all__ = ["MembraneLoss", "downsample_labels"]


def downsample_labels(labels: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``labels`` (B, C, z, y, x) brought to the spatial ``shape`` of a deep-supervision head.

    Output voxel ``i`` copies input voxel ``floor(i * n_in / n_out)`` along each axis (for a
    factor 2: the even voxels), which is what MONAI's ``Resize(mode="nearest")`` does inside
    MemBrain-seg's ``DownsampleSegForDeepSupervisionTransform``. Labels are picked, never
    averaged, so 0, 1 and 2 stay exactly what they were.

    Args:
        labels: (B, C, z, y, x) labels of any numeric dtype.
        shape: the head's spatial shape (z, y, x), no larger than the labels'.

    Returns:
        Labels of the given spatial shape and the input's dtype; ``labels`` itself when the
        shape is already right.

    Raises:
        ConfigError: ``labels`` is not 5-D, or ``shape`` is not 3 sizes from 1 to the labels'.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 5:
        raise ConfigError(f"labels must be a 5-D tensor (B, 1, z, y, x), got {getattr(labels, 'shape', labels)!r}")
    target = tuple(int(n) for n in shape)
    if target == tuple(labels.shape[2:]):
        return labels
    if len(target) != 3 or any(not 1 <= n <= m for n, m in zip(target, labels.shape[2:])):
        raise ConfigError(
            f"cannot bring labels of spatial shape {tuple(labels.shape[2:])} to {target}: a head must be "
            "3-D and no larger than the labels"
        )
    return F.interpolate(labels.float(), size=target, mode="nearest").to(labels.dtype)


class MembraneLoss(nn.Module):
    """MemBrain-seg's training loss: masked Dice + BCE, optional Surface-Dice, deep supervision.

    Call it as ``loss(outputs, labels)`` with the network's training-mode outputs (one logits
    tensor or the list ``[full, half, quarter, ...]``) and the full-resolution labels
    (0 background, 1 membrane, 2 ignore). It returns a scalar float32 tensor, also under
    autocast. :class:`LossConfig` gives the formula.

    Each term is averaged over the samples of the batch that have at least one voxel not
    labelled 2. MemBrain-seg's ``CombinedLoss`` divides the sum over samples by (the number
    of samples whose loss is not 0) + 0.001, so its loss is ours times n / (n + 0.001), and
    a fully ignored sample makes its BCE 0 / 0. The Surface-Dice term can be limited to
    some samples (MemBrain-seg's dataset tokens).

    Attributes:
        config: the loss configuration.
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        super().__init__()
        if not isinstance(config, LossConfig):
            raise ConfigError(f"MembraneLoss needs a LossConfig, got {type(config).__name__}; use LossConfig.from_dict")
        self.config = config

    def forward(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor,
        surface_samples: torch.Tensor | Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """The weighted sum over outputs of :meth:`head_loss`, labels down-sampled per output.

        Args:
            outputs: logits (B, 1, z, y, x), or a list of them, full resolution first.
            labels: full-resolution labels (B, 1, z, y, x).
            surface_samples: (B,) booleans choosing the samples that get the Surface-Dice
                term; ``None``: all. Ignored when Surface-Dice is off.

        Returns:
            Scalar float32 loss.

        Raises:
            ConfigError: no outputs, more outputs than deep-supervision weights, or shapes
                that do not fit together.
        """
        heads = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        if not heads or not all(isinstance(h, torch.Tensor) for h in heads):
            raise ConfigError("outputs must be a logits tensor or a non-empty list of them, full resolution first")
        total = None
        for weight, logits in zip(self.config.head_weights(len(heads)), heads):
            if weight == 0:
                continue
            term = weight * self.head_loss(logits, downsample_labels(labels, logits.shape[2:]), surface_samples)
            total = term if total is None else total + term
        return total

    def head_loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        surface_samples: torch.Tensor | Sequence[bool] | None = None,
    ) -> torch.Tensor:
        """The loss of one output against labels of its own size, averaged over the batch.

        Args:
            logits: (B, C, z, y, x) logits, any float dtype.
            labels: (B, C, z, y, x) labels of the same shape.
            surface_samples: as in :meth:`forward`.

        Returns:
            Scalar float32 loss; 0 when every voxel of the batch is labelled 2.
        """
        config = self.config
        logits = check_pair(logits, labels)
        with float32_math(logits.device):
            counted = per_sample_sum(valid_voxels(labels)) > 0
            region = config.dice_weight * masked_dice_loss(logits, labels, smooth=config.dice_smooth)
            region = region + config.bce_weight * masked_bce(logits, labels)
            loss = _mean(region, counted)
            if not config.surface_dice:
                return loss
            chosen = counted & _sample_choice(surface_samples, logits.shape[0], logits.device)
            surface = surface_dice_loss(
                logits, labels, iterations=config.skeleton_iterations, smooth=config.surface_dice_smooth
            )
            weight = config.surface_dice_weight
            return (loss + weight * _mean(surface, chosen)) / (1.0 + weight)


def _mean(values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B,) over the ``chosen`` samples; 0 (still in the graph) if none is."""
    weights = chosen.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def _sample_choice(choice: torch.Tensor | Sequence[bool] | None, batch: int, device: torch.device) -> torch.Tensor:
    if choice is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    chosen = torch.as_tensor(choice, device=device).bool().reshape(-1)
    if chosen.numel() != batch:
        raise ConfigError(f"surface_samples has {chosen.numel()} entries for a batch of {batch}; give one per sample")
    return chosen
