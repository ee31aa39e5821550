"""bilayer.data.synthetic.render: label bands of the physical thickness, bilayer density inside them."""

# Expected values are computed independently of the generator: band volume over sphere area, leaflet
# peaks from the profile, densities binned by the exact distance to a plane.

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from bilayer.data.synthetic.fields import full_crop, normalise_distance
from bilayer.data.synthetic.membranes import ellipsoid_phi
from bilayer.data.synthetic.render import Bilayer, Canvas, bilayer_density


def _bilayer(separation: float = 40.0, width: float = 10.0, label_half: float = 25.0) -> Bilayer:
    return Bilayer(separation=separation, width=width, label_half=label_half, outer=1.5, inner=1.5, core=0.0)


@pytest.mark.parametrize("voxel_size", [5.0, 10.0, 15.0, 20.0])
def test_label_thickness_matches_physical_thickness(voxel_size):
    """Label volume / sphere area = label thickness, for a large sphere off the voxel grid."""
    n = 80 if voxel_size == 5.0 else 48
    radius = 0.33 * n * voxel_size
    center = np.array([n / 2 + 0.31, n / 2 - 0.27, n / 2 + 0.44]) * voxel_size
    crop = full_crop((n, n, n), voxel_size)
    d, normals = normalise_distance(ellipsoid_phi(crop.relative(center), np.full(3, radius)), voxel_size)
    canvas = Canvas((n, n, n), voxel_size, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    thickness = 52.0
    canvas.add_membrane(np.random.default_rng(0), crop, d, normals, _bilayer(label_half=thickness / 2))
    measured = canvas.band.sum() * voxel_size**3 / (4 * np.pi * radius**2)
    assert measured == pytest.approx(thickness, abs=0.5 * voxel_size)


def _tilted_plane(n: int, vs: float, normal, offset: float, membrane) -> tuple[Canvas, np.ndarray]:
    """A canvas of n³ voxels at ``vs`` Å with one plane membrane through its centre (shifted by ``offset``
    voxels along z), and the exact signed distance (Å) to the plane at every voxel."""
    normal = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    crop = full_crop((n, n, n), vs)
    dz, dy, dx = crop.relative(np.array([n / 2 + offset, n / 2, n / 2]) * vs)
    exact = normal[0] * dz + normal[1] * dy + normal[2] * dx
    d, normals = normalise_distance(exact.astype(np.float32), vs)
    canvas = Canvas((n, n, n), vs, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    canvas.add_membrane(np.random.default_rng(0), crop, d, normals, membrane)
    return canvas, exact


def test_label_band_is_continuous_at_20_angstrom():
    """Every line along z crossing a tilted plane hits the band at least twice (2.6 voxels thick)."""
    canvas, _ = _tilted_plane(40, 20.0, [0.9, 0.3, -0.2], 0.37, _bilayer(label_half=26.0))
    per_column = canvas.band[4:-4].sum(axis=0)  # stay clear of the top and bottom faces
    assert per_column[8:-8, 8:-8].min() >= 2
    labels = scipy.ndimage.label(canvas.band)[1]
    assert labels == 1


@pytest.mark.parametrize("voxel_size", [5.0, 10.0])
def test_leaflet_peaks_are_separation_apart(voxel_size):
    """A flat bilayer sampled along its normal at an arbitrary sub-voxel offset: two maxima
    separation/voxel_size apart (±1 voxel)."""
    separation = 40.0
    z = np.arange(64) * voxel_size - (32 + 0.3) * voxel_size
    profile = bilayer_density(z.astype(np.float32), _bilayer(separation=separation, width=10.0), voxel_size)
    maxima = [i for i in range(1, 63) if profile[i] > profile[i - 1] and profile[i] >= profile[i + 1]]
    assert len(maxima) == 2
    assert abs((maxima[1] - maxima[0]) - separation / voxel_size) <= 1


def test_bilayer_density_peaks_on_both_sides_of_a_tilted_plane():
    """In 3D, binning voxel densities by their exact distance puts the peaks at ±separation/2."""
    separation = 42.0
    canvas, exact = _tilted_plane(48, 10.0, [0.3, -0.8, 0.52], 0.21, _bilayer(separation=separation))
    bins = np.arange(-60.0, 61.0, 2.0)
    which = np.digitize(exact.ravel(), bins)
    mean = np.array([canvas.membrane_density.ravel()[which == i].mean() for i in range(1, len(bins))])
    centres = 0.5 * (bins[1:] + bins[:-1])
    assert centres[np.argmax(np.where(centres > 0, mean, -np.inf))] == pytest.approx(separation / 2, abs=3.0)
    assert centres[np.argmax(np.where(centres < 0, mean, -np.inf))] == pytest.approx(-separation / 2, abs=3.0)
