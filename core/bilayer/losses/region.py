"""Region losses over the labelled voxels: binary cross-entropy and soft Dice.

Both follow MemBrain-seg 0.0.10's ``IgnoreLabelDiceCELoss`` (``training/optim_utils.py``):
one output channel read through a sigmoid (not a softmax), voxels labelled 2 taken out of
every sum, each sample of the batch scored on its own. They return one value per sample so
that the caller decides how samples are averaged (:class:`bilayer.losses.MembraneLoss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bilayer.errors import ConfigError
from bilayer.losses._tensors import check_pair, float32_math, membrane_voxels, per_sample_sum, valid_voxels

__all__ = ["DICE_SMOOTH", "masked_bce", "masked_dice_loss"]

#: MONAI ``DiceLoss``'s default ``smooth_nr`` = ``smooth_dr``, which MemBrain-seg keeps.
DICE_SMOOTH = 1e-5


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the logits against membrane (1) versus background (0),
    averaged over the voxels not labelled 2, per sample.

    Ignored voxels add nothing to the sum nor to the count, and their logits get zero
    gradient, so what the network predicts there does not matter.

    Args:
        logits: network outputs (B, C, z, y, x), any float dtype (computed in float32).
        labels: (B, C, z, y, x), 0 background, 1 membrane, 2 ignore (float or integer).

    Returns:
        (B,) float32 losses; a sample with no labelled voxel scores 0 (MemBrain-seg divides
        0 by 0 there).

    Raises:
        ConfigError: the shapes differ or are not 5-D.
    """
    logits = check_pair(logits, labels)
    with float32_math(logits.device):
        valid = valid_voxels(labels)
        per_voxel = F.binary_cross_entropy_with_logits(logits, membrane_voxels(labels), reduction="none")
        per_voxel = torch.where(valid > 0, per_voxel, torch.zeros_like(per_voxel))
        return per_sample_sum(per_voxel) / per_sample_sum(valid).clamp(min=1.0)


def masked_dice_loss(logits: torch.Tensor, labels: torch.Tensor, *, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum(p g) + s) / (sum(p) + sum(g) + s)`` per sample.

    ``p`` is the sigmoid of the logits and ``g`` the membrane mask, both set to 0 at voxels
    labelled 2 (as MONAI's ``MaskedLoss`` does for MemBrain-seg), and the sums run over the
    channel and spatial axes of each sample. The smoothing ``s`` keeps an empty label and an
    empty prediction at loss 0 instead of 0 / 0.

    Args:
        logits: network outputs (B, C, z, y, x), any float dtype (computed in float32).
        labels: (B, C, z, y, x), 0 background, 1 membrane, 2 ignore.
        smooth: ``s`` above, > 0; MemBrain-seg uses MONAI's default 1e-5.

    Returns:
        (B,) float32 losses in [0, 1].

    Raises:
        ConfigError: the shapes differ or are not 5-D, or ``smooth`` is not positive.
    """
    logits = check_pair(logits, labels)
    if not smooth > 0:
        raise ConfigError(f"Dice smooth={smooth!r} must be a positive number, e.g. {DICE_SMOOTH}")
    with float32_math(logits.device):
        probabilities = torch.sigmoid(logits) * valid_voxels(labels)
        target = membrane_voxels(labels)
        overlap = per_sample_sum(probabilities * target)
        total = per_sample_sum(probabilities) + per_sample_sum(target)
        return 1.0 - (2.0 * overlap + smooth) / (total + smooth)
