"""bilayer.surfaces.measures: per-vertex values in nm on the meshes and one row per membrane, against
exact geometry: a vesicle (area 4πR², volume 4πR³/3, curvature 1/R and 1/R²) next to a sheet at
a known distance, from masks at 16 Å; thickness columns summarised where the meshes carry them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bilayer.surfaces.curvature import vertex_curvatures
from bilayer.surfaces.distance import nearest_membrane_distances
from bilayer.surfaces.extract import membrane_meshes
from bilayer.surfaces.measures import MEASURED_VALUES, SURFACE_COLUMNS, measure_meshes, surface_table
from bilayer.surfaces.mesh import Mesh

VOXEL = 16.0  # Å
RADIUS = 15  # voxels: 24 nm
SHEET_Z = 42  # voxels, the sheet's middle; the vesicle's centre is at z = 20.3


@pytest.fixture(scope="module")
def scene() -> list[Mesh]:
    """A vesicle (label 2) and, above it, a flat sheet (label 5) across the volume."""
    shape = (48, 44, 44)
    z, y, x = np.indices(shape, dtype=np.float64)
    r = np.sqrt((z - 20.3) ** 2 + (y - 21.8) ** 2 + (x - 22.1) ** 2)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[np.abs(r - RADIUS) <= 2] = 2
    labels[SHEET_Z - 2:SHEET_Z + 2] = 5
    return membrane_meshes(labels, VOXEL, origin=(-300.0, 120.0, 40.0))


def test_a_vesicle_row_has_its_area_volume_and_curvature_in_nm(scene):
    rows = surface_table(scene)
    assert [row["label"] for row in rows] == [2, 5]
    vesicle = rows[0]
    radius_nm = RADIUS * VOXEL / 10
    assert vesicle["closed"] is True and vesicle["vertices"] == scene[0].vertex_count
    assert vesicle["area_nm2"] == pytest.approx(4 * math.pi * radius_nm**2, rel=0.02)
    assert vesicle["volume_nm3"] == pytest.approx(4 / 3 * math.pi * radius_nm**3, rel=0.03)
    assert vesicle["mean_curvature_median_per_nm"] == pytest.approx(1 / radius_nm, rel=0.05)
    assert vesicle["mean_curvature_mean_per_nm"] == pytest.approx(1 / radius_nm, rel=0.05)
    assert 0 < vesicle["mean_curvature_sd_per_nm"] < 0.2 / radius_nm
    assert vesicle["gaussian_curvature_median_per_nm2"] == pytest.approx(1 / radius_nm**2, rel=0.10)


def test_a_sheet_row_is_open_flat_and_names_its_nearest_membrane(scene):
    sheet = surface_table(scene)[1]
    assert sheet["closed"] is False and sheet["volume_nm3"] is None
    assert sheet["area_nm2"] == pytest.approx(43 * 43 * (VOXEL / 10) ** 2, rel=0.01)
    assert abs(sheet["mean_curvature_median_per_nm"]) < 0.05 / (RADIUS * VOXEL / 10)
    assert abs(sheet["gaussian_curvature_median_per_nm2"]) < 0.05 / (RADIUS * VOXEL / 10) ** 2
    gap_nm = (SHEET_Z - 0.5 - 20.3 - RADIUS) * VOXEL / 10  # the sheet's middle is at 41.5 voxels
    assert sheet["nearest_label"] == 2
    assert sheet["nearest_distance_min_nm"] == pytest.approx(gap_nm, abs=VOXEL / 10 / 2)
    assert sheet["nearest_distance_median_nm"] > sheet["nearest_distance_min_nm"]
    assert surface_table(scene)[0]["nearest_label"] == 5


def test_the_rows_follow_the_columns_and_no_thickness_is_none(scene):
    for row in surface_table(scene):
        assert tuple(row) == SURFACE_COLUMNS
        assert all(row[name] is None for name in SURFACE_COLUMNS if name.startswith("thickness"))
    (alone,) = surface_table(scene[:1])
    assert alone["nearest_distance_min_nm"] is None and alone["nearest_label"] is None


def test_measured_meshes_carry_the_values_in_nm(scene):
    measured = measure_meshes(scene, scale=40.0)
    for mesh, original, near in zip(measured, scene, nearest_membrane_distances(scene)):
        assert set(MEASURED_VALUES) <= set(mesh.values)
        np.testing.assert_array_equal(mesh.vertices, original.vertices)
        mean, gaussian = vertex_curvatures(original, 40.0)
        np.testing.assert_allclose(mesh.values["mean_curvature"], mean * 10)
        np.testing.assert_allclose(mesh.values["gaussian_curvature"], gaussian * 100)
        np.testing.assert_allclose(mesh.values["nearest_distance"], near.distance / 10)
        np.testing.assert_array_equal(mesh.values["nearest_label"], near.label)
    assert surface_table(measured) == surface_table(scene, scale=40.0)  # measured meshes are not measured again


def test_thickness_values_are_summarised_in_nm_with_the_resolved_fraction(scene):
    sheet = measure_meshes(scene)[1]
    count = sheet.vertex_count
    thickness = np.where(np.arange(count) % 4 == 0, np.nan, np.where(np.arange(count) % 2 == 0, 38.0, 42.0))
    quality = np.linspace(0.0, 1.0, count)
    (row,) = surface_table([sheet.with_values(thickness=thickness, thickness_quality=quality)])
    assert row["thickness_median_nm"] == pytest.approx(4.2)  # two in three resolved vertices are 4.2 nm
    assert row["thickness_sd_nm"] == pytest.approx(np.nanstd(thickness) / 10)
    assert row["thickness_resolved_fraction"] == pytest.approx(np.isfinite(thickness).mean())
    assert row["thickness_quality_median"] == pytest.approx(0.5)
