"""Inputs the loss tests share (test_losses_region.py, test_losses_combined.py, test_losses_skeleton.py):
hand-made tensors, membrane plates with an ignored block, random logits, and the Dice smoothing."""

from __future__ import annotations

import torch

#: MemBrain-seg's Dice smoothing, written here rather than imported, so the expected values stay independent.
DICE_SMOOTH = 1e-5


def tensor(values, shape=None) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(shape) if shape else t


def plate_labels(batch: int = 2, size: int = 16) -> torch.Tensor:
    """Membrane plates (label 1) with an ignored block (label 2) cutting through them."""
    labels = torch.zeros(batch, 1, size, size, size)
    for b in range(batch):
        z0 = 4 + 3 * b
        labels[b, :, z0 : z0 + 4] = 1
        labels[b, :, :, : size // 4 + b, size // 2 :] = 2
    return labels


def random_logits(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3
