"""Tests of bilayer.losses: masked BCE and Dice, the soft skeleton, Surface-Dice, deep supervision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.transforms import Resize
from scipy import ndimage

from bilayer.errors import ConfigError
from bilayer.losses import (
    DEEP_SUPERVISION_WEIGHTS,
    LossConfig,
    MembraneLoss,
    downsample_labels,
    masked_bce,
    masked_dice_loss,
    soft_skeleton,
    soft_surface_dice,
    surface_dice_loss,
)

DICE_SMOOTH = 1e-5


def _tensor(values, shape=None) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float32)
    return t.reshape(shape) if shape else t


def _plate_labels(batch: int = 2, size: int = 16) -> torch.Tensor:
    """Membrane plates (label 1) with an ignored block (label 2) cutting through them."""
    labels = torch.zeros(batch, 1, size, size, size)
    for b in range(batch):
        z0 = 4 + 3 * b
        labels[b, :, z0 : z0 + 4] = 1
        labels[b, :, :, : size // 4 + b, size // 2 :] = 2
    return labels


def _random_logits(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3


# --- masked BCE and Dice, by hand ---------------------------------------------------------------


def test_masked_bce_by_hand():
    # Sample 0: logits 0, ln 3, -ln 3, 5 against labels 1, 1, 0, 2 (the last voxel ignored).
    # Sample 1: logit 2 against 0, three ignored voxels.
    logits = _tensor([[0.0, math.log(3), -math.log(3), 5.0], [2.0, -7.0, 9.0, 0.5]], (2, 1, 1, 1, 4))
    labels = _tensor([[1, 1, 0, 2], [0, 2, 2, 2]], (2, 1, 1, 1, 4))
    expected_0 = (math.log(2) + math.log(4 / 3) + math.log(4 / 3)) / 3  # -log p, -log p, -log(1 - p)
    expected_1 = math.log(1 + math.exp(2.0))  # -log(1 - sigmoid(2))
    assert masked_bce(logits, labels).tolist() == pytest.approx([expected_0, expected_1], rel=1e-6)


def test_masked_dice_loss_by_hand():
    logits = _tensor([0.0, math.log(3), -math.log(3), 5.0], (1, 1, 1, 1, 4))
    labels = _tensor([1, 1, 0, 2], (1, 1, 1, 1, 4))
    p = [0.5, 0.75, 0.25]  # the ignored voxel's 0.99 counts nowhere
    g = [1, 1, 0]
    overlap = sum(a * b for a, b in zip(p, g))
    expected = 1 - (2 * overlap + DICE_SMOOTH) / (sum(p) + sum(g) + DICE_SMOOTH)
    assert masked_dice_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert masked_dice_loss(logits, labels.long()).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_of_empty_label_and_empty_prediction_is_zero():
    labels = torch.zeros(1, 1, 4, 4, 4)
    assert masked_dice_loss(torch.full((1, 1, 4, 4, 4), -100.0), labels).item() == pytest.approx(0.0, abs=1e-6)


def test_membrane_loss_is_dice_plus_bce_averaged_over_samples_with_labels():
    logits = _tensor([[0.0, math.log(3), -math.log(3), 5.0], [1.0, 2.0, 3.0, 4.0]], (2, 1, 1, 1, 4))
    labels = _tensor([[1, 1, 0, 2], [2, 2, 2, 2]], (2, 1, 1, 1, 4))  # sample 1 fully ignored: left out
    bce = (math.log(2) + 2 * math.log(4 / 3)) / 3
    dice = 1 - (2 * 1.25 + DICE_SMOOTH) / (1.5 + 2 + DICE_SMOOTH)
    loss = MembraneLoss(LossConfig(bce_weight=2.0, dice_weight=0.5))(logits, labels)
    assert loss.item() == pytest.approx(2.0 * bce + 0.5 * dice, rel=1e-6)
    assert MembraneLoss()(logits, torch.full_like(labels, 2)).item() == 0.0


# --- the ignore label ---------------------------------------------------------------------------


@pytest.mark.parametrize("surface", [False, True])
@pytest.mark.parametrize("heads", [1, 3])
def test_predictions_under_the_ignore_label_change_neither_loss_nor_gradient(surface, heads):
    labels = _plate_labels(batch=2, size=16)
    outputs = [_random_logits((2, 1, 16 >> i, 16 >> i, 16 >> i), seed=i) for i in range(heads)]
    loss_fn = MembraneLoss(LossConfig(surface_dice=surface))

    def loss_and_grads(outs):
        outs = [o.clone().requires_grad_(True) for o in outs]
        loss = loss_fn(outs if heads > 1 else outs[0], labels)
        loss.backward()
        return loss.detach(), [o.grad for o in outs]

    ignored = [downsample_labels(labels, o.shape[2:]) == 2 for o in outputs]
    assert all(mask.any() for mask in ignored)
    flipped = [torch.where(mask, -o + 50 * _random_logits(o.shape, 9), o) for o, mask in zip(outputs, ignored)]
    loss_a, grads_a = loss_and_grads(outputs)
    loss_b, grads_b = loss_and_grads(flipped)
    assert torch.equal(loss_a, loss_b)
    for grad_a, grad_b, mask in zip(grads_a, grads_b, ignored):
        assert torch.equal(grad_a, grad_b)
        assert torch.all(grad_a[mask] == 0) and torch.any(grad_a[~mask] != 0)


# --- the soft skeleton --------------------------------------------------------------------------


@pytest.mark.parametrize(("thickness", "middle"), [(7, [16]), (8, [15, 16])])
def test_soft_skeleton_of_a_thick_plate_is_its_middle_surface(thickness, middle):
    size, z0 = 32, 16 - thickness // 2
    plate = torch.zeros(1, 1, size, size, size)
    plate[:, :, z0 : z0 + thickness] = 1
    skeleton = soft_skeleton(plate, iterations=5)[0, 0]
    planes = torch.nonzero(skeleton.amax(dim=(1, 2)) > 0).flatten().tolist()
    assert planes == middle  # thin: one plane for odd thickness, two for even
    assert torch.all(skeleton[middle] == 1)  # connected: every column through the plate crosses it
    assert torch.equal(soft_skeleton(plate, iterations=3), soft_skeleton(plate, iterations=10))  # converged
    assert soft_skeleton(plate, iterations=1).sum() == 0  # not yet: two erosions are not enough


def test_soft_skeleton_of_a_soft_tilted_plate_is_thin_and_covers_the_plate():
    size = 32
    z, y, x = np.meshgrid(*[np.arange(size)] * 3, indexing="ij")
    normal = np.array([1.0, 0.3, 0.2]) / np.linalg.norm([1.0, 0.3, 0.2])
    distance = (z - 16) * normal[0] + (y - 16) * normal[1] + (x - 16) * normal[2]
    plate = 1 / (1 + np.exp(4 * (np.abs(distance) - 3.5)))  # 7 voxels thick, soft edges
    skeleton = soft_skeleton(torch.from_numpy(plate.astype(np.float32))[None, None], iterations=5)[0, 0].numpy()
    surface = skeleton > 0.5
    per_column = surface.sum(axis=0)
    assert per_column.min() >= 1 and per_column.max() <= 2
    assert np.abs(distance[surface]).max() <= 1.5


def test_soft_skeleton_is_differentiable_and_keeps_shape():
    x = torch.rand(2, 1, 9, 10, 11, generator=torch.Generator().manual_seed(1), requires_grad=True)
    skeleton = soft_skeleton(x, iterations=2)
    assert skeleton.shape == x.shape and skeleton.min() >= 0 and skeleton.max() <= 1
    skeleton.sum().backward()
    assert x.grad is not None and torch.any(x.grad != 0)


# --- Surface-Dice against a numpy re-implementation ---------------------------------------------


def _np_soft_skeleton(x: np.ndarray, iterations: int) -> np.ndarray:
    def erode(a):
        return ndimage.minimum_filter(a, size=3, mode="nearest")  # border replicated = not eroding

    def dilate(a):
        return ndimage.maximum_filter(a, size=3, mode="nearest")

    def relu(a):
        return np.maximum(a, 0)

    skeleton = relu(x - dilate(erode(x)))
    for _ in range(iterations):
        x = erode(x)
        delta = relu(x - dilate(erode(x)))
        skeleton = skeleton + relu(delta - skeleton * delta)
    return skeleton


def _np_soft_surface_dice(logits: np.ndarray, labels: np.ndarray, iterations: int, smooth: float) -> float:
    valid = (labels != 2).astype(np.float64)
    g = (labels == 1).astype(np.float64)
    p = valid / (1 + np.exp(-logits.astype(np.float64)))
    taps = np.exp(-0.5 * (np.arange(-7, 8) / 2.0) ** 2)
    smoothed = g
    for axis in range(3):
        smoothed = ndimage.correlate1d(smoothed, taps / taps.sum(), axis=axis, mode="constant")
    s_p = _np_soft_skeleton(p, iterations) * valid
    s_g = _np_soft_skeleton(1.5 * smoothed, iterations) * valid
    precision = ((s_p * g).sum() + smooth) / (s_p.sum() + smooth)
    sensitivity = ((s_g * p).sum() + smooth) / (s_g.sum() + smooth)
    return 2 * precision * sensitivity / (precision + sensitivity)


@pytest.mark.parametrize(("iterations", "smooth"), [(5, 3.0), (2, 1.0)])
def test_soft_surface_dice_matches_a_numpy_reimplementation(iterations, smooth):
    labels = _plate_labels(batch=2, size=20)
    logits = _random_logits(labels.shape, seed=4) + 4 * (labels == 1).float()
    ours = soft_surface_dice(logits, labels, iterations=iterations, smooth=smooth)
    for b in range(2):
        expected = _np_soft_surface_dice(logits[b, 0].numpy(), labels[b, 0].numpy(), iterations, smooth)
        assert ours[b].item() == pytest.approx(expected, rel=1e-5)


def test_surface_dice_loss_is_low_for_the_label_and_high_for_a_shifted_plate():
    labels = torch.zeros(1, 1, 32, 32, 32)
    labels[:, :, 13:20] = 1
    perfect = (2 * labels - 1) * 10
    assert surface_dice_loss(perfect, labels).item() < 0.01
    assert surface_dice_loss(torch.roll(perfect, 6, dims=2), labels).item() > 0.9


# --- deep supervision ---------------------------------------------------------------------------


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
    labels = _plate_labels(batch=2, size=16)
    logits = _random_logits(labels.shape, seed=5)
    region = masked_dice_loss(logits, labels) + masked_bce(logits, labels)
    surface = surface_dice_loss(logits, labels)
    loss = MembraneLoss(LossConfig(surface_dice=True, surface_dice_weight=3.0))
    assert loss(logits, labels).item() == pytest.approx((region.mean() + 3 * surface.mean()).item() / 4, rel=1e-6)
    only_first = loss(logits, labels, surface_samples=[True, False]).item()
    assert only_first == pytest.approx((region.mean() + 3 * surface[0]).item() / 4, rel=1e-6)
    assert loss(logits, labels, surface_samples=[False, False]).item() == pytest.approx(region.mean().item() / 4)


def test_loss_is_float32_under_autocast():
    labels = _plate_labels(batch=2, size=16)
    logits = _random_logits(labels.shape, seed=6)
    loss_fn = MembraneLoss(LossConfig(surface_dice=True))
    plain = loss_fn(logits, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = loss_fn(logits, labels)
        half = loss_fn(logits.bfloat16(), labels)
    assert autocast.dtype == torch.float32 and torch.equal(autocast, plain)
    assert half.dtype == torch.float32 and torch.equal(half, loss_fn(logits.bfloat16().float(), labels))


# --- configuration and errors -------------------------------------------------------------------


def test_config_defaults_are_membrain_seg_and_round_trip_through_json():
    config = LossConfig()
    assert (config.bce_weight, config.dice_weight, config.surface_dice, config.skeleton_iterations) == (1, 1, False, 5)
    assert config.deep_supervision_weights == DEEP_SUPERVISION_WEIGHTS == (1.0, 0.5, 0.25, 0.125, 0.0675)
    assert config.head_weights(3) == (1.0, 0.5, 0.25)
    custom = LossConfig(surface_dice=True, surface_dice_weight=0.5, deep_supervision_weights=[1, 0.25])
    assert LossConfig.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom
    assert LossConfig.from_dict({}) == config


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bce_weight": -1.0}, "bce_weight"),
        ({"dice_smooth": 0.0}, "dice_smooth"),
        ({"skeleton_iterations": 1.5}, "skeleton_iterations"),
        ({"surface_dice": "yes"}, "surface_dice"),
        ({"deep_supervision_weights": (0.0, 1.0)}, "full-resolution"),
        ({"deep_supervision_weights": "1, 0.5"}, "deep_supervision_weights"),
        ({"bce_weight": 0.0, "dice_weight": 0.0}, "all 0"),
        ({"surface_dice_weight": float("nan")}, "surface_dice_weight"),
    ],
)
def test_bad_config_raises(options, match):
    with pytest.raises(ConfigError, match=match):
        LossConfig(**options)


def test_bad_inputs_raise():
    labels = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match=r"unknown loss configuration key\(s\) 'lambda_ce'"):
        LossConfig.from_dict({"lambda_ce": 1.0})
    with pytest.raises(ConfigError, match="3 outputs .* only 2"):
        heads = [labels, labels[..., ::2, ::2, ::2], labels[..., ::4, ::4, ::4]]
        MembraneLoss(LossConfig(deep_supervision_weights=(1.0, 0.5)))(heads, labels)
    with pytest.raises(ConfigError, match="downsample_labels"):
        masked_bce(torch.zeros(1, 1, 4, 4, 4), labels)
    with pytest.raises(ConfigError, match="5-D"):
        masked_dice_loss(torch.zeros(8, 8, 8), torch.zeros(8, 8, 8))
    with pytest.raises(ConfigError, match="no larger"):
        downsample_labels(labels, (16, 8, 8))
    with pytest.raises(ConfigError, match="one per sample"):
        MembraneLoss(LossConfig(surface_dice=True))(labels, labels, surface_samples=[True, True])
    with pytest.raises(ConfigError, match="iterations"):
        soft_skeleton(labels, iterations=-1)
