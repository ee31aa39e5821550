"""bilayer.surfaces.mesh: the one coordinate rule (voxel (z, y, x) → Å (x, y, z) with the header's
origin), the mesh's checks, and its normals and areas on exact geometry."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.surfaces.mesh import Mesh, voxel_to_world, world_to_voxel


def test_voxels_go_to_angstrom_in_x_y_z_with_the_origin_and_back():
    zyx = np.array([[0, 0, 0], [1, 2, 3], [2.5, 0.5, 7.25]])
    xyz = voxel_to_world(zyx, (10.0, 8.0, 6.0), (100.0, 50.0, -20.0))
    assert np.allclose(xyz, [[-20, 50, 100], [-2, 66, 110], [23.5, 54, 125]])
    assert np.allclose(world_to_voxel(xyz, (10.0, 8.0, 6.0), (100.0, 50.0, -20.0)), zyx)


def test_a_unit_square_has_its_area_and_normals():
    square = Mesh([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], [[0, 1, 2], [0, 2, 3]])
    assert square.area() == pytest.approx(100.0)
    assert np.allclose(square.face_normals(), [[0, 0, 1], [0, 0, 1]])
    assert np.allclose(square.vertex_normals(), [[0, 0, 1]] * 4)
    valued = square.with_values(thickness=[40.0, 41.0, np.nan, 39.0])
    assert np.isnan(valued.values["thickness"][2]) and square.values == {}
    assert len(valued.to_trimesh().vertex_attributes["thickness"]) == 4


def test_bad_meshes_are_refused():
    with pytest.raises(ValueError, match=r"\(n, 3\) vertices"):
        Mesh(np.zeros((4, 2)), [[0, 1, 2]])
    with pytest.raises(ValueError, match="a face names a vertex"):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]])
    with pytest.raises(ValueError, match="one value per vertex"):
        Mesh(np.zeros((3, 3)), [[0, 1, 2]], values={"x": [1.0, 2.0]})
