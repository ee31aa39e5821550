"""Training losses for membrane segmentation, MemBrain-seg's recipe (MemBrain v2).

Network outputs are logits (B, 1, z, y, x) read through a sigmoid; labels are 0 background,
1 membrane, 2 ignore, and ignored voxels never count. :class:`MembraneLoss` combines masked
binary cross-entropy and Dice (:mod:`~bilayer.losses.region`), optionally the Surface-Dice
loss from a soft skeleton (:mod:`~bilayer.losses.skeleton`), over the deep-supervision
outputs (:mod:`~bilayer.losses.combined`), as configured by :class:`LossConfig`.

Names load on first use (PEP 562), so importing :mod:`bilayer.losses.config` for its
defaults (as a command line does) does not load torch.
"""

from __future__ import annotations

from bilayer._lazy import lazy_names

_HOMES = {
    "DEEP_SUPERVISION_WEIGHTS": "config",
    "LossConfig": "config",
    "MembraneLoss": "combined",
    "downsample_labels": "combined",
    "masked_bce": "region",
    "masked_dice_loss": "region",
    "label_skeleton": "skeleton",
    "soft_skeleton": "skeleton",
    "soft_surface_dice": "skeleton",
    "surface_dice_loss": "skeleton",
}

__getattr__, __all__ = lazy_names(__name__, _HOMES)
