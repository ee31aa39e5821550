"""bilayer.losses.combined: Dice + BCE per sample, blind to ignored voxels, over deep-supervision heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.transforms import Resize

from bilayer.errors import ConfigError
from bilayer.losses import (
    LossConfig,
    MembraneLoss,
    downsample_labels,
    masked_bce,
    masked_dice_loss,
    surface_dice_loss,
)
from loss_inputs import DICE_SMOOTH, plate_labels, random_logits, tensor


def test_membrane_loss_is_dice_plus_bce_averaged_over_samples_with_labels():
    logits = tensor([[0.0, math.log(3), -math.log(3), 5.0], [1.0, 2.0, 3.0, 4.0]], (2, 1, 1, 1, 4))
    labels = tensor([[1, 1, 0, 2], [2, 2, 2, 2]], (2, 1, 1, 1, 4))  # sample 1 fully ignored: left out
    bce = (math.log(2) + 2 * math.log(4 / 3)) / 3
    dice = 1 - (2 * 1.25 + DICE_SMOOTH) / (1.5 + 2 + DICE_SMOOTH)
    loss = MembraneLoss(LossConfig(bce_weight=2.0, dice_weight=0.5))(logits, labels)
    assert loss.item() == pytest.approx(2.0 * bce + 0.5 * dice, rel=1e-6)
    assert MembraneLoss()(logits, torch.full_like(labels, 2)).item() == 0.0


@pytest.mark.parametrize("surface", [False, True])
@pytest.mark.parametrize("heads", [1, 3])
def test_predictions_under_the_ignore_label_change_neither_loss_nor_gradient(surface, heads):
    labels = plate_labels(batch=2, size=16)
    outputs = [random_logits((2, 1, 16 >> i, 16 >> i, 16 >> i), seed=i) for i in range(heads)]
    loss_fn = MembraneLoss(LossConfig(surface_dice=surface))

    def loss_and_grads(outs):
        outs = [o.clone().requires_grad_(True) for o in outs]
        loss = loss_fn(outs if heads > 1 else outs[0], labels)
        loss.backward()
        return loss.detach(), [o.grad for o in outs]

    ignored = [downsample_labels(labels, o.shape[2:]) == 2 for o in outputs]
    assert all(mask.any() for mask in ignored)
    flipped = [torch.where(mask, -o + 50 * random_logits(o.shape, 9), o) for o, mask in zip(outputs, ignored)]
    loss_a, grads_a = loss_and_grads(outputs)
    loss_b, grads_b = loss_and_grads(flipped)
    assert torch.equal(loss_a, loss_b)
    for grad_a, grad_b, mask in zip(grads_a, grads_b, ignored):
        assert torch.equal(grad_a, grad_b)
        assert torch.all(grad_a[mask] == 0) and torch.any(grad_a[~mask] != 0)


@pytest.mark.parametrize(
    ("size", "target"), [((32, 32, 32), (16, 16, 16)), ((20, 18, 13), (10, 9, 7)), ((24, 24, 24), (6, 6, 6))]
)
def test_downsample_labels_is_monai_nearest_resize_and_keeps_the_ignore_label(size, target):
    labels = torch.from_numpy(np.random.default_rng(3).integers(0, 3, size=(2, 1, *size)).astype(np.float32))
    ours = downsample_labels(labels, target)
    resize = Resize(target, mode="nearest")
    expected = torch.stack([torch.as_tensor(np.asarray(resize(labels[b]))) for b in range(2)])
    assert torch.equal(ours, expected)
    assert set(ours.unique().tolist()) == {0.0, 1.0, 2.0}
    assert downsample_labels(labels.long(), target).dtype == torch.int64


def test_downsample_by_two_takes_the_even_voxels():
    labels = torch.randint(0, 3, (1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(2))
    assert torch.equal(downsample_labels(labels, (8, 8, 8)), labels[:, :, ::2, ::2, ::2])


def _np_region_loss(c: float, labels: np.ndarray) -> float:
    """Dice + BCE of constant logits ``c`` per sample, averaged over the batch (numpy)."""
    p = 1 / (1 + math.exp(-c))
    losses = []
    for sample in labels:
        valid, g = sample != 2, sample == 1
        n_valid, n_membrane = valid.sum(), g.sum()
        bce = (n_membrane * -math.log(p) + (n_valid - n_membrane) * -math.log(1 - p)) / n_valid
        dice = 1 - (2 * p * n_membrane + DICE_SMOOTH) / (p * n_valid + n_membrane + DICE_SMOOTH)
        losses.append(bce + dice)
    return float(np.mean(losses))


def test_deep_supervision_sums_membrain_weights_over_hand_made_heads():
    labels = torch.from_numpy(np.random.default_rng(7).choice(3, size=(2, 1, 16, 16, 16), p=[0.6, 0.3, 0.1]))
    constants = [0.4, -1.2, 2.0]
    outputs = [torch.full((2, 1, 16 >> i, 16 >> i, 16 >> i), c) for i, c in enumerate(constants)]
    strided = [labels.numpy()[:, 0, :: 1 << i, :: 1 << i, :: 1 << i] for i in range(3)]  # every 2^i-th voxel
    per_head = [_np_region_loss(c, heads_labels) for c, heads_labels in zip(constants, strided)]
    expected = 1.0 * per_head[0] + 0.5 * per_head[1] + 0.25 * per_head[2]  # truncated, not normalised
    assert MembraneLoss()(outputs, labels).item() == pytest.approx(expected, rel=1e-5)
    assert MembraneLoss()(outputs[0], labels).item() == pytest.approx(per_head[0], rel=1e-5)
    off = MembraneLoss(LossConfig(deep_supervision=False))
    assert off(outputs, labels).item() == pytest.approx(per_head[0], rel=1e-5)
    custom = MembraneLoss(LossConfig(deep_supervision_weights=(2.0, 0.0, 1.0)))
    assert custom(outputs, labels).item() == pytest.approx(2 * per_head[0] + per_head[2], rel=1e-5)


def test_surface_dice_term_is_weighted_and_can_be_limited_to_some_samples():
    labels = plate_labels(batch=2, size=16)
    logits = random_logits(labels.shape, seed=5)
    region = masked_dice_loss(logits, labels) + masked_bce(logits, labels)
    surface = surface_dice_loss(logits, labels)
    loss = MembraneLoss(LossConfig(surface_dice=True, surface_dice_weight=3.0))
    assert loss(logits, labels).item() == pytest.approx((region.mean() + 3 * surface.mean()).item() / 4, rel=1e-6)
    only_first = loss(logits, labels, surface_samples=[True, False]).item()
    assert only_first == pytest.approx((region.mean() + 3 * surface[0]).item() / 4, rel=1e-6)
    assert loss(logits, labels, surface_samples=[False, False]).item() == pytest.approx(region.mean().item() / 4)


def test_loss_is_float32_under_autocast():
    labels = plate_labels(batch=2, size=16)
    logits = random_logits(labels.shape, seed=6)
    loss_fn = MembraneLoss(LossConfig(surface_dice=True))
    plain = loss_fn(logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = loss_fn(logits, labels)
        half = loss_fn(logits.bfloat16(), labels)
    assert autocast.dtype == torch.float32 and torch.equal(autocast, plain)
    assert half.dtype == torch.float32 and torch.equal(half, loss_fn(logits.bfloat16().float(), labels))


def test_more_heads_than_weights_a_larger_size_or_a_wrong_sample_list_raise():
    labels = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match="3 outputs .* only 2"):
        heads = [labels, labels[..., ::2, ::2, ::2], labels[..., ::4, ::4, ::4]]
        MembraneLoss(LossConfig(deep_supervision_weights=(1.0, 0.5)))(heads, labels)
    with pytest.raises(ConfigError, match="no larger"):
        downsample_labels(labels, (16, 8, 8))
    with pytest.raises(ConfigError, match="one per sample"):
        MembraneLoss(LossConfig(surface_dice=True))(labels, labels, surface_samples=[True, True])
