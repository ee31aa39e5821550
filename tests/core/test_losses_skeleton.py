"""bilayer.losses.skeleton: the soft skeleton is thin and converged; Surface-Dice equals a numpy version."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bilayer.errors import ConfigError
from bilayer.losses import soft_skeleton, soft_surface_dice, surface_dice_loss
from loss_inputs import plate_labels, random_logits


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
    labels = plate_labels(batch=2, size=20)
    logits = random_logits(labels.shape, seed=4) + 4 * (labels == 1).float()
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


def test_negative_iterations_raise():
    labels = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match="iterations"):
        soft_skeleton(labels, iterations=-1)
