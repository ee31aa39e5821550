"""bilayer.data.synthetic.membranes: ellipsoid distances are sub-voxel accurate (exact ones by root finding)."""

from __future__ import annotations

import numpy as np
import scipy.optimize
from bilayer.data.synthetic.fields import full_crop, normalise_distance
from bilayer.data.synthetic.membranes import ellipsoid_phi


def test_ellipsoid_distance_is_subvoxel_accurate():
    """φ/|∇φ| of the approximate ellipsoid function against the exact distance (root finding),
    over the label band of a rather eccentric ellipsoid."""
    n, vs = 48, 10.0
    axes = np.array([0.35, 0.22, 0.3]) * n * vs
    center = np.array([n / 2 + 0.2, n / 2 - 0.4, n / 2 + 0.1]) * vs
    crop = full_crop((n, n, n), vs)
    d, _ = normalise_distance(ellipsoid_phi(crop.relative(center), axes), vs)
    rng = np.random.default_rng(5)
    z, y, x = np.nonzero(np.abs(d) < 25.0)
    errors = []
    for i in rng.choice(len(z), 200, replace=False):
        p = np.array([z[i], y[i], x[i]]) * vs - center
        outside = np.sum((p / axes) ** 2) > 1

        def f(t, p=p):
            return np.sum((axes * p / (axes**2 + t)) ** 2) - 1

        t = (
            scipy.optimize.brentq(f, 0, 1e12)
            if outside
            else scipy.optimize.brentq(f, -(axes.min() ** 2) * (1 - 1e-12), 0)
        )
        foot = axes**2 * p / (axes**2 + t)
        exact = np.linalg.norm(p - foot) * (1 if outside else -1)
        errors.append(d[z[i], y[i], x[i]] - exact)
    assert np.max(np.abs(errors)) < 0.1 * vs
