"""bilayer.surfaces.eigen3: closed-form eigen-decomposition of stacked symmetric 3×3 matrices against
LAPACK (numpy.linalg.eigh): random matrices, structure tensors of planes and lines, double and triple
eigenvalues, zero matrices."""

from __future__ import annotations

import numpy as np
from bilayer.surfaces.eigen3 import symmetric_eigen


def _split(a: np.ndarray) -> tuple[np.ndarray, ...]:
    return a[:, 0, 0], a[:, 0, 1], a[:, 0, 2], a[:, 1, 1], a[:, 1, 2], a[:, 2, 2]


def _check(a: np.ndarray, separated: float = 1e-3) -> None:
    values, vectors = symmetric_eigen(*_split(a.astype(np.float32)))
    expected, expected_vectors = np.linalg.eigh(a)
    scale = np.abs(expected).max(axis=1, keepdims=True) + 1e-30
    assert np.all(np.abs(values - expected) <= 2e-6 * scale)
    # orthonormal, and A v = λ v for every pair (true also for any basis of a double eigenvalue's plane)
    assert np.allclose(np.einsum("nji,njk->nik", vectors, vectors), np.eye(3), atol=1e-5)
    residual = np.einsum("nij,njk->nik", a, vectors) - vectors * values[:, None, :]
    assert np.abs(residual).max() <= 2e-5 * scale.max()
    # a well-separated eigenvalue's vector is LAPACK's up to its sign
    gaps = np.diff(expected, axis=1) / scale
    for k, gap in ((0, gaps[:, 0]), (2, gaps[:, 1])):
        sure = gap > separated
        dots = np.abs(np.einsum("ni,ni->n", vectors[sure, :, k], expected_vectors[sure, :, k]))
        assert np.all(dots > 1 - 1e-5)


def test_random_symmetric_matrices_match_lapack(rng):
    m = rng.normal(size=(20000, 3, 3))
    _check(m + m.transpose(0, 2, 1))
    _check(m @ m.transpose(0, 2, 1))  # positive semi-definite, as structure tensors are


def test_structure_tensors_of_planes_and_lines_and_degenerate_ones(rng):
    normals = rng.normal(size=(5000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    plane = 3.0 * normals[:, :, None] * normals[:, None, :] + 0.01 * np.eye(3)  # one large, a double small
    line = np.eye(3) - normals[:, :, None] * normals[:, None, :]  # a double large, one zero
    iso = np.repeat(np.eye(3)[None] * 2.0, 10, axis=0)  # triple
    zero = np.zeros((10, 3, 3))
    for a in (plane, line, np.concatenate([iso, zero])):
        _check(a)
    _, vectors = symmetric_eigen(*_split(plane.astype(np.float32)))
    assert np.all(np.abs(np.einsum("ni,ni->n", vectors[:, :, 2], normals)) > 1 - 1e-6)  # across the plane
