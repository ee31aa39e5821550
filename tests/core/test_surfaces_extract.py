"""bilayer.surfaces.extract: the midsurface of a membrane band, against exact geometry: a spherical
shell gives a closed sphere of its radius, a slab cut by the volume's faces an open plane at its
middle, a cylinder an open tube; vertices lie within a voxel of the band, in Å in the tomogram's frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bilayer.errors import ConfigError
from bilayer.surfaces.extract import MeshOptions, membrane_meshes, midsurface
from bilayer.surfaces.mesh import world_to_voxel
from scipy import ndimage

VOXEL = 10.0  # Å


def _shell(shape, centre, radius, thickness):
    z, y, x = np.indices(shape, dtype=np.float64)
    r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return np.abs(r - radius) <= thickness / 2


def test_a_spherical_shell_gives_a_closed_sphere_of_its_radius_with_outward_normals():
    centre, radius = (32.3, 31.8, 32.1), 20.0
    band = _shell((64, 64, 64), centre, radius, 4.0)
    origin = (100.0, -50.0, 20.0)  # (z, y, x) Å
    (mesh,) = membrane_meshes(band, VOXEL, origin)
    assert mesh.closed and mesh.label == 1
    centre_xyz = np.array(origin[::-1]) + VOXEL * np.array(centre[::-1])
    r = np.linalg.norm(mesh.vertices - centre_xyz, axis=1)
    assert abs(r.mean() - radius * VOXEL) < 0.15 * VOXEL and r.std() < 0.1 * VOXEL
    assert mesh.area() == pytest.approx(4 * math.pi * (radius * VOXEL) ** 2, rel=0.02)
    outward = np.einsum("ij,ij->i", mesh.vertex_normals(), (mesh.vertices - centre_xyz) / r[:, None])
    assert outward.min() > 0.9
    edges = np.linalg.norm(mesh.vertices[mesh.faces] - mesh.vertices[np.roll(mesh.faces, 1, axis=1)], axis=2)
    assert edges.mean() == pytest.approx(VOXEL, rel=0.1)  # the default spacing: one voxel


def test_a_slab_cut_by_the_volume_faces_stays_an_open_sheet_at_its_middle():
    band = np.zeros((40, 48, 56), dtype=bool)
    band[18:23] = True  # 5 voxels thick, its middle at z = 20
    (mesh,) = membrane_meshes(band, VOXEL)
    assert not mesh.closed
    assert np.allclose(mesh.vertices[:, 2], 20 * VOXEL, atol=1e-6)
    assert mesh.area() == pytest.approx(47 * 55 * VOXEL**2, rel=1e-3)  # from face to face of the volume
    normals = mesh.vertex_normals()
    assert np.all(np.abs(normals[:, 2]) > 0.999) and abs(np.sign(normals[:, 2]).sum()) == len(normals)


def test_a_cylinder_is_an_open_tube_of_its_radius():
    shape = (40, 64, 64)
    y, x = np.indices(shape[1:], dtype=np.float64)
    r = np.hypot(y - 31.6, x - 32.2)
    band = np.broadcast_to(np.abs(r - 18) <= 2, shape).copy()
    (mesh,) = membrane_meshes(band, VOXEL)
    assert not mesh.closed
    radial = np.hypot(mesh.vertices[:, 1] - 31.6 * VOXEL, mesh.vertices[:, 0] - 32.2 * VOXEL)
    assert radial.mean() == pytest.approx(18 * VOXEL, abs=0.15 * VOXEL)
    assert mesh.area() == pytest.approx(2 * math.pi * 18 * VOXEL * 39 * VOXEL, rel=0.02)


def test_every_vertex_lies_within_a_voxel_of_the_mask(rng):
    band = _shell((48, 48, 48), (24, 24, 24), 14, 3.0)
    band &= np.indices(band.shape)[0] < 33  # a cap cut off: an open vesicle
    (mesh,) = membrane_meshes(band, VOXEL, (0.0, 0.0, 0.0))
    assert not mesh.closed
    inside = ndimage.distance_transform_edt(~band)  # voxels from the mask
    zyx = world_to_voxel(mesh.vertices, (VOXEL,) * 3)
    nearest = ndimage.map_coordinates(inside, zyx.T, order=1)
    assert nearest.max() <= 1.0


def test_labels_give_one_mesh_each_and_small_membranes_can_be_left_out():
    labels = np.zeros((48, 48, 48), dtype=np.uint16)
    labels[10:14, 4:44, 4:44] = 1
    labels[30:34, 4:44, 4:44] = 2
    labels[40:43, 40:43, 40:43] = 3  # 27 voxels
    meshes = membrane_meshes(labels, VOXEL, options=MeshOptions(min_size=100))
    assert [m.label for m in meshes] == [1, 2]
    assert [round(float(m.vertices[:, 2].mean()) / VOXEL, 3) for m in meshes] == [11.5, 31.5]


def test_the_spacing_sets_the_edge_length():
    band = _shell((64, 64, 64), (32, 32, 32), 22, 4.0)
    (mesh,) = membrane_meshes(band, VOXEL, options=MeshOptions(spacing=25.0))
    edges = np.linalg.norm(mesh.vertices[mesh.faces] - mesh.vertices[np.roll(mesh.faces, 1, axis=1)], axis=2)
    assert edges.mean() == pytest.approx(25.0, rel=0.1)


def test_a_band_too_small_has_no_midsurface_and_bad_input_is_refused():
    assert midsurface(np.zeros((8, 8, 8), dtype=bool)) is None
    assert membrane_meshes(np.zeros((8, 8, 8), dtype=np.uint8), VOXEL) == []
    with pytest.raises(ConfigError, match="not cubic"):
        membrane_meshes(np.ones((8, 8, 8), dtype=np.uint8), (10.0, 10.0, 12.0))
    with pytest.raises(ConfigError, match="must be integers"):
        membrane_meshes(np.ones((8, 8, 8), dtype=np.float32), VOXEL)
    with pytest.raises(ConfigError, match="spacing"):
        MeshOptions(spacing=0)


def test_a_band_two_voxels_thick_is_meshed_on_a_finer_grid_and_stays_whole():
    centre, radius = (24.2, 23.9, 24.1), 14.0
    band = _shell((48, 48, 48), centre, radius, 2.0)  # as a membrane at 20-25 Å
    (mesh,) = membrane_meshes(band, 20.0)
    assert mesh.closed
    r = np.linalg.norm(mesh.vertices - 20.0 * np.array(centre[::-1]), axis=1)
    assert abs(r.mean() - radius * 20.0) < 0.2 * 20.0
    assert mesh.area() == pytest.approx(4 * math.pi * (radius * 20.0) ** 2, rel=0.03)
