"""bilayer.losses.region: masked binary cross-entropy and Dice, by hand, with the ignore label left out."""

from __future__ import annotations

import math

import pytest
import torch

from bilayer.errors import ConfigError
from bilayer.losses import masked_bce, masked_dice_loss
from loss_inputs import DICE_SMOOTH, tensor


def test_masked_bce_by_hand():
    # Sample 0: logits 0, ln 3, -ln 3, 5 against labels 1, 1, 0, 2 (the last voxel ignored).
    # Sample 1: logit 2 against 0, three ignored voxels.
    logits = tensor([[0.0, math.log(3), -math.log(3), 5.0], [2.0, -7.0, 9.0, 0.5]], (2, 1, 1, 1, 4))
    labels = tensor([[1, 1, 0, 2], [0, 2, 2, 2]], (2, 1, 1, 1, 4))
    expected_0 = (math.log(2) + math.log(4 / 3) + math.log(4 / 3)) / 3  # -log p, -log p, -log(1 - p)
    expected_1 = math.log(1 + math.exp(2.0))  # -log(1 - sigmoid(2))
    assert masked_bce(logits, labels).tolist() == pytest.approx([expected_0, expected_1], rel=1e-6)


def test_masked_dice_loss_by_hand():
    logits = tensor([0.0, math.log(3), -math.log(3), 5.0], (1, 1, 1, 1, 4))
    labels = tensor([1, 1, 0, 2], (1, 1, 1, 1, 4))
    p = [0.5, 0.75, 0.25]  # the ignored voxel's 0.99 counts nowhere
    g = [1, 1, 0]
    overlap = sum(a * b for a, b in zip(p, g))
    expected = 1 - (2 * overlap + DICE_SMOOTH) / (sum(p) + sum(g) + DICE_SMOOTH)
    assert masked_dice_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert masked_dice_loss(logits, labels.long()).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_of_empty_label_and_empty_prediction_is_zero():
    labels = torch.zeros(1, 1, 4, 4, 4)
    assert masked_dice_loss(torch.full((1, 1, 4, 4, 4), -100.0), labels).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_raise():
    labels = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match="downsample_labels"):
        masked_bce(torch.zeros(1, 1, 4, 4, 4), labels)
    with pytest.raises(ConfigError, match="5-D"):
        masked_dice_loss(torch.zeros(8, 8, 8), torch.zeros(8, 8, 8))
