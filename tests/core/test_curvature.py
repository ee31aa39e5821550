"""bilayer.surfaces.curvature: mean and Gaussian curvature per vertex against exact geometry: meshes
of masks (a spherical shell, a cylindrical tube, a tilted slab at 10 Å) and analytic meshes (an
icosphere, an open tube), with the sign convention (+1/R on a sphere with outward normals), the
units (1/Å) and NaN next to open rims."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from bilayer.errors import ConfigError
from bilayer.surfaces.curvature import default_scale, vertex_curvatures
from bilayer.surfaces.extract import membrane_meshes
from bilayer.surfaces.mesh import Mesh

VOXEL = 10.0  # Å
RADIUS = 16  # voxels


@pytest.fixture(scope="module")
def sphere() -> Mesh:
    z, y, x = np.indices((48, 48, 48), dtype=np.float64)
    r = np.sqrt((z - 24.3) ** 2 + (y - 23.8) ** 2 + (x - 24.1) ** 2)
    (mesh,) = membrane_meshes(np.abs(r - RADIUS) <= 2, VOXEL)
    assert mesh.closed
    return mesh


@pytest.fixture(scope="module")
def tube() -> Mesh:
    shape = (40, 48, 48)
    y, x = np.indices(shape[1:], dtype=np.float64)
    band = np.broadcast_to(np.abs(np.hypot(y - 23.6, x - 24.2) - RADIUS) <= 2, shape).copy()
    (mesh,) = membrane_meshes(band, VOXEL)
    assert not mesh.closed
    return mesh


def _open_tube(radius: float, height: float, edge: float) -> Mesh:
    """An open cylinder (x² + y² = radius², 0 ≤ z ≤ height) on a regular grid, normals outward."""
    sections = round(2 * np.pi * radius / edge)
    rings = round(height / edge) + 1
    theta = 2 * np.pi * np.arange(sections) / sections
    z = np.linspace(0.0, height, rings)
    vertices = np.stack([np.tile(radius * np.cos(theta), rings), np.tile(radius * np.sin(theta), rings),
                         np.repeat(z, sections)], axis=1)
    a = np.arange(sections)[None, :] + sections * np.arange(rings - 1)[:, None]
    b = (a + 1) - sections * ((a + 1) % sections == 0)
    faces = np.concatenate([np.stack([a, b, a + sections], -1).reshape(-1, 3),
                            np.stack([b, b + sections, a + sections], -1).reshape(-1, 3)])
    return Mesh(vertices, faces)


def test_a_sphere_from_a_shell_mask_has_mean_curvature_1_over_r_and_gaussian_1_over_r2(sphere):
    radius = RADIUS * VOXEL
    mean, gaussian = vertex_curvatures(sphere)
    assert np.isfinite(mean).all() and np.isfinite(gaussian).all()  # closed: defined everywhere
    assert np.median(mean) == pytest.approx(1 / radius, rel=0.05)
    assert np.mean(np.abs(mean * radius - 1) < 0.1) > 0.5  # most vertices within 10 %
    assert np.median(gaussian) == pytest.approx(1 / radius**2, rel=0.10)


def test_averaging_over_the_scale_is_what_makes_the_vertices_agree(sphere):
    radius = RADIUS * VOXEL
    raw, _ = vertex_curvatures(sphere, scale=0.0)
    smooth, _ = vertex_curvatures(sphere, scale=default_scale(sphere))
    assert default_scale(sphere) == pytest.approx(3 * VOXEL, rel=0.1)  # three edges of one voxel
    assert np.std(smooth * radius) < 0.5 * np.std(raw * radius)
    assert np.median(raw) == pytest.approx(1 / radius, rel=0.05)  # the same curvature, noisier


def test_a_tube_from_a_cylinder_mask_has_mean_curvature_1_over_2r_and_no_gaussian_curvature(tube):
    radius = RADIUS * VOXEL
    mean, gaussian = vertex_curvatures(tube)
    defined = np.isfinite(mean)
    assert 0.6 < defined.mean() < 1.0  # the two rims where the volume cuts the tube are NaN
    assert np.abs(np.median(mean[defined])) == pytest.approx(1 / (2 * radius), rel=0.05)
    assert np.percentile(np.abs(gaussian[defined]), 90) < 0.1 / radius**2


def test_vertices_within_the_scale_of_an_open_rim_have_no_curvature(tube):
    scale = default_scale(tube)
    mean, gaussian = vertex_curvatures(tube, scale)
    z = tube.vertices[:, 2]
    to_rim = np.minimum(z - z.min(), z.max() - z)  # the rims are where the volume cuts the tube
    assert np.isnan(mean[to_rim < scale - VOXEL]).all() and np.isnan(gaussian[to_rim < scale - VOXEL]).all()
    assert np.isfinite(mean[to_rim > scale + VOXEL]).all()
    raw, _ = vertex_curvatures(tube, scale=0.0)  # no patch: only the rim and its one ring
    assert np.isnan(raw[to_rim < 0.5 * VOXEL]).all() and np.isfinite(raw[to_rim > 2 * VOXEL]).all()


def test_a_tilted_flat_sheet_has_no_curvature():
    z, y, x = np.indices((48, 48, 48), dtype=np.float64)
    across = (0.3 * x + 0.2 * y + z) / np.sqrt(1.13)
    (mesh,) = membrane_meshes(np.abs(across - 24) <= 2, VOXEL)
    mean, gaussian = vertex_curvatures(mesh)
    defined = np.isfinite(mean)
    assert defined.mean() > 0.5
    radius = RADIUS * VOXEL  # against the sphere and tube of the tests above
    assert np.percentile(np.abs(mean[defined]), 95) < 0.15 / radius
    assert np.percentile(np.abs(gaussian[defined]), 95) < 0.1 / radius**2


def test_an_icosphere_gives_exact_curvatures_in_inverse_angstrom_and_the_sign_follows_the_normals():
    ball = trimesh.creation.icosphere(subdivisions=4, radius=100.0)
    outward = Mesh(ball.vertices, ball.faces, closed=True)
    mean, gaussian = vertex_curvatures(outward)
    np.testing.assert_allclose(mean, 1 / 100.0, rtol=1e-3)
    np.testing.assert_allclose(gaussian, 1 / 100.0**2, rtol=1e-2)
    inward = Mesh(ball.vertices, ball.faces[:, ::-1], closed=True)
    mean_in, gaussian_in = vertex_curvatures(inward)
    np.testing.assert_allclose(mean_in, -mean)
    np.testing.assert_allclose(gaussian_in, gaussian)


def test_an_analytic_open_tube_has_mean_curvature_1_over_2r_away_from_its_rims():
    tube = _open_tube(radius=80.0, height=300.0, edge=8.0)
    assert np.all(np.einsum("ij,ij->i", tube.vertex_normals()[:, :2], tube.vertices[:, :2]) > 0)  # outward
    mean, gaussian = vertex_curvatures(tube, scale=25.0)
    z = tube.vertices[:, 2]
    inner = (z > 25.0 + 1) & (z < 300.0 - 25.0 - 1)
    assert np.isnan(mean[~inner]).all()
    np.testing.assert_allclose(mean[inner], 1 / 160.0, rtol=0.01)
    np.testing.assert_allclose(gaussian[inner], 0.0, atol=1e-3 / 80.0**2)


def test_a_mesh_without_faces_has_no_curvature_and_a_bad_scale_is_refused(sphere):
    mean, gaussian = vertex_curvatures(Mesh(np.zeros((3, 3)), np.zeros((0, 3))))
    assert np.isnan(mean).all() and np.isnan(gaussian).all()
    with pytest.raises(ConfigError, match="scale"):
        vertex_curvatures(sphere, scale=-1.0)
