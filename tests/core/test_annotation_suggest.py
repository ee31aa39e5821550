"""Suggested patches: exact box means from block sums, the box of highest mean first, no overlaps,
every box inside the volume and where extract cuts it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from bilayer.annotation.extract import patch_start
from bilayer.annotation.suggest import block_means, box_means, grid_step, suggest_patches
from bilayer.errors import BilayerWarning, ConfigError, InputFileError


def test_grid_step_is_the_largest_divisor_up_to_an_eighth():
    assert [grid_step(s) for s in (160, 96, 64, 48, 16, 7, 1)] == [20, 12, 8, 6, 2, 1, 1]


def test_block_means_leave_out_partial_blocks_and_apply_the_transform():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(13, 10, 17)).astype(np.float32)
    inside = volume[:12, :9, :15].astype(np.float64)
    np.testing.assert_allclose(block_means(volume, 3), inside.reshape(4, 3, 3, 3, 5, 3).mean(axis=(1, 3, 5)),
                               rtol=1e-12)
    np.testing.assert_allclose(block_means(volume, 3, np.abs),
                               np.abs(inside).reshape(4, 3, 3, 3, 5, 3).mean(axis=(1, 3, 5)), rtol=1e-12)


def test_box_means_equal_brute_force():
    blocks = np.random.default_rng(1).random((5, 6, 7))
    got = box_means(blocks, 3)
    assert got.shape == (3, 4, 5)
    for k in itertools.product(range(3), range(4), range(5)):
        np.testing.assert_allclose(got[k], blocks[k[0]:k[0] + 3, k[1]:k[1] + 3, k[2]:k[2] + 3].mean())


def test_the_blob_comes_first_and_no_two_patches_overlap():
    rng = np.random.default_rng(2)
    volume = (0.1 * rng.random((48, 64, 56))).astype(np.float32)
    volume[24:40, 8:24, 30:46] += 1.0  # a 16³ uncertain region, on the 2-voxel grid
    found = suggest_patches(volume, size=16, count=6)
    assert found[0].centre == (32, 16, 38)
    assert found[0].mean == pytest.approx(volume[24:40, 8:24, 30:46].mean(dtype=np.float64))
    assert [s.mean for s in found] == sorted((s.mean for s in found), reverse=True) and len(found) == 6
    starts = [patch_start(volume.shape, s.centre, 16) for s in found]
    for s, start in zip(found, starts):
        assert start == tuple(c - 8 for c in s.centre)  # extract cuts it unshifted: it fits
        assert all(0 <= a and a + 16 <= n for a, n in zip(start, volume.shape))
    for a, b in itertools.combinations(starts, 2):
        assert max(abs(i - j) for i, j in zip(a, b)) >= 16


def test_scores_near_the_threshold_count_as_uncertain():
    scores = np.full((32, 32, 32), -6.0, dtype=np.float32)
    scores[16:32, 0:16, 8:24] = 1.2  # near the threshold 1.0
    found = suggest_patches(scores, size=16, count=1, scores_threshold=1.0)
    assert found[0].centre == (24, 8, 16) and found[0].mean == pytest.approx(-0.2, abs=1e-6)


def test_fewer_patches_when_no_more_fit():
    with pytest.warns(BilayerWarning, match="only 8 patches of 16³ fit"):
        assert len(suggest_patches(np.zeros((32, 32, 32), np.float32), size=16, count=9)) == 8


def test_bad_requests():
    with pytest.raises(InputFileError, match=r"smaller than a 40³ patch; give a smaller --size \(at most 32\)"):
        suggest_patches(np.zeros((32, 48, 48), np.float32), size=40, count=1)
    with pytest.raises(ConfigError, match="count=0"):
        suggest_patches(np.zeros((32, 48, 48), np.float32), size=16, count=0)
