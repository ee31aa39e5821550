"""Tests of bilayer.postprocess.components: 26-connected labelling numbered by size."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.errors import BilayerError, ConfigError
from bilayer.postprocess import Components, connected_components, remove_small_components


def _cube(mask: np.ndarray, start: tuple[int, int, int], size: int) -> None:
    mask[tuple(slice(s, s + size) for s in start)] = True


@pytest.fixture()
def blobs() -> tuple[np.ndarray, dict[str, tuple[int, int, int]]]:
    """Cubes of 2^3, 3^3 and 4^3 voxels, in that scan order, well apart (34 x 36 x 40)."""
    mask = np.zeros((34, 36, 40), dtype=bool)
    corners = {"small": (1, 1, 1), "medium": (10, 20, 5), "large": (25, 3, 30)}
    for name, size in (("small", 2), ("medium", 3), ("large", 4)):
        _cube(mask, corners[name], size)
    return mask, corners


def test_diagonal_contact_joins_under_26_connectivity() -> None:
    mask = np.zeros((32, 32, 32), dtype=bool)
    _cube(mask, (2, 2, 2), 4)  # last voxel (5, 5, 5)
    _cube(mask, (6, 6, 6), 2)  # touches it only at a corner
    _cube(mask, (20, 20, 20), 3)  # separate
    result = connected_components(mask)
    assert isinstance(result, Components)
    assert result.count == 2
    assert result.labels[5, 5, 5] == result.labels[6, 6, 6] == 1  # 64 + 8 voxels: largest
    assert result.labels[21, 21, 21] == 2
    assert result.sizes.tolist() == [72, 27]
    assert np.array_equal(result.labels > 0, mask)


def test_numbered_by_decreasing_size(blobs) -> None:
    mask, corners = blobs
    result = connected_components(mask)
    assert result.labels[corners["large"]] == 1
    assert result.labels[corners["medium"]] == 2
    assert result.labels[corners["small"]] == 3
    assert result.sizes.tolist() == [64, 27, 8]
    assert result.sizes.dtype == np.int64
    counted = np.bincount(result.labels.ravel().astype(np.int64))[1:]
    assert counted.tolist() == result.sizes.tolist()


@pytest.mark.parametrize("min_size", [9, 27])
def test_min_size_removes_exactly_the_small_ones(blobs, min_size: int) -> None:
    mask, corners = blobs
    result = connected_components(mask, min_size=min_size)
    assert result.count == 2
    assert result.sizes.tolist() == [64, 27]
    assert result.labels[corners["small"]] == 0
    expected = mask.copy()
    expected[tuple(slice(s, s + 2) for s in corners["small"])] = False
    assert np.array_equal(result.labels > 0, expected)
    cleaned = remove_small_components(mask, min_size)
    assert cleaned.dtype == np.bool_
    assert np.array_equal(cleaned, expected)


@pytest.mark.parametrize("min_size", [0, 1, 8])
def test_min_size_up_to_the_smallest_keeps_everything(blobs, min_size: int) -> None:
    mask, _ = blobs
    assert connected_components(mask, min_size).count == 3
    assert np.array_equal(remove_small_components(mask, min_size), mask)


def test_empty_mask() -> None:
    result = connected_components(np.zeros((33, 32, 35), dtype=np.uint8), min_size=5)
    assert result.count == 0
    assert result.sizes.shape == (0,)
    assert result.labels.shape == (33, 32, 35)
    assert not result.labels.any()
    assert not remove_small_components(np.zeros((4, 5, 6)), 3).any()


def test_non_zero_values_are_foreground() -> None:
    mask = np.zeros((32, 32, 32), dtype=np.float32)
    mask[3:6, 3:6, 3:6] = -2.0
    mask[20:22, 20:22, 20:22] = 0.5
    assert connected_components(mask).sizes.tolist() == [27, 8]


def test_dtype_holds_the_count_and_ties_keep_scan_order() -> None:
    mask = np.zeros((32, 32, 32), dtype=bool)
    mask[::2, ::2, ::2] = True  # 16^3 single voxels, none of them 26-adjacent
    result = connected_components(mask)
    assert result.count == 16**3
    assert result.labels.dtype == np.uint16
    assert result.labels.max() == 16**3
    assert result.labels[0, 0, 0] == 1 and result.labels[0, 0, 2] == 2
    assert result.labels[30, 30, 30] == 16**3
    few = connected_components(mask[:8, :8, :8])
    assert few.count == 64 and few.labels.dtype == np.uint8


def test_dtype_grows_past_255() -> None:
    mask = np.zeros((32, 32, 32), dtype=bool)
    mask[:16:2, ::2, ::2][:2] = True  # 2 * 16 * 16 = 512 single voxels
    result = connected_components(mask)
    assert result.count == 512
    assert result.labels.dtype == np.uint16


@pytest.mark.parametrize(
    ("mask", "min_size", "match"),
    [
        (np.ones((4, 4)), 0, "3-D"),
        (np.ones((4, 4, 4)), -1, "min_size"),
        (np.ones((4, 4, 4)), 2.5, "min_size"),
        (np.ones((4, 4, 4)), True, "min_size"),
    ],
)
def test_bad_input_raises(mask: np.ndarray, min_size, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        connected_components(mask, min_size)
    with pytest.raises(BilayerError, match=match):
        remove_small_components(mask, min_size)


def test_labels_beyond_uint16_are_stored_as_float32_in_mrc_files():
    from bilayer.postprocess import connected_components

    few = connected_components(np.ones((4, 4, 4), bool))
    assert few.mrc_dtype is None
    isolated = np.zeros((84, 84, 84), bool)
    isolated[::2, ::2, ::2] = True  # 42³ = 74,088 single voxels, none touching (26-connectivity)
    many = connected_components(isolated)
    assert many.count == 42**3 and many.mrc_dtype is np.float32
