"""bilayer.surfaces.finish: crumbs dropped, rims held, edges evened, closed surfaces turned outward."""

from __future__ import annotations

import gpytoolbox
import numpy as np
import pytest
import trimesh
from skimage.measure import marching_cubes

from bilayer.surfaces.finish import _pinned_laplacian, _remesh, finish_surface
from bilayer.surfaces.mesh import edge_face_counts

VOXEL = 10.0  # Å


def _sphere(radius: float = 12.0, inward: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of a ball of ``radius`` voxels, in Å (faces turned inward if asked)."""
    n = int(2 * radius + 8)
    grid = np.indices((n,) * 3, dtype=np.float64) - (n - 1) / 2
    vertices, faces, _, _ = marching_cubes(np.sqrt((grid**2).sum(0)) - radius, 0.0)
    faces = faces[:, ::-1] if inward else faces
    return (vertices - (n - 1) / 2) * VOXEL, faces.astype(np.int64)


def _sheet(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A wavy open square sheet n × n voxels (Å), on a grid of right triangles."""
    y, x = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    z = 2.0 * np.sin(x / 5.0) + np.random.default_rng(0).normal(0.0, 0.2, x.shape)
    vertices = np.stack([z, y, x], axis=-1).reshape(-1, 3) * VOXEL
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return vertices, faces


def _edge_lengths(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    first, second, _ = edge_face_counts(faces, len(vertices))
    return np.linalg.norm(vertices[first] - vertices[second], axis=1)


@pytest.mark.parametrize("inward", [False, True])
def test_a_sphere_comes_out_closed_outward_round_and_evenly_spaced(inward):
    vertices, faces, closed = finish_surface(*_sphere(inward=inward), spacing=VOXEL)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    radius = np.linalg.norm(vertices, axis=1)
    assert closed and mesh.is_watertight
    assert mesh.volume > 0  # outward, whichever way marching cubes turned it
    assert abs(radius.mean() / (12.0 * VOXEL) - 1) < 0.01  # Taubin does not shrink it
    lengths = _edge_lengths(vertices, faces)
    assert 0.8 < np.median(lengths) / VOXEL < 1.1
    assert np.percentile(lengths, 95) / VOXEL < 1.35


def test_an_open_sheet_keeps_its_rim_where_it_was():
    before, faces = _sheet()
    rim_before = np.isin(np.arange(len(before)), np.unique(np.concatenate([
        np.flatnonzero((before[:, 1] == 0) | (before[:, 1] == 29 * VOXEL)),
        np.flatnonzero((before[:, 2] == 0) | (before[:, 2] == 29 * VOXEL))])))
    vertices, faces_after, closed = finish_surface(before, faces, spacing=2 * VOXEL, rounds=3)
    assert not closed
    # the sheet's extent in y and x is exactly what it was: the rim did not move inwards
    for axis in (1, 2):
        assert vertices[:, axis].min() == pytest.approx(0.0, abs=1e-9)
        assert vertices[:, axis].max() == pytest.approx(29 * VOXEL, abs=1e-9)
    # every rim vertex of the result is one of the rim's original vertices, unmoved
    first, second, shared = edge_face_counts(faces_after, len(vertices))
    rim = np.unique(np.concatenate([first[shared == 1], second[shared == 1]]))
    distance = np.linalg.norm(vertices[rim, None, :] - before[None, rim_before, :], axis=2).min(axis=1)
    assert distance.max() < 1e-9
    assert 1.6 < np.median(_edge_lengths(vertices, faces_after)) / VOXEL < 2.2  # coarser, as asked


def test_crumbs_are_dropped_and_only_crumbs_give_none():
    vertices, faces = _sphere()
    speck = np.array([[0, 0, 0], [0, 0, 5], [0, 5, 0], [5, 0, 0]], dtype=np.float64) + 1000.0
    speck_faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1]]) + len(vertices)
    kept, _, closed = finish_surface(np.concatenate([vertices, speck]), np.concatenate([faces, speck_faces]),
                                     spacing=VOXEL, remesh=False, smoothing=0)
    assert closed  # the speck's open faces did not stay to open the sphere
    assert np.abs(kept).max() < 20 * VOXEL
    assert finish_surface(speck, speck_faces - len(vertices), spacing=VOXEL) is None


def test_without_remeshing_and_smoothing_the_surface_is_left_as_it_was():
    vertices, faces = _sphere()
    kept, kept_faces, _ = finish_surface(vertices, faces, spacing=VOXEL, remesh=False, smoothing=0)
    np.testing.assert_array_equal(kept, vertices)
    np.testing.assert_array_equal(kept_faces, faces)


def test_the_direct_remeshing_call_gives_what_gpytoolbox_public_function_gives():
    vertices, faces = _sheet()
    first, second, shared = edge_face_counts(faces, len(vertices))
    rim = np.zeros(len(vertices), dtype=bool)
    rim[first[shared == 1]] = rim[second[shared == 1]] = True
    direct = _remesh(vertices, faces, rim, 1.5 * VOXEL, 2, manifold=True)
    public = gpytoolbox.remesh_botsch(vertices, faces.astype(np.int32), i=2, h=1.5 * VOXEL, project=True)
    assert len(direct[1]) == len(public[1])
    area = [trimesh.Trimesh(v, f, process=False).area for v, f in (direct, public)]
    assert area[0] == pytest.approx(area[1], rel=1e-9)
    np.testing.assert_allclose(np.sort(direct[0], axis=0), np.sort(public[0], axis=0), atol=1e-9)


def test_the_pinned_laplacian_averages_neighbours_and_holds_the_rim():
    vertices, faces = _sheet(6)
    first, second, shared = edge_face_counts(faces, len(vertices))
    rim = np.zeros(len(vertices), dtype=bool)
    rim[first[shared == 1]] = rim[second[shared == 1]] = True
    operator = _pinned_laplacian(first, second, rim).toarray()
    np.testing.assert_allclose(operator.sum(axis=1), 1.0)
    np.testing.assert_array_equal(operator[rim][:, rim], np.eye(int(rim.sum())))
    inner = np.flatnonzero(~rim)[0]
    neighbours = np.concatenate([second[first == inner], first[second == inner]])
    np.testing.assert_allclose(operator[inner, neighbours], 1.0 / len(neighbours))
