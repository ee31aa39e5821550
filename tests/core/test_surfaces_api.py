"""bilayer.surfaces.api: meshes and measures of a segmentation, nothing written: a vesicle and a
sheet drawn with known geometry and leaflets 40 Å apart give their area, volume, distance and thickness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bilayer.errors import ConfigError, InputFileError
from bilayer.io import Volume, write_volume
from bilayer.surfaces.api import load_membranes, measure_surfaces, mesh_membranes

VOXEL = 10.0
SHAPE = (80, 80, 80)
CENTRE = (30.0, 40.3, 39.7)
RADIUS = 17.0  # voxels
SHEET = 60.0  # z of the sheet's middle, voxels (its profiles stay inside the volume)
LEAFLETS = 4.0  # voxels between the leaflet minima: 40 Å


def scene(rng):
    """A vesicle and a flat sheet: their masks (4 voxels thick) and a tomogram whose membranes are two
    dark Gaussian leaflets 40 Å apart, with noise."""
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    r = np.sqrt((z - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (x - CENTRE[2]) ** 2)
    across = [r - RADIUS, z - SHEET]
    mask = np.zeros(SHAPE, dtype=np.int8)
    density = np.zeros(SHAPE, dtype=np.float32)
    for d in across:
        mask[np.abs(d) <= 2] = 1
        density -= np.exp(-((d - LEAFLETS / 2) ** 2) / (2 * 0.6**2)) + np.exp(-((d + LEAFLETS / 2) ** 2) / (2 * 0.6**2))
    density += rng.normal(0, 0.1, SHAPE).astype(np.float32)
    return mask, density


def test_a_vesicle_and_a_sheet_are_measured(tmp_path, rng):
    mask, density = scene(rng)
    origin = (-300.0, 120.0, 40.0)
    seg = write_volume(tmp_path / "t_seg.mrc", mask, voxel_size=VOXEL, origin=origin)
    tomo = write_volume(tmp_path / "t.mrc", density, voxel_size=VOXEL, origin=origin)
    surfaces = measure_surfaces(seg, tomo)
    vesicle, sheet = sorted(surfaces.meshes, key=lambda m: not m.closed)
    rows = {row["label"]: row for row in surfaces.table}
    assert vesicle.closed and not sheet.closed
    radius_nm = RADIUS * VOXEL / 10
    assert rows[vesicle.label]["area_nm2"] == pytest.approx(4 * math.pi * radius_nm**2, rel=0.02)
    assert rows[vesicle.label]["volume_nm3"] == pytest.approx(4 / 3 * math.pi * radius_nm**3, rel=0.03)
    assert rows[vesicle.label]["mean_curvature_median_per_nm"] == pytest.approx(1 / radius_nm, rel=0.05)
    assert rows[sheet.label]["volume_nm3"] is None
    gap_nm = (SHEET - CENTRE[0] - RADIUS) * VOXEL / 10
    assert rows[vesicle.label]["nearest_distance_min_nm"] == pytest.approx(gap_nm, abs=0.5)
    assert rows[vesicle.label]["nearest_label"] == sheet.label
    for row in rows.values():
        assert row["membrane_thickness_resolved"] is True
        assert row["membrane_thickness_nm"] == pytest.approx(LEAFLETS * VOXEL / 10, abs=0.5)
        assert row["thickness_median_nm"] == pytest.approx(LEAFLETS * VOXEL / 10, abs=0.5)
    assert set(surfaces.profiles) == {vesicle.label, sheet.label}
    assert {"mean_curvature", "gaussian_curvature", "nearest_distance", "thickness"} <= set(vesicle.values)
    # in the tomogram's frame: the sheet's middle at the header's origin + index × voxel size
    assert np.allclose(sheet.vertices[:, 2], origin[0] + SHEET * VOXEL, atol=1e-6)


def test_without_a_tomogram_there_is_no_thickness_and_components_split_membranes(rng):
    mask, _ = scene(rng)
    surfaces = measure_surfaces(mask, voxel_size=VOXEL)
    assert all(row["thickness_median_nm"] is None and row["membrane_thickness_nm"] is None
               for row in surfaces.table)
    labels = np.where(mask > 0, 7, 0).astype(np.uint16)  # one label for both membranes
    assert [m.label for m in mesh_membranes(mask, components=labels, voxel_size=VOXEL)] == [7]
    assert len(mesh_membranes(mask, voxel_size=VOXEL, min_size=10**6)) == 0


def test_bad_inputs_are_refused_in_one_line(tmp_path, rng):
    mask, density = scene(rng)
    with pytest.raises(ConfigError, match="needs voxel_size"):
        load_membranes(mask)
    with pytest.raises(InputFileError, match="components .* have shape"):
        load_membranes(mask, components=np.zeros((4, 4, 4), np.uint8), voxel_size=VOXEL)
    with pytest.raises(InputFileError, match="the tomogram .* has shape"):
        measure_surfaces(mask, Volume(density[:10], VOXEL), voxel_size=VOXEL)
    with pytest.raises(ConfigError, match="unknown mesh option"):
        mesh_membranes(mask, voxel_size=VOXEL, spacng=5)
