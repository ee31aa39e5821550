"""Tests of bilayer.postprocess.skeleton: MemBrain-seg's surface skeleton."""

from __future__ import annotations

import hashlib
import itertools

import bilayer.postprocess.skeleton as skeleton_module
import numpy as np
import pytest
from bilayer.errors import ConfigError
from bilayer.postprocess import skeletonize


def _coordinates(shape: tuple[int, int, int]) -> list[np.ndarray]:
    return np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")


def _shell(shape, centre, inner: float, outer: float) -> np.ndarray:
    z, y, x = _coordinates(shape)
    radius = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return (radius >= inner) & (radius <= outer)


def _fibonacci_directions(count: int) -> np.ndarray:
    """Nearly uniform unit vectors (count, 3), deterministic."""
    k = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * k / count)
    azimuth = np.pi * (1 + 5**0.5) * k
    return np.stack([np.cos(polar), np.sin(polar) * np.sin(azimuth), np.sin(polar) * np.cos(azimuth)], axis=1)


def _nearest_distance(points: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest voxel centre (brute force)."""
    return np.array([np.sqrt(((voxels - p) ** 2).sum(axis=1)).min() for p in points])


def _vesicles() -> np.ndarray:
    """Two touching, non-concentric shells off the grid centre: no symmetry to hide behind."""
    return _shell((40, 52, 60), (19.3, 17.6, 27.8), 8, 12.5) | _shell((40, 52, 60), (21.1, 35.2, 31.4), 9, 13)


def test_matches_membrain_seg_on_a_shell_cut_by_the_volume() -> None:
    """Compare with golden values from membrain-seg 0.0.10.

    They come from its ``skeletonization`` (CPU), run outside the repo on
    ``mask.transpose(2, 1, 0)`` with the result transposed back; Bilayer does not need it.
    """
    shape = (32, 36, 40)
    z, y, x = _coordinates(shape)
    a, b = (z - 6.3) + 0.3 * (x - 20.0), (y - 17.4) - 0.2 * (z - 6.3)
    r = np.sqrt((a / 14.0) ** 2 + (b / 11.0) ** 2 + ((x - 21.7) / 17.0) ** 2)
    mask = (r >= 0.8) & (r <= 1.0)
    assert mask.sum() == 3935
    skeleton = skeletonize(mask)
    assert skeleton.sum() == 1539
    digest = hashlib.sha256(np.packbits(skeleton)).hexdigest()
    assert digest == "e5b4b018fd55fb30e4c2f3909d35eb9ced96af0f38ce10e15bb0cc89da701bbe"


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("thickness", [5, 6, 7])
def test_flat_slab_gives_one_plane_at_its_middle(axis: int, thickness: int) -> None:
    shape = (36, 40, 44)
    start = 15
    mask = np.zeros(shape, dtype=bool)
    index = [slice(None)] * 3
    index[axis] = slice(start, start + thickness)
    mask[tuple(index)] = True
    skeleton = np.moveaxis(skeletonize(mask), axis, 0)  # normal along the first axis
    middle = start + (thickness - 1) / 2
    interior = skeleton[:, 1:-1, 1:-1]
    assert np.all(interior.sum(axis=0) == 1), "every interior column needs exactly one voxel"
    planes = np.flatnonzero(interior.any(axis=(1, 2)))
    assert planes.size == 1 and abs(planes[0] - middle) <= 0.5
    assert skeleton.sum() == interior.sum()  # nothing on the outermost layer


def test_tilted_slab_skeleton_lies_on_the_mid_plane() -> None:
    shape = (48, 48, 48)
    normal = np.array([1.0, 2.0, 3.0]) / np.sqrt(14.0)
    offset = normal @ np.array([23.6, 24.2, 23.9])
    z, y, x = _coordinates(shape)
    mask = np.abs(normal[0] * z + normal[1] * y + normal[2] * x - offset) <= 3.0
    voxels = np.argwhere(skeletonize(mask))
    assert np.all(np.abs(voxels @ normal - offset) <= np.sqrt(3) / 2)
    # coverage: mid-plane points well inside the volume have a skeleton voxel within 1
    u = np.cross(normal, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    grid = np.array([a * u + b * v for a in range(-10, 11, 2) for b in range(-10, 11, 2)])
    points = offset * normal + grid
    points = points[np.all((points > 8) & (points < 40), axis=1)]
    assert points.shape[0] > 50
    assert np.all(_nearest_distance(points, voxels) <= 1.0)


def test_shell_skeleton_lies_at_mid_radius_and_covers_the_sphere() -> None:
    shape, centre, inner, outer = (64, 64, 64), (31.3, 32.2, 30.7), 14.0, 20.0
    mask = _shell(shape, centre, inner, outer)
    skeleton = skeletonize(mask)
    voxels = np.argwhere(skeleton)
    middle = (inner + outer) / 2
    deviation = np.abs(np.linalg.norm(voxels - np.array(centre), axis=1) - middle)
    # MemBrain-seg's method leaves a few stray voxels off the mid-surface (see report)
    assert np.mean(deviation <= 1.0) >= 0.9
    assert deviation.max() <= 2.5
    assert deviation.mean() <= 0.5
    points = np.array(centre) + middle * _fibonacci_directions(1000)
    assert np.mean(_nearest_distance(points, voxels) <= 1.0) >= 0.95
    # a sheet, not the whole shell: far fewer voxels than the mask
    assert voxels.shape[0] < 0.25 * mask.sum()


@pytest.mark.parametrize("make", [_vesicles, lambda: _shell((40, 44, 48), (20.5, 21.7, 23.2), 9, 15)])
def test_skeleton_is_inside_the_mask(make) -> None:
    mask = make()
    skeleton = skeletonize(mask.astype(np.uint8) * 3)
    assert skeleton.dtype == np.bool_ and skeleton.shape == mask.shape
    assert skeleton.any()
    assert not np.any(skeleton & ~mask)


@pytest.mark.parametrize(
    "mask",
    [np.zeros((32, 33, 34)), np.zeros((32, 33, 34), dtype=bool), np.ones((2, 40, 40)), np.ones((40, 1, 40))],
)
def test_empty_or_too_thin_volume_gives_empty_skeleton(mask: np.ndarray) -> None:
    skeleton = skeletonize(mask)
    assert skeleton.shape == mask.shape and skeleton.dtype == np.bool_
    assert not skeleton.any()


@pytest.mark.parametrize("order", [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)])
def test_transposed_input_gives_transposed_skeleton(order) -> None:
    mask = _vesicles()
    expected = skeletonize(mask).transpose(order)
    assert np.array_equal(skeletonize(np.ascontiguousarray(mask.transpose(order))), expected)


def test_slabs_halos_and_batches_do_not_change_the_result(monkeypatch, caplog) -> None:
    mask = _vesicles() | _shell((40, 52, 60), (20.2, 38.6, 8.9), 0, 7.5)  # + a solid ball
    expected = skeletonize(mask)
    monkeypatch.setattr(skeleton_module, "_SLAB_VOXELS", 3 * mask.shape[1] * mask.shape[2])
    monkeypatch.setattr(skeleton_module, "_EDT_HALO", 1)
    with caplog.at_level("DEBUG", logger=skeleton_module.__name__):
        result = skeletonize(mask, batch_size=37)
    assert "doubling" in caplog.text  # the ball is deeper than the first halo
    assert np.array_equal(result, expected)


@pytest.mark.parametrize(
    ("mask", "options", "match"),
    [
        (np.ones((8, 8)), {}, "3-D"),
        (np.ones((8, 8, 8)), {"batch_size": 0}, "batch_size"),
        (np.ones((8, 8, 8)), {"batch_size": 2.0}, "batch_size"),
        (np.ones((8, 8, 8)), {"device": "warp-drive"}, "device"),
    ],
)
def test_bad_input_raises(mask: np.ndarray, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        skeletonize(mask, **options)
