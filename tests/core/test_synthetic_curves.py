"""bilayer.data.synthetic.curves: distances to a random curve match brute force to a tenth of a voxel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial
from bilayer.data.synthetic.curves import curve_field, random_curve
from bilayer.data.synthetic.fields import full_crop


@pytest.mark.parametrize("voxel_size", [5.0, 20.0])
def test_curve_distance_matches_brute_force(voxel_size):
    n = 48
    rng = np.random.default_rng(2)
    through = np.full(3, n / 2 * voxel_size)
    curve = random_curve(
        rng, through, 2 * n * voxel_size, 2 * n * voxel_size, persistence=20000.0, spacing=0.5 * voxel_size
    )
    field = curve_field([curve], full_crop((n, n, n), voxel_size), voxel_size, band=200.0)
    dense = np.linspace(0, curve.length, int(curve.length / (0.02 * voxel_size)))
    points = np.stack([np.interp(dense, curve.arclength, curve.points[:, i]) for i in range(3)], axis=1)
    voxels = np.stack(np.unravel_index(field.band, (n, n, n)), axis=1) * voxel_size
    exact, _ = scipy.spatial.cKDTree(points).query(voxels)
    near = exact < 150.0
    assert near.sum() > 1000
    assert np.max(np.abs(field.radial[near] - exact[near])) < 0.1 * voxel_size
