"""Shared checks of the loss functions: shapes, the label values, and float32 arithmetic."""

from __future__ import annotations

import contextlib

import torch

from bilayer.errors import ConfigError
from bilayer.metrics import IGNORE_LABEL, MEMBRANE_LABEL

_NDIM = 5  # (batch, channel, z, y, x)


def check_pair(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits`` as float32 after checking that it and ``labels`` are (B, C, z, y, x) of one shape.

    Logits are cast to float32 here so that every loss is computed in float32, also when the
    network ran in bfloat16 or float16 under autocast.

    Raises:
        ConfigError: either is not a tensor, not 5-D, or their shapes differ.
    """
    for name, value in (("logits", logits), ("labels", labels)):
        if not isinstance(value, torch.Tensor):
            raise ConfigError(f"{name} must be a torch.Tensor (B, 1, z, y, x), got {type(value).__name__}")
        if value.ndim != _NDIM:
            raise ConfigError(f"{name} must be 5-D (B, 1, z, y, x), got shape {tuple(value.shape)}")
    if logits.shape != labels.shape:
        raise ConfigError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must have the same shape; "
            "bring labels to a head's size with downsample_labels(labels, logits.shape[2:])"
        )
    return logits.float()


def valid_voxels(labels: torch.Tensor) -> torch.Tensor:
    """Float32 mask of the voxels that count: 1 where the label is not the ignore label."""
    return (labels != IGNORE_LABEL).float()


def membrane_voxels(labels: torch.Tensor) -> torch.Tensor:
    """Float32 mask of the membrane voxels (label 1); background and ignored voxels are 0."""
    return (labels == MEMBRANE_LABEL).float()


def per_sample_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the batch: (B, ...) -> (B,)."""
    return x.flatten(1).sum(dim=1)


def float32_math(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which autocast is off on ``device``, so pooling, convolutions and sums
    stay in float32 (CUDA autocast would otherwise run convolutions in float16)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()
