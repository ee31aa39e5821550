"""bilayer.infer.uncertainty: the variance of the TTA copies' probabilities, and MemBrain-seg's
smoothing of it, whole or streamed slab by slab to the same answer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt, median_filter
from scipy.special import expit

from bilayer.errors import ConfigError
from bilayer.infer.blend import SlabCollector
from bilayer.infer.uncertainty import FILL_RADIUS, UncertaintySmoother, membrane_probability, running_variance, \
    smooth_uncertainty, variance_of

SHAPE = (30, 40, 36)


def _membrain_rule(variance: np.ndarray, mask: np.ndarray, radius: float = np.inf) -> np.ndarray:
    """MemBrain-seg's ``_uncertainty_from_variance_map`` written out plainly (``radius``: how far the
    nearest core voxel may be; MemBrain-seg has no limit)."""
    core = binary_erosion(mask, iterations=1)
    distance, nearest = distance_transform_edt(~core, return_distances=True, return_indices=True)
    filled = variance.copy()
    take = mask & (distance <= radius)
    filled[take] = variance[tuple(nearest)][take]
    return median_filter(filled, size=(1, 5, 5))


def _map_and_mask(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A random variance map and a mask of a thick slab, a thin sheet (no core) and specks."""
    rng = np.random.default_rng(seed)
    variance = (0.1 * rng.random(SHAPE)).astype(np.float32)
    mask = rng.random(SHAPE) < 0.05
    mask[5:12] = True
    mask[20:22, 5:30, 3:20] = True
    return variance, mask


def test_the_running_variance_is_the_sample_variance_of_the_copies():
    rng = np.random.default_rng(0)
    copies = rng.random((8, 5, 6, 7)).astype(np.float32)
    mean = squares = None
    for count, copy in enumerate(copies, start=1):
        mean, squares = running_variance(mean, squares, copy, count)
    np.testing.assert_allclose(mean, copies.astype(np.float64).mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(variance_of(squares, 8), copies.astype(np.float64).var(axis=0, ddof=1), atol=1e-7)
    np.testing.assert_array_equal(membrane_probability(np.array([0.0, 1e4, -1e4], np.float32)), [0.5, 1.0, 0.0])
    with pytest.raises(ConfigError, match="at least 2 copies"):
        variance_of(squares, 1)


def test_smoothing_is_membrain_segs_rule_when_every_core_is_near_enough():
    variance, mask = _map_and_mask()
    whole = smooth_uncertainty(variance, mask, radius=100)  # beyond any distance in the volume
    np.testing.assert_array_equal(whole, _membrain_rule(variance, mask))


def test_mask_voxels_without_a_core_within_the_radius_keep_their_own_value():
    variance, mask = _map_and_mask()
    ours = smooth_uncertainty(variance, mask)
    np.testing.assert_array_equal(ours, _membrain_rule(variance, mask, FILL_RADIUS))
    assert not np.array_equal(ours, _membrain_rule(variance, mask))  # the specks differ from MemBrain-seg's
    lonely = np.zeros((9, 9, 9), bool)
    lonely[4, 4, 4] = True  # no core anywhere: the voxel keeps its value; then the median
    flat = np.full((9, 9, 9), 0.2, np.float32)
    flat[4, 4, 4] = 0.9
    np.testing.assert_array_equal(smooth_uncertainty(flat, lonely), np.full((9, 9, 9), 0.2, np.float32))


def test_a_core_voxel_lends_its_value_to_the_rim_of_its_membrane():
    mask = np.zeros((9, 12, 12), bool)
    mask[3:6] = True  # three sections thick: the middle one is the core
    variance = np.zeros((9, 12, 12), np.float32)
    variance[3] = variance[5] = 0.25  # the edge is uncertain, the core sure
    smoothed = smooth_uncertainty(variance, mask)
    assert not smoothed.any()


@pytest.mark.parametrize("cuts", [[0, 30], [0, 1, 2, 3, 7, 15, 16, 29, 30], [0, 10, 20, 30]])
@pytest.mark.parametrize("block_bytes", [1, 10**9])
def test_streaming_in_any_slabs_equals_the_whole_volume(cuts, block_bytes):
    variance, mask = _map_and_mask(seed=2)
    collector = SlabCollector(SHAPE)
    smoother = UncertaintySmoother(SHAPE, collector, block_bytes=block_bytes)
    for a, b in itertools.pairwise(cuts):
        assert not smoother.complete
        smoother(a, variance[a:b], mask[a:b])
    assert smoother.complete and collector.complete
    np.testing.assert_array_equal(collector.scores, smooth_uncertainty(variance, mask))


def test_slabs_out_of_order_or_mismatched_are_refused():
    variance, mask = _map_and_mask()
    smoother = UncertaintySmoother(SHAPE, SlabCollector(SHAPE))
    with pytest.raises(ConfigError, match="z order"):
        smoother(3, variance[3:6], mask[3:6])
    with pytest.raises(ConfigError, match="z order"):
        smoother(0, variance[0:3], mask[0:2])
    with pytest.raises(ConfigError, match="radius"):
        smooth_uncertainty(variance, mask, radius=-1)
    with pytest.raises(ConfigError, match="one shape"):
        smooth_uncertainty(variance, mask[1:])


def test_probabilities_are_the_sigmoid_of_the_scores():
    scores = np.linspace(-20, 20, 101, dtype=np.float32)
    np.testing.assert_allclose(membrane_probability(scores), expit(scores.astype(np.float64)), rtol=1e-6)
    assert membrane_probability(scores).dtype == np.float32
