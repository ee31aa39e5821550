"""bilayer.surfaces.distance: the distance from every vertex to the nearest other membrane against
exact geometry: parallel sheets D nm apart (axis-aligned and tilted) and concentric vesicles, from
masks at 10 Å; the nearest point of a surface, not its nearest vertex (libigl's exact search as
reference); the nearest membrane's label; a membrane alone has none."""

from __future__ import annotations

import gpytoolbox
import numpy as np
import pytest
import trimesh
from bilayer.errors import ConfigError
from bilayer.surfaces.distance import nearest_membrane_distances
from bilayer.surfaces.extract import membrane_meshes
from bilayer.surfaces.mesh import Mesh

VOXEL = 10.0  # Å


def _tilted_sheets(gap: float) -> tuple[list[Mesh], np.ndarray, tuple[int, ...]]:
    """Two slabs 4 voxels thick, ``gap`` voxels apart across a tilted normal, labels 3 and 7."""
    shape = (48, 48, 48)
    z, y, x = np.indices(shape, dtype=np.float64)
    normal_xyz = np.array([0.3, 0.2, 1.0]) / np.sqrt(1.13)
    across = x * normal_xyz[0] + y * normal_xyz[1] + z * normal_xyz[2]
    labels = np.zeros(shape, dtype=np.uint8)
    labels[np.abs(across - 14) <= 2] = 3
    labels[np.abs(across - 14 - gap) <= 2] = 7
    return membrane_meshes(labels, VOXEL), normal_xyz, shape


@pytest.mark.parametrize("gap_nm", [6, 12])
def test_parallel_sheets_d_nm_apart_are_d_apart_at_every_vertex(gap_nm):
    gap = gap_nm * 10 / VOXEL  # voxels
    labels = np.zeros((int(gap) + 20, 36, 40), dtype=np.uint8)
    labels[8:12] = 1  # middle at z = 9.5
    labels[8 + int(gap):12 + int(gap)] = 2
    meshes = membrane_meshes(labels, VOXEL)
    near = nearest_membrane_distances(meshes)
    for own, other, found in zip(meshes, meshes[::-1], near):
        assert np.abs(found.distance - gap_nm * 10).max() < VOXEL / 2  # sheets end at the same faces
        assert (found.label == other.label).all()
        assert found.distance.shape == found.label.shape == (own.vertex_count,)


def test_tilted_sheets_are_their_gap_apart_away_from_the_rims():
    gap = 8  # voxels
    meshes, normal_xyz, shape = _tilted_sheets(gap)
    near = nearest_membrane_distances(meshes)
    for (own, found), towards in zip(zip(meshes, near), (1.0, -1.0)):
        at = own.vertices / VOXEL  # voxels (x, y, z)
        foot = at + towards * gap * normal_xyz  # on the other sheet
        inside = np.array(shape[::-1]) - 3
        away = np.all((at > 2) & (at < inside) & (foot > 2) & (foot < inside), axis=1)  # from both sheets' rims
        assert away.mean() > 0.4
        assert np.abs(found.distance[away] - gap * VOXEL).max() < VOXEL / 2
        assert (found.distance[~away] >= gap * VOXEL - VOXEL / 2).all()  # near a rim: farther, never nearer


def test_the_distance_is_to_the_nearest_point_of_the_surface_not_its_nearest_vertex():
    meshes, _, _ = _tilted_sheets(5)
    near = nearest_membrane_distances(meshes)
    other = meshes[1]
    exact = np.sqrt(gpytoolbox.squared_distance(meshes[0].vertices, other.vertices, other.faces.astype(np.int32),
                                                use_cpp=True)[0])
    np.testing.assert_allclose(near[0].distance, exact, atol=1e-6)
    to_vertex = np.min(np.linalg.norm(meshes[0].vertices[:, None] - other.vertices[None], axis=2), axis=1)
    assert (to_vertex - near[0].distance).max() > 0.02 * VOXEL  # (half an edge)² / (2 × 5 voxels) at most


def test_concentric_vesicles_are_their_radii_apart_both_ways():
    z, y, x = np.indices((48, 48, 48), dtype=np.float64)
    r = np.sqrt((z - 24.2) ** 2 + (y - 23.7) ** 2 + (x - 24.4) ** 2)
    labels = np.zeros(r.shape, dtype=np.uint8)
    labels[np.abs(r - 10) <= 1.5] = 1
    labels[np.abs(r - 19) <= 1.5] = 2
    inner, outer = membrane_meshes(labels, VOXEL)
    near = nearest_membrane_distances([inner, outer])
    for found, other in zip(near, (outer, inner)):
        assert np.abs(found.distance - 9 * VOXEL).max() < VOXEL / 2
        assert (found.label == other.label).all()


def test_the_nearest_of_several_membranes_is_named_and_a_membrane_alone_has_none():
    ball = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    meshes = [Mesh(ball.vertices + offset, ball.faces, label=label, closed=True)
              for label, offset in ((4, (0, 0, 0)), (5, (130, 0, 0)), (6, (0, 400, 0)))]
    near = nearest_membrane_distances(meshes)
    assert np.nanmin(near[0].distance) == pytest.approx(30.0, abs=1e-9)  # the facing vertices touch exactly
    assert np.nanmin(near[2].distance) == pytest.approx(300.0, abs=1e-9)
    assert near[0].label[np.nanargmin(near[0].distance)] == 5 and near[1].label[np.nanargmin(near[1].distance)] == 4
    assert (near[2].label == 4).all()  # the first sphere is nearer than the second to every vertex of the third
    (alone,) = nearest_membrane_distances(meshes[:1])
    assert np.isnan(alone.distance).all() and (alone.label == 0).all()
    assert nearest_membrane_distances([]) == []


def test_farther_than_max_distance_is_not_searched_and_a_bad_bound_is_refused():
    ball = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    meshes = [Mesh(ball.vertices, ball.faces, label=1), Mesh(ball.vertices + (130, 0, 0), ball.faces, label=2)]
    full = nearest_membrane_distances(meshes)[0]
    bounded = nearest_membrane_distances(meshes, max_distance=60.0)[0]
    within = full.distance <= 60.0
    assert 0 < within.sum() < len(within)
    np.testing.assert_allclose(bounded.distance[within], full.distance[within])
    assert np.isnan(bounded.distance[~within]).all() and (bounded.label[~within] == 0).all()
    with pytest.raises(ConfigError, match="max_distance"):
        nearest_membrane_distances(meshes, max_distance=0)


def test_a_mesh_without_faces_is_measured_but_never_nearest():
    y, x = np.mgrid[0:11, 0:11] * 10.0
    grid = np.column_stack([x.ravel(), y.ravel()])
    index = np.arange(121).reshape(11, 11)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.column_stack([a, b, d]), np.column_stack([a, d, c])])
    low = Mesh(np.column_stack([grid, np.zeros(121)]), faces, label=1)
    high = Mesh(np.column_stack([grid, np.full(121, 60.0)]), faces, label=2)
    points = Mesh(np.array([[50.0, 50.0, 20.0], [50.0, 50.0, 50.0]]), np.empty((0, 3), dtype=np.int64), label=3)
    near = nearest_membrane_distances([low, points, high])
    assert np.allclose(near[0].distance, 60.0) and set(near[0].label) == {2}  # the points are not a surface
    assert np.allclose(near[1].distance, [20.0, 10.0]) and list(near[1].label) == [1, 2]
