"""bilayer.infer.grid: window placement as MONAI places it, the window grid, fitting, mirror symmetry."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from bilayer.errors import ConfigError
from bilayer.infer import WindowGrid, fit_window, mirror_symmetric, window_count, window_starts
from bilayer.infer.grid import window_shape

ROI = (32, 32, 32)


# --- window placement along one axis ----------------------------------------------------------

@pytest.mark.parametrize("roi", [1, 7, 16, 32, 33, 160])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.7, 0.95])
def test_window_starts_match_monai_and_cover(roi, overlap):
    for size in [*range(1, 80), 127, 400, 928]:
        starts = window_starts(size, roi, overlap)
        padded = max(size, roi)
        interval = _get_scan_interval((padded,), (roi,), 1, (overlap,))
        expected = [s[0].start for s in dense_patch_slices((padded,), (roi,), interval)]
        assert list(starts) == expected, (size, roi, overlap)
        assert starts[0] == 0 and starts[-1] + roi == padded  # last window flush with the border
        assert all(a < b for a, b in zip(starts, starts[1:]))
        covered = np.zeros(padded, dtype=int)
        for s in starts:
            covered[s:s + roi] += 1
        assert covered.min() >= 1


def test_window_starts_examples():
    assert window_starts(160, 160, 0.5) == (0,)
    assert window_starts(100, 160, 0.5) == (0,)
    assert window_starts(250, 160, 0.5) == (0, 80, 90)
    assert window_starts(928, 160, 0.5) == (0, 80, 160, 240, 320, 400, 480, 560, 640, 720, 768)


def test_window_count_is_the_product_of_the_starts():
    assert window_count((128, 256, 256), 160, 0.5) == 1 * 3 * 3
    assert window_count((162, 162, 162), 160, 0.5) == 8
    assert window_count((100, 250, 928), 160, 0.25) == 1 * len(window_starts(250, 160, 0.25)) * 8


@pytest.mark.parametrize(("args", "option"), [((0, 32, 0.5), "size"), ((10, 0, 0.5), "roi"),
                                              ((10, 32, 1.0), "overlap"), ((10, 32, -0.1), "overlap"),
                                              ((10, 32.0, 0.5), "roi"), ((10, 32, float("nan")), "overlap"),
                                              ((True, 32, 0.5), "size"), ((10, 32, "0.5"), "overlap")])
def test_window_starts_rejects_bad_options(args, option):
    with pytest.raises(ConfigError, match=f"^{option}="):
        window_starts(*args)


def test_bad_overlap_message_names_the_range_and_membrain_segs_value():
    with pytest.raises(ConfigError, match=r"overlap=1\.0 .*\[0, 1\).*MemBrain-seg uses 0\.5"):
        window_starts(10, 32, 1.0)
    with pytest.raises(ConfigError, match=r"size=0 .*\[1, inf\]"):
        window_starts(0, 32, 0.5)


# --- fitting the window -----------------------------------------------------------------------

@pytest.mark.parametrize(("shape", "fitted"), [
    ((162, 162, 162), 192),  # one 192³ window instead of eight 160³: 4.6× fewer voxels
    ((128, 256, 256), 192),  # 2 × 2 of 192³ (28 M voxels) instead of 3 × 3 of 160³ (37 M)
    ((96, 192, 192), 192),  # one instead of 2 × 2
    ((160, 160, 160), 160),  # fits already
    ((100, 500, 500), 160),  # 6 × 6 of 160³ (147 M) vs 5 × 5 of 192³ (177 M)
    ((200, 500, 500), 160),  # 72 of 160³ (295 M) vs 50 of 192³ (354 M)
    ((194, 194, 194), 160),  # 192 is too small as well: growing saves nothing
])
def test_fit_window_grows_one_step_only_where_that_predicts_fewer_voxels(shape, fitted):
    assert fit_window(shape, 160, 32, 0.5) == fitted


@pytest.mark.parametrize(("shape", "fitted"), [
    ((162, 162, 162), 176),  # one 176³ window (5.5 M voxels) is enough
    ((96, 192, 192), 192),  # 176 would need 2 × 2
    ((128, 256, 256), 176),  # 2 × 2 of 176³ (22 M voxels), of 192³ (28 M), or 3 × 3 of 160³ (37 M)
    ((100, 500, 500), 176),  # 5 × 5 of 176³ (136 M voxels) or 6 × 6 of 160³ (147 M)
    ((200, 500, 500), 176),  # 2 × 5 × 5 of 176³ (273 M) or 2 × 6 × 6 of 160³ (295 M)
    ((194, 194, 194), 160),  # two windows per axis whatever the size: the smallest is cheapest
])
def test_fit_window_grows_in_the_networks_steps(shape, fitted):
    """Bilayer's default network takes multiples of 16: windows of 176 are tried as well."""
    assert fit_window(shape, 160, 16, 0.5) == fitted


def test_fit_window_counts_windows_in_the_tomograms_voxels():
    """At 20 Å a 96³ tomogram is 192 model voxels: 160-voxel model windows are 80 of its voxels."""
    half = lambda w: w // 2  # noqa: E731
    assert fit_window((96, 96, 96), 160, 32, 0.5, half) == 192
    assert fit_window((96, 96, 96), 160, 32, 0.5) == 160


