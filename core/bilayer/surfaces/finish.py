"""A raw marching-cubes surface made into a membrane mesh: crumbs dropped, smoothed with its rim held,
evenly re-meshed, closed surfaces turned outward.

Marching cubes (:func:`bilayer.surfaces.extract.midsurface`) gives a staircase of small, uneven
triangles with specks of a few faces at junctions. trimesh's Taubin filter smooths it without
shrinking, and gpytoolbox's isotropic re-meshing (Botsch & Kobbelt: split, collapse, flip, relax)
makes its edges ``spacing`` Å long. The rim, where a sheet is cut by the volume's faces or the
missing wedge, is held still by both, so an open sheet keeps its extent.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from bilayer.surfaces.mesh import edge_face_counts

__all__ = ["REMESH_ROUNDS", "finish_surface"]

#: split/collapse/flip/relax rounds at the voxel spacing: 5-95 % of edges within 0.77-1.05 of it
#: (3 rounds: the same, 25 % slower); one more for every doubling of the spacing (a round halves an
#: edge count at most)
REMESH_ROUNDS = 2
_MIN_FACES = 8  # pieces of fewer faces are marching-cubes crumbs at junctions


def finish_surface(vertices: np.ndarray, faces: np.ndarray, spacing: float, *, smoothing: int = 10,
                   remesh: bool = True, rounds: int = REMESH_ROUNDS) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``(vertices, faces, closed)`` of the surface ``vertices`` (Å), ``faces`` without its crumbs,
    after ``smoothing`` Taubin iterations and (``remesh``) ``rounds`` rounds of re-meshing to edges of
    ``spacing`` Å, its rim held still; closed (watertight) surfaces have outward normals. ``None``
    if only crumbs were there."""
    import trimesh

    vertices, faces = _without_crumbs(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    if not len(faces):
        return None
    first, second, shared = edge_face_counts(faces, len(vertices))
    rim = np.zeros(len(vertices), dtype=bool)
    rim[first[shared == 1]] = True
    rim[second[shared == 1]] = True
    mesh = trimesh.Trimesh(vertices, faces, process=False)  # marching cubes' vertices are already unique
    if smoothing:
        trimesh.smoothing.filter_taubin(mesh, iterations=smoothing,
                                        laplacian_operator=_pinned_laplacian(first, second, rim))
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if remesh:
        vertices, faces = _remesh(vertices, faces, rim, spacing, rounds, manifold=bool((shared <= 2).all()))
        mesh = trimesh.Trimesh(vertices, faces, process=False)
    closed = bool(mesh.is_watertight)
    if closed and mesh.volume < 0:
        mesh.invert()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), closed


def _remesh(vertices: np.ndarray, faces: np.ndarray, rim: np.ndarray, spacing: float, rounds: int, *,
            manifold: bool) -> tuple[np.ndarray, np.ndarray]:
    """gpytoolbox's isotropic re-meshing to edges of ``spacing``, the ``rim`` vertices kept where they
    are. Its public function first checks the mesh for non-manifold edges and finds the rim again,
    with row-wise sorts that took 10 % of a tomogram's meshing; here the rim is known and
    ``manifold`` (marching cubes' surfaces are) was counted by
    :func:`~bilayer.surfaces.mesh.edge_face_counts`, so its compiled core is called directly, the rim
    first as it expects. Another gpytoolbox whose core differs gets the public function."""
    import gpytoolbox

    if rim.all():  # all rim (a tiny patch): nothing can move, which is right
        return vertices, faces
    try:
        from gpytoolbox_bindings import _remesh_botsch_cpp_impl
    except ImportError:
        _remesh_botsch_cpp_impl = None
    if manifold and _remesh_botsch_cpp_impl is not None:
        order = np.concatenate([np.flatnonzero(rim), np.flatnonzero(~rim)]).astype(np.int32)
        position = np.empty(len(vertices), dtype=np.int32)
        position[order] = np.arange(len(vertices), dtype=np.int32)
        try:
            return _remesh_botsch_cpp_impl(vertices[order].astype(np.float64), position[faces], rounds, float(spacing),
                                           np.arange(int(rim.sum()), dtype=np.int32), np.zeros((0, 2), dtype=np.int32),
                                           True)
        except TypeError:  # another signature: the public function below
            pass
    return gpytoolbox.remesh_botsch(vertices.astype(np.float64), faces.astype(np.int32), i=rounds, h=float(spacing),
                                    project=True)


def _without_crumbs(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pieces of at least ``_MIN_FACES`` faces (pieces: faces connected through shared vertices),
    their unused vertices dropped."""
    count = len(vertices)
    if not len(faces):
        return vertices[:0], faces
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, piece = connected_components(graph, directed=False)
    sizes = np.bincount(piece[faces[:, 0]], minlength=piece.max() + 1)
    faces = faces[sizes[piece[faces[:, 0]]] >= _MIN_FACES]
    used = np.zeros(count, dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[faces]


def _pinned_laplacian(first: np.ndarray, second: np.ndarray, rim: np.ndarray) -> csr_matrix:
    """The umbrella operator (each vertex → the mean of its neighbours) over the edges ``first`` –
    ``second``, as a sparse matrix, with the ``rim`` vertices mapped to themselves, so smoothing
    leaves them in place. (trimesh's own pinned operator normalises through a dense matrix: n² memory.)"""
    count = len(rim)
    row = np.concatenate([first, second])
    col = np.concatenate([second, first])
    moving = ~rim[row]
    row, col = row[moving], col[moving]
    degree = np.bincount(row, minlength=count).astype(np.float64)
    pinned = np.flatnonzero(rim)
    data = np.concatenate([1.0 / degree[row], np.ones(len(pinned))])
    return csr_matrix((data, (np.concatenate([row, pinned]), np.concatenate([col, pinned]))), shape=(count, count))
