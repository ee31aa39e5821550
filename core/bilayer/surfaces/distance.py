"""Distance from every vertex of a membrane to the nearest other membrane, in Å: contact sites,
inter-membrane spacing, the stacking of cristae and thylakoids.

The distance is to the nearest point of the other surfaces, not to their nearest vertex (which
overestimates it by up to (half an edge)² / (2 × distance), half an edge at contact): for each mesh, a KD-tree over the vertices of all
the *other* meshes gives each vertex's two nearest vertices there, and the exact point-to-triangle
distance (trimesh's closest point on a triangle) is taken over the faces around them. This equals
libigl's exact AABB search (gpytoolbox ``squared_distance``) on every vertex of the tests' meshes;
that search is not used because it rebuilds its tree for every mesh (about 1 s per million faces,
twenty times over for twenty membranes), where a KD-tree over the other vertices builds in 0.2 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.spatial import cKDTree

from bilayer import checks
from bilayer.resources import cpu_count
from bilayer.surfaces.mesh import Mesh

__all__ = ["MembraneScene", "NearestMembrane", "nearest_membrane_distances"]

_NEAREST_VERTICES = 2  # the faces around this many nearest vertices are searched (1 misses by < 0.01 edge)
_CHUNK = 100_000  # point-face pairs measured at a time (memory)


class NearestMembrane(NamedTuple):
    """The nearest other membrane of each vertex of one mesh.

    Attributes:
        distance: ``(n,)`` Å to the nearest point of any other mesh; NaN where there is none
            (the mesh is alone, or nothing is within ``max_distance``).
        label: ``(n,)`` int64, that mesh's label; 0 where there is none.
    """

    distance: np.ndarray
    label: np.ndarray


def nearest_membrane_distances(meshes: list[Mesh], max_distance: float | None = None) -> list[NearestMembrane]:
    """For every vertex of every mesh, the distance in Å to the nearest point of any *other* mesh
    and that mesh's label, in the order of ``meshes``.

    Args:
        meshes: the membranes (Å, one frame); meshes without faces are measured but never nearest.
        max_distance: Å; farther membranes are not searched (NaN, label 0). The search for a far
            membrane is the slow part (many vertices are almost as near as the nearest), so a
            bound such as 1000 Å speeds up tomograms with few, distant membranes.

    Returns:
        One :class:`NearestMembrane` per mesh.

    Raises:
        ConfigError: ``max_distance`` is not a positive number.
    """
    scene = MembraneScene.of(meshes)
    return [scene.nearest(index, max_distance) for index in range(len(meshes))]


@dataclass(frozen=True)
class MembraneScene:
    """Every membrane of a tomogram as one surface: what :meth:`nearest` searches, and what a worker
    process measuring one membrane's distances needs of the others (sent to it once).

    Attributes:
        vertices: ``(v, 3)`` Å, the meshes' vertices one after the other.
        faces: ``(f, 3)`` indices into ``vertices``.
        owner: ``(v,)`` index in the meshes' list of each vertex's mesh.
        labels: ``(m,)`` each mesh's label.
    """

    vertices: np.ndarray
    faces: np.ndarray
    owner: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, meshes: list[Mesh]) -> MembraneScene:
        offsets = np.cumsum([0] + [mesh.vertex_count for mesh in meshes])
        vertices = np.concatenate([mesh.vertices for mesh in meshes]) if meshes else np.empty((0, 3))
        faces = np.concatenate([mesh.faces + offsets[k] for k, mesh in enumerate(meshes)]) if meshes \
            else np.empty((0, 3), dtype=np.int64)
        owner = np.repeat(np.arange(len(meshes), dtype=np.int64), np.diff(offsets))
        return cls(vertices, faces, owner, np.array([mesh.label for mesh in meshes], dtype=np.int64))

    @cached_property
    def _around(self) -> csr_matrix:
        return _vertex_faces(self.faces, len(self.vertices))

    def nearest(self, index: int, max_distance: float | None = None) -> NearestMembrane:
        """The nearest other membrane of every vertex of mesh ``index`` (see
        :func:`nearest_membrane_distances`)."""
        bound = np.inf if max_distance is None else checks.number("max_distance", max_distance, 0.0, open_low=True)
        points = self.vertices[self.owner == index]
        distance = np.full(len(points), np.nan)
        label = np.zeros(len(points), dtype=np.int64)
        surfaces = np.bincount(self.owner[self.faces[:, 0]], minlength=len(self.labels)) > 0
        others = np.flatnonzero((self.owner != index) & surfaces[self.owner])  # vertices of other surfaces
        if others.size and len(points):
            # a face within the bound has a vertex within the bound plus the longest edge
            reach = bound + _longest_edge(self.vertices, self.faces) if np.isfinite(bound) else np.inf
            nearest, face = _to_surface(points, self.vertices, self.faces, others, self._around, reach)
            found = nearest <= bound
            distance[found] = nearest[found]
            label[found] = self.labels[self.owner[self.faces[face[found], 0]]]
        return NearestMembrane(distance, label)


def _to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, candidates: np.ndarray,
                around: csr_matrix, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to the surface made of the faces around ``candidates`` (vertex
    indices): exact over the faces around each point's nearest candidate vertices (searched
    within ``reach``). Returns the distance (inf where none) and the nearest face (-1)."""
    import trimesh

    tree = cKDTree(vertices[candidates], balanced_tree=False, compact_nodes=False)  # far queries: 5× faster
    k = min(_NEAREST_VERTICES, candidates.size)
    _, nearest = tree.query(points, k=k, distance_upper_bound=reach, workers=cpu_count())  # threads: no GIL held
    nearest = nearest.reshape(len(points), k)
    valid = nearest < candidates.size
    rows = np.repeat(np.arange(len(points)), k)[valid.ravel()]
    chosen = csr_matrix((np.ones(rows.size), (rows, candidates[nearest[valid]])),
                        shape=(len(points), len(vertices)))
    pairs = (chosen @ around).tocsr()  # row p: the faces around p's nearest vertices, each once
    counts = np.diff(pairs.indptr)
    point = np.repeat(np.arange(len(points)), counts)
    gap = np.empty(pairs.nnz)
    for start in range(0, pairs.nnz, _CHUNK):
        p, f = point[start:start + _CHUNK], pairs.indices[start:start + _CHUNK]
        gap[start:start + _CHUNK] = np.linalg.norm(
            trimesh.triangles.closest_point(vertices[faces[f]], points[p]) - points[p], axis=1)
    distance = np.full(len(points), np.inf)
    best_face = np.full(len(points), -1, dtype=np.int64)
    some = counts > 0
    if pairs.nnz:
        distance[some] = np.minimum.reduceat(gap, pairs.indptr[:-1][some])
    nearest_pair = np.flatnonzero(gap == distance[point])
    first = np.unique(point[nearest_pair], return_index=True)[1]  # a point's first face at its distance
    best_face[point[nearest_pair[first]]] = pairs.indices[nearest_pair[first]]
    return distance, best_face


def _vertex_faces(faces: np.ndarray, count: int) -> csr_matrix:
    """Sparse ``(vertices, faces)`` incidence (CSR): row ``v`` marks the faces around vertex ``v``."""
    columns = np.repeat(np.arange(len(faces), dtype=np.int32), 3)
    return coo_matrix((np.ones(columns.size, dtype=np.float32), (faces.ravel().astype(np.int32), columns)),
                      shape=(count, len(faces))).tocsr()


def _longest_edge(vertices: np.ndarray, faces: np.ndarray) -> float:
    if not len(faces):
        return 0.0
    return max(float(np.linalg.norm(vertices[faces[:, k]] - vertices[faces[:, k - 1]], axis=1).max()) for k in range(3))
