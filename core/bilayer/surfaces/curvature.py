"""Mean and Gaussian curvature at every vertex of a membrane's surface, in 1/Å.

Each vertex carries its *integrated* curvatures from gpytoolbox's discrete operators: the mean
curvature ``½ n·(L x)`` from the cotangent Laplacian ``L`` (the mean-curvature normal) and the
Gaussian curvature from the angle defect ``2π − Σ angles``. Per vertex these are noisy on a
membrane meshed from a mask segmented at ~10 Å (marching cubes leaves bumps at the voxel scale
that smoothing only damps), so the value reported at a vertex is the integrated curvature of
the patch within ``scale`` Å of it divided by the patch's area: a ball average that keeps the
discrete Gauss–Bonnet sums (the bumps cancel inside the patch) and is unbiased on a sphere.

Why not a local quadric fit: on the same meshes (spheres of R = 15–30 voxels at 10 Å) a fit of
``z = ax² + bxy + cy² + dx + ey + f`` over the same neighbourhood put half as many vertices within
10 % of 1/R (it fits the bumps) and biased the Gaussian curvature by up to −14 %, where the ball
average's medians are within 2 % of 1/R and 1/R² (tests/core/test_curvature.py). With the default
patch (three edges, 30 Å at 10 Å) 87 %, 79 % and 63 % of a sphere's vertices are within 10 % of
1/R for R = 15, 20 and 30 voxels; a patch of 40 Å raises that to 97 %, 93 % and 82 %.

Sign: the mean curvature is positive where the surface bends away from its normals: a sphere
with outward normals (a closed membrane from :func:`bilayer.surfaces.extract.membrane_meshes`)
has ``+1/R``, a cylinder ``+1/(2R)``. An open sheet's sign follows its (arbitrary but
consistent) orientation. The Gaussian curvature does not depend on the orientation.

At an open boundary the operators do not measure curvature (the Laplacian there holds the
rim's own bending, the angle defect is zero), so vertices whose patch reaches the rim get NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from bilayer import checks
from bilayer.surfaces.mesh import Mesh, edge_face_counts

__all__ = ["DEFAULT_SCALE_EDGES", "default_scale", "vertex_curvatures"]

DEFAULT_SCALE_EDGES = 3.0  # the default patch radius, in mesh edges (the voxel size by default)
_PAIR_CHUNK = 1 << 20  # pairs whose normals are compared at a time (memory)


def default_scale(mesh: Mesh) -> float:
    """The default patch radius in Å: three median edge lengths (30 Å for a mesh of 10 Å voxels)."""
    if not len(mesh.faces):
        return 0.0
    corners = mesh.vertices[mesh.faces]
    edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2)
    return DEFAULT_SCALE_EDGES * float(np.median(edges))


def vertex_curvatures(mesh: Mesh, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Gaussian curvature per vertex, in 1/Å and 1/Å².

    Args:
        mesh: a consistently oriented triangle mesh (Å).
        scale: radius in Å of the patch each vertex's value is averaged over (Euclidean, among
            vertices whose normals are within 90° of the vertex's, so the far wall of a flattened
            vesicle is not mixed in); ``None``: :func:`default_scale`; ``0``: the vertex's own
            discrete values (noisy).

    Returns:
        ``(mean, gaussian)``, each ``(n,)``: mean curvature (1/Å, positive where the surface bends
        away from its normals: ``+1/R`` on a sphere with outward normals) and Gaussian curvature
        (1/Å²); NaN where the patch reaches an open boundary, or at a vertex in no face.

    Raises:
        ConfigError: ``scale`` is negative or not finite.
    """
    scale = default_scale(mesh) if scale is None else checks.number("curvature scale", scale, 0.0)
    count = mesh.vertex_count
    if not len(mesh.faces):
        return np.full(count, np.nan), np.full(count, np.nan)
    import gpytoolbox

    vertices, faces = mesh.vertices, mesh.faces.astype(np.int32)
    normals = mesh.vertex_normals()
    laplacian = gpytoolbox.cotangent_laplacian(vertices, faces)  # positive semi-definite: L x = 2 H n A
    area = np.asarray(gpytoolbox.massmatrix(vertices, faces, type="voronoi").diagonal())
    mean_integrated = 0.5 * np.einsum("ij,ij->i", laplacian @ vertices, normals)
    angles = gpytoolbox.tip_angles(vertices, faces)  # angle_defect's own rim search is slow: ours is below
    gaussian_integrated = 2 * np.pi - np.bincount(faces.ravel(), angles.ravel(), count)
    rim = _rim_vertices(faces, count)
    pairs = _patch_pairs(vertices, faces, normals, scale)
    if scale > 0:
        sums = _patch_sums(pairs, np.stack([area, mean_integrated, gaussian_integrated, rim], axis=1))
        area, mean_integrated, gaussian_integrated, near_rim = sums.T
    else:
        near_rim = _patch_sums(pairs, rim[:, None].astype(np.float64))[:, 0]
    touches_rim = near_rim > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = mean_integrated / area
        gaussian = gaussian_integrated / area
    undefined = touches_rim | ~(area > 0)
    mean[undefined] = np.nan
    gaussian[undefined] = np.nan
    return mean, gaussian


def _patch_pairs(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, scale: float) -> np.ndarray:
    """``(p, 2)`` the pairs of vertices in each other's patch (each pair once, a vertex not with
    itself): within ``scale`` Å with normals within 90°; with ``scale`` 0 the one-ring edges (some
    twice), used only to find vertices next to a rim."""
    if scale <= 0:
        return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    pairs = cKDTree(vertices).query_pairs(scale, output_type="ndarray")
    keep = np.empty(len(pairs), dtype=bool)
    for start in range(0, len(pairs), _PAIR_CHUNK):  # a pair's two normals at a time: not 2 × (p, 3) at once
        chunk = pairs[start:start + _PAIR_CHUNK]
        keep[start:start + _PAIR_CHUNK] = np.einsum("ij,ij->i", normals[chunk[:, 0]], normals[chunk[:, 1]]) > 0
    return pairs[keep]


def _patch_sums(pairs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(n, k)``: each vertex's ``values`` summed over its patch, itself included (the patches'
    0/1 matrix times ``values``, by counting each pair both ways, without building the matrix)."""
    count = len(values)
    sums = values.astype(np.float64, copy=True)
    for column in range(values.shape[1]):
        sums[:, column] += np.bincount(pairs[:, 0], values[pairs[:, 1], column], count)
        sums[:, column] += np.bincount(pairs[:, 1], values[pairs[:, 0], column], count)
    return sums


def _rim_vertices(faces: np.ndarray, count: int) -> np.ndarray:
    """Whether each vertex lies on an open boundary: an end of an edge that only one face has."""
    first, second, shared = edge_face_counts(faces, count)
    rim = np.zeros(count, dtype=bool)
    rim[first[shared == 1]] = True
    rim[second[shared == 1]] = True
    return rim
