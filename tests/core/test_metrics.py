"""Tests of bilayer.metrics: Dice and Surface-Dice with the ignore label, MemBrain-seg's benchmark formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.errors import ConfigError
from bilayer.metrics import (
    DiceCounts,
    SurfaceDiceCounts,
    dice,
    dice_counts,
    segmentation_scores,
    surface_dice,
    surface_dice_counts,
)
from bilayer.postprocess import skeletonize

EPS = 1e-6


def _shell(shape=(40, 40, 40), centre=(20, 20, 20), inner=9.0, outer=13.0) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    radius = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return ((radius >= inner) & (radius <= outer)).astype(np.uint8)


def _membrain_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """MemBrain-seg's benchmark ``masked_dice``, written out in numpy (float64)."""
    mask = gt != 2
    tp = np.sum((pred == 1) & (gt == 1) & mask)
    fp = np.sum((pred == 1) & (gt == 0) & mask)
    fn = np.sum((pred == 0) & (gt == 1) & mask)
    precision, recall = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    return 2.0 * (precision * recall) / (precision + recall + EPS)


def _membrain_surface_dice(pred_skel, gt_skel, pred, gt) -> float:
    """MemBrain-seg's benchmark ``masked_surface_dice`` on float32 skeletons, written out in numpy."""
    mask = gt != 2
    pred_skel = np.where(mask, pred_skel, 0).astype(np.float32)
    gt_skel = np.where(mask, gt_skel, 0).astype(np.float32)
    tprec = np.sum(pred_skel * gt) / (np.sum(pred_skel) + np.float32(EPS))
    tsens = np.sum(gt_skel * pred) / (np.sum(gt_skel) + np.float32(EPS))
    return float(np.float32(2.0) * (tprec * tsens) / (tprec + tsens + np.float32(EPS)))


# --- Dice ---------------------------------------------------------------------------------------


def test_dice_by_hand():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 2, 2, 0])
    pred = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])  # tp 3, fn 1, fp 1; the ignored 1 does not count
    assert dice_counts(pred, labels) == DiceCounts(tp=3, fp=1, fn=1)
    precision = recall = 3 / (4 + EPS)
    assert dice(pred, labels) == pytest.approx(2 * precision * recall / (precision + recall + EPS), rel=1e-12)
    assert dice(pred, labels) == pytest.approx(0.75, abs=1e-6)


def test_dice_is_membrain_segs_and_blind_to_the_ignore_label(rng):
    labels = rng.choice(3, size=(12, 13, 14), p=[0.5, 0.3, 0.2])
    pred = rng.integers(0, 2, size=labels.shape)
    assert dice(pred, labels) == _membrain_dice(pred, labels)
    flipped = np.where(labels == 2, 1 - pred, pred)
    assert dice_counts(flipped, labels) == dice_counts(pred, labels)
    assert dice(pred.astype(bool), labels.astype(np.float32)) == dice(pred, labels)
    assert dice(torch.from_numpy(pred), torch.from_numpy(labels)) == dice(pred, labels)


def test_empty_masks_score_zero_as_in_membrain_seg():
    empty = np.zeros((8, 8, 8), dtype=np.uint8)
    assert dice(empty, empty) == 0.0
    assert dice(empty, _shell((8, 8, 8), (4, 4, 4), 2, 3)) == 0.0
    counts = surface_dice_counts(empty, empty)
    assert counts == SurfaceDiceCounts(0, 0, 0, 0) and counts.surface_dice == 0.0


# --- Surface-Dice -------------------------------------------------------------------------------


def test_surface_dice_is_one_for_identical_masks_and_lower_for_a_shifted_one():
    labels = _shell()
    assert surface_dice(labels, labels) == pytest.approx(1.0, abs=1e-6)
    shifted = np.roll(labels, 3, axis=2)
    scores = [surface_dice(np.roll(labels, s, axis=2), labels) for s in (1, 3, 6)]
    assert scores[0] < 1.0 - 1e-3 and scores[0] > scores[1] > scores[2]
    assert dice(shifted, labels) < 1.0


