"""A membrane surface: a triangle mesh in Å in the tomogram's frame, with per-vertex values.

Coordinates are **(x, y, z) in Å**, the order every mesh format and viewer (ChimeraX, napari's
``Surface`` layer after a flip, Blender, the CryoET Data Portal) uses, and placed as the MRC
header places the tomogram: voxel ``(z, y, x)`` of the mask is at
``origin + index * voxel_size`` (both from the header, per axis). So a mesh written next to its
tomogram overlays it in ChimeraX with no transform. :func:`voxel_to_world` and
:func:`world_to_voxel` are the one place this rule lives.

Faces are oriented consistently (counter-clockwise seen from the side the vertex normals point
to); a closed surface (a vesicle) has outward normals. ``values`` holds per-vertex scalars
(curvatures, thickness, distances), each an array of one value per vertex (NaN: not defined there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["Mesh", "edge_face_counts", "voxel_to_world", "world_to_voxel"]


def voxel_to_world(zyx: np.ndarray, voxel_size: tuple[float, float, float],
                   origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Voxel indices ``(..., 3)`` in (z, y, x) (fractional allowed) → positions in Å in (x, y, z)."""
    zyx = np.asarray(zyx, dtype=np.float64)
    world_zyx = np.asarray(origin, np.float64) + zyx * np.asarray(voxel_size, np.float64)
    return world_zyx[..., ::-1].copy()


def world_to_voxel(xyz: np.ndarray, voxel_size: tuple[float, float, float],
                   origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Inverse of :func:`voxel_to_world`: positions in Å (x, y, z) → fractional voxel indices (z, y, x)."""
    zyx = np.asarray(xyz, dtype=np.float64)[..., ::-1]
    return (zyx - np.asarray(origin, np.float64)) / np.asarray(voxel_size, np.float64)


@dataclass(frozen=True)
class Mesh:
    """One membrane's surface.

    Attributes:
        vertices: ``(n, 3)`` float64, (x, y, z) in Å in the tomogram's frame.
        faces: ``(m, 3)`` int64 vertex indices, consistently oriented.
        label: the membrane's label in the mask it came from (a connected component, or a label of
            a labelled mask).
        closed: whether the surface has no boundary (watertight: a vesicle, a whole organelle).
        values: per-vertex scalars by name, each ``(n,)``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    label: int = 1
    closed: bool = False
    values: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        vertices = np.ascontiguousarray(self.vertices, dtype=np.float64)
        faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"a mesh needs (n, 3) vertices and (m, 3) faces, got {vertices.shape} and {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError("a face names a vertex the mesh does not have")
        values = {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(self.values).items()}
        for name, array in values.items():
            if array.shape != (len(vertices),):
                raise ValueError(f"values[{name!r}] has shape {array.shape}; one value per vertex ({len(vertices)})")
        object.__setattr__(self, "vertices", vertices)
        object.__setattr__(self, "faces", faces)
        object.__setattr__(self, "values", values)

    @property
    def vertex_count(self) -> int:
        return len(self.vertices)

    def with_values(self, **values: Any) -> Mesh:
        """A copy with ``values`` added (or replaced)."""
        return replace(self, values={**self.values, **values})

    def face_normals(self) -> np.ndarray:
        """Unit normals of the faces, ``(m, 3)`` (from the vertex order)."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        normals = np.cross(b - a, c - a)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return normals / np.where(length > 0, length, 1.0)

    def vertex_normals(self) -> np.ndarray:
        """Unit normals of the vertices, ``(n, 3)``: the area-weighted mean of their faces' normals."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        weighted = np.cross(b - a, c - a)  # length: twice the face's area
        corners = self.faces.ravel()
        normals = np.stack([np.bincount(corners, np.repeat(weighted[:, k], 3), minlength=len(self.vertices))
                            for k in range(3)], axis=1)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return normals / np.where(length > 0, length, 1.0)

    def face_areas(self) -> np.ndarray:
        """Areas of the faces in Å², ``(m,)``."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def area(self) -> float:
        """Total area in Å²."""
        return float(self.face_areas().sum())

    def to_trimesh(self) -> Any:
        """The same surface as a :class:`trimesh.Trimesh` (no processing, values as vertex attributes)."""
        import trimesh

        mesh = trimesh.Trimesh(self.vertices, self.faces, process=False)
        for name, array in self.values.items():
            mesh.vertex_attributes[name] = array
        return mesh


def edge_face_counts(faces: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge of ``faces`` once, as ``(first, second, faces)``: its two vertices (first < second)
    and how many faces have it (1 on an open rim, 2 inside a surface, more where it is non-manifold).
    Counted by a sparse matrix, which sums repeated entries without sorting every edge."""
    from scipy.sparse import coo_matrix

    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    table = coo_matrix((np.ones(len(edges), dtype=np.int32), (edges[:, 0], edges[:, 1])), shape=(count, count)).tocsr()
    table.sum_duplicates()
    table = table.tocoo()
    return table.row.astype(np.int64), table.col.astype(np.int64), table.data