# --- the grid ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(40, 50, 37), (17, 19, 23), (1, 40, 9), (64, 64, 64), (250, 33, 31)])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_plan_from_a_shape_places_windows_per_axis(shape, overlap):
    grid = WindowGrid.plan(shape, ROI, overlap)
    assert grid.shape == shape and grid.roi == ROI
    for n, r, starts in zip(shape, ROI, grid.starts):
        before = max(r - n, 0) // 2  # MONAI pads an axis shorter than the window, the smaller half before
        assert starts == tuple(s - before for s in window_starts(n, r, overlap))
    assert grid.step_z == _get_scan_interval((max(shape[0], ROI[0]),), (ROI[0],), 1, (overlap,))[0]
    assert grid.origins() == [(z, y, x) for z in grid.starts[0] for y in grid.starts[1] for x in grid.starts[2]]
    assert len(grid.origins()) == window_count(shape, ROI[0], overlap)


def test_plan_takes_numpy_shapes_and_a_cube_edge():
    shape = np.zeros((20, 40, 9), np.int8).shape
    grid = WindowGrid.plan(tuple(np.int64(n) for n in shape), 32, 0.5)
    assert grid == WindowGrid.plan((20, 40, 9), (32, 32, 32), 0.5)
    assert grid.starts == ((-6,), (0, 8), (-11,))
    assert all(type(n) is int for n in grid.shape + grid.roi)


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)])
def test_plan_mirrored_is_the_mirror_image_of_the_grid(axes):
    shape = (70, 31, 25)  # no axis mirror-symmetric: 70 → (0, 16, 32, 38), 31 and 25 padded unevenly
    plain, mirrored = WindowGrid.plan(shape, ROI, 0.5), WindowGrid.plan(shape, ROI, 0.5, axes)
    for axis, (n, r) in enumerate(zip(shape, ROI)):
        flipped = tuple(sorted(n - r - s for s in plain.starts[axis]))
        assert mirrored.starts[axis] == (flipped if axis in axes else plain.starts[axis])
        assert flipped != plain.starts[axis]
    assert mirrored.step_z == plain.step_z


def test_clip_gives_matching_slices_of_volume_and_window():
    grid = WindowGrid.plan((40, 20, 9), ROI, 0.5)
    assert grid.clip((0, -6, -11)) == ((slice(0, 32), slice(0, 20), slice(0, 9)),
                                       (slice(0, 32), slice(6, 26), slice(11, 20)))
    assert grid.clip((8, -6, -11))[0][0] == slice(8, 40)
    volume, window = np.zeros(grid.shape), np.zeros(grid.roi)
    covered = np.zeros(grid.shape, int)
    for origin in grid.origins():
        inside, part = grid.clip(origin)
        assert volume[inside].shape == window[part].shape
        covered[inside] += 1
    assert covered.min() >= 1


def test_grid_is_frozen():
    grid = WindowGrid.plan((40, 20, 9), ROI, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.step_z = 1  # type: ignore[misc]


@pytest.mark.parametrize("shape", [(8, 8), (0, 8, 8), (8, 8, 8, 1), (8.0, 8, 8), (), "abc", None])
def test_plan_rejects_shapes_that_are_not_3d(shape):
    with pytest.raises(ConfigError, match="3-D"):
        WindowGrid.plan(shape, ROI, 0.5)


@pytest.mark.parametrize("mirror", [(3,), (-1,), 0, "z"])
def test_plan_rejects_bad_mirror_axes(mirror):
    with pytest.raises(ConfigError, match="grid_mirror"):
        WindowGrid.plan((8, 8, 8), ROI, 0.5, mirror)


# --- mirror symmetry, from a shape alone --------------------------------------------------------

def test_mirror_symmetric_from_a_shape():
    assert mirror_symmetric((160, 160, 160), (160, 160, 160), 0.5)
    assert mirror_symmetric((64, 96, 128), ROI, 0.5)  # every axis a whole number of steps
    assert not mirror_symmetric((250, 160, 160), (160,) * 3, 0.5)  # z starts (0, 80, 90): mirrored (0, 10, 90)
    assert mirror_symmetric((250, 160, 160), (160,) * 3, 0.5, axes=(1, 2))
    assert not mirror_symmetric((40, 31, 40), ROI, 0.5)  # an odd padding: its larger half changes side
    assert mirror_symmetric((40, 30, 40), 32, 0.5, axes=(1,))
    assert mirror_symmetric(np.zeros((40, 30, 40)).shape, ROI, 0.5, axes=[])


def test_mirror_symmetric_agrees_with_the_grids():
    for shape in [(70, 31, 25), (64, 64, 64), (33, 45, 70), (1, 40, 9)]:
        for axes in [(0,), (1,), (2,), (0, 1, 2)]:
            expected = all(WindowGrid.plan(shape, ROI, 0.5, (a,)).starts == WindowGrid.plan(shape, ROI, 0.5).starts
                           for a in axes)
            assert mirror_symmetric(shape, ROI, 0.5, axes) == expected, (shape, axes)


# --- window shape -------------------------------------------------------------------------------

def test_window_shape():
    assert window_shape(160) == (160, 160, 160)
    assert window_shape(np.int64(16)) == (16, 16, 16)
    assert window_shape([17, 32, 9]) == (17, 32, 9)


@pytest.mark.parametrize("roi", [(32, 32), (0, 32, 32), (32, 32.0, 32), True, 32.0, "abc", None])
def test_window_shape_rejects_bad_windows(roi):
    with pytest.raises(ConfigError, match="roi"):
        window_shape(roi)


def test_grid_module_is_pure():
    """Planning needs no torch: the grid loads without it."""
    code = "import sys, bilayer.infer.grid; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