def test_surface_dice_counts_by_hand_with_given_skeletons():
    labels = np.zeros((1, 4, 5), dtype=np.uint8)
    labels[0, 1:3, :] = 1
    labels[0, :, 4] = 2  # the last column is ignored
    pred = np.zeros_like(labels)
    pred[0, 2:4, :] = 1
    pred_skel = np.zeros_like(labels)
    pred_skel[0, 3, :] = 1  # off the membrane: 0 of 4 counted voxels hit
    pred_skel[0, 2, 0] = 1  # on it: 1 hit
    label_skel = np.zeros_like(labels)
    label_skel[0, 1, :] = 1  # row 1 is not predicted: 0 hits of 4
    label_skel[0, 2, :2] = 1  # predicted: 2 hits
    counts = surface_dice_counts(pred, labels, pred_skeleton=pred_skel, label_skeleton=label_skel)
    assert counts == SurfaceDiceCounts(pred_hits=1, pred_skeleton=5, label_hits=2, label_skeleton=6)
    precision, sensitivity = 1 / (5 + EPS), 2 / (6 + EPS)
    expected = 2 * precision * sensitivity / (precision + sensitivity + EPS)
    assert counts.surface_dice == pytest.approx(expected, rel=1e-6)
    assert counts.surface_dice == _membrain_surface_dice(pred_skel, label_skel, pred, labels)


def test_surface_dice_is_membrain_segs_on_its_own_skeletons():
    labels = _shell()
    labels[:, :, 30:] = np.where(labels[:, :, 30:] == 1, 2, 0)  # an ignored cap
    labels[5:9, 5:9, 5:9] = 2
    pred = _shell(centre=(21, 20, 19), inner=8.5, outer=12.0)
    pred[:4, :4, :4] = 1  # a false positive blob
    pred_skel, label_skel = skeletonize(pred), skeletonize(labels == 1)
    expected = _membrain_surface_dice(pred_skel, label_skel, pred, labels)
    assert surface_dice(pred, labels) == expected
    given = surface_dice_counts(pred, labels, pred_skeleton=pred_skel, label_skeleton=label_skel)
    assert given == surface_dice_counts(pred, labels)
    flipped = np.where(labels == 2, 1 - pred, pred)  # with the skeletons fixed, ignored voxels do not count
    assert surface_dice_counts(flipped, labels, pred_skeleton=pred_skel, label_skeleton=label_skel) == given


def test_counts_add_up_to_global_scores():
    a = SurfaceDiceCounts(3, 4, 5, 6)
    b = SurfaceDiceCounts(1, 2, 3, 4)
    assert a + b == SurfaceDiceCounts(4, 6, 8, 10)
    assert (a + b).precision == pytest.approx(4 / 6, rel=1e-6)
    assert DiceCounts(1, 2, 3) + DiceCounts(4, 5, 6) == DiceCounts(5, 7, 9)


def test_segmentation_scores_reports_every_score():
    labels = _shell((32, 32, 32), (16, 16, 16), 7, 10)
    pred = np.roll(labels, 1, axis=0)
    scores = segmentation_scores(pred, labels)
    voxels, skeletons = dice_counts(pred, labels), surface_dice_counts(pred, labels)
    assert scores == {
        "dice": voxels.dice,
        "surface_dice": skeletons.surface_dice,
        "precision": voxels.precision,
        "recall": voxels.recall,
        "skeleton_precision": skeletons.precision,
        "skeleton_recall": skeletons.sensitivity,
    }
    assert all(isinstance(v, float) and 0.5 < v < 1 for v in scores.values())


@pytest.mark.parametrize(
    ("pred", "labels", "match"),
    [
        (np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), "same shape"),
        (np.full((4, 4, 4), 0.7), np.zeros((4, 4, 4)), "binary"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), 3), "only 0"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), -1), "only 0"),
        (np.array(["a"]), np.array([0]), "numeric"),
    ],
)
def test_bad_inputs_raise(pred, labels, match):
    with pytest.raises(ConfigError, match=match):
        dice(pred, labels)


def test_surface_dice_needs_3d_masks_and_fitting_skeletons():
    with pytest.raises(ConfigError, match="3-D"):
        surface_dice(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="pred_skeleton"):
        surface_dice_counts(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), pred_skeleton=np.zeros((4, 4, 3)))
