"""bilayer.data.synthetic.fields: crops, exact φ/|∇φ| distances, closed-form blends, honest random draws."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
from bilayer.data.synthetic.fields import (
    ModeField,
    crop_around,
    crop_between,
    full_crop,
    k_squared,
    log_uniform,
    normalise_distance,
    random_rotation,
    random_unit_vector,
    smooth_max,
    smooth_min,
    smooth_random_field,
    solid_fraction,
)


def test_crops_are_the_voxels_of_a_physical_box_clipped_to_the_volume():
    shape, vs = (10, 20, 30), 5.0
    crop = crop_between(np.array([12.0, -40.0, 100.0]), np.array([31.0, 60.0, 400.0]), shape, vs)
    assert crop.slices == (slice(2, 8), slice(0, 13), slice(20, 30))  # floor, ceil + 1, clipped
    assert crop.shape == (6, 13, 10)
    np.testing.assert_array_equal(crop.z.ravel(), np.arange(2, 8) * vs)
    np.testing.assert_array_equal(crop.x.ravel(), np.arange(20, 30) * vs)
    around = crop_around(np.array([25.0, 50.0, 75.0]), 10.0, shape, vs)
    assert around.slices == (slice(3, 8), slice(8, 13), slice(13, 18))
    assert around.within(full_crop(shape, vs)) == around.slices
    assert crop_between(np.array([0.0, 0.0, 200.0]), np.array([10.0, 10.0, 300.0]), shape, vs) is None
    dz, dy, dx = around.relative(np.array([25.0, 50.0, 75.0]))
    assert (dz.ravel()[0], dy.ravel()[-1], dx.ravel()[2]) == (-10.0, 10.0, 0.0)


def test_normalised_distance_of_a_plane_is_its_exact_distance_and_normal_clipped_far_away():
    shape, vs, clip = (32, 32, 32), 10.0, 100.0
    normal = np.array([0.6, -0.48, 0.64])
    crop = full_crop(shape, vs)
    dz, dy, dx = crop.relative(np.array([155.0, 161.0, 149.0]))
    exact = (normal[0] * dz + normal[1] * dy + normal[2] * dx).astype(np.float32)
    d, normals = normalise_distance(exact, vs, clip=clip)
    near = np.abs(exact) < clip - 2 * vs
    assert near.sum() > 5000 and (np.abs(exact) >= clip).sum() > 5000
    np.testing.assert_allclose(d[near], exact[near], atol=1e-3)
    for component, expected in zip(normals, normal):
        np.testing.assert_allclose(component[near], expected, atol=1e-5)
    far = np.abs(exact) >= clip
    assert np.all(np.abs(d[far]) >= clip) and np.all(np.sign(d[far]) == np.sign(exact[far]))
    # a φ that is three times the distance gives the same distance near the surface
    tripled, _ = normalise_distance(3 * exact, vs, clip=3 * clip)
    np.testing.assert_allclose(tripled[near], exact[near], atol=1e-3)


def test_smooth_union_and_intersection_have_their_closed_form():
    a = np.array([0.0, 0.0, 5.0, -30.0], np.float32)
    b = np.array([0.0, 20.0, 6.0, 10.0], np.float32)
    k = 8.0
    union = smooth_min(a, b, k)
    # equal arguments dip by k/4; arguments k or more apart give the plain minimum
    np.testing.assert_allclose(union, [-2.0, 0.0, 5.0 - (7.0 / 8.0) ** 2 * 2.0, -30.0], rtol=1e-6)
    assert np.all(union <= np.minimum(a, b))
    np.testing.assert_allclose(smooth_max(a, b, k), -smooth_min(-a, -b, k))
    assert np.all(smooth_max(a, b, k) >= np.maximum(a, b))


def test_solid_fraction_is_half_a_voxel_either_side_of_the_surface():
    vs = 10.0
    d = np.array([-20.0, -5.0, -2.5, 0.0, 2.5, 5.0, 20.0], np.float32)
    np.testing.assert_allclose(solid_fraction(d, vs), [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_mode_fields_agree_on_crops_and_at_points():
    rng = np.random.default_rng(6)
    field = ModeField.random(rng, amplitude=30.0, wavelength=400.0)
    crop = crop_between(np.array([0.0, 50.0, 20.0]), np.array([90.0, 150.0, 200.0]), (16, 16, 32), 10.0)
    grid = field.on_crop(crop)
    z, y, x = np.meshgrid(crop.z.ravel(), crop.y.ravel(), crop.x.ravel(), indexing="ij")
    points = np.stack([z.ravel(), y.ravel(), x.ravel()], axis=1).astype(np.float64)
    np.testing.assert_allclose(grid.ravel(), field.at(points), atol=1e-3 * np.abs(grid).max())
    empty = ModeField(np.zeros(0, complex), np.zeros((0, 3)))
    assert not empty.on_crop(crop).any() and not empty.at(points).any()


def test_random_draws_are_rotations_directions_and_log_uniform_scales():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        assert np.linalg.norm(random_unit_vector(rng)) == pytest.approx(1.0)
    scales = np.array([log_uniform(rng, 10.0, 1000.0) for _ in range(4000)])
    assert scales.min() >= 10.0 and scales.max() <= 1000.0
    assert np.mean(scales < 100.0) == pytest.approx(0.5, abs=0.03)  # each decade as common


def test_smooth_random_fields_have_unit_variance_on_the_rfft_grid():
    shape, vs = (16, 24, 20), 5.0
    field = smooth_random_field(np.random.default_rng(1), shape, vs, 20.0)
    assert field.shape == shape and field.dtype == np.float32
    assert float(field.mean()) == pytest.approx(0.0, abs=1e-6) and float(field.std()) == pytest.approx(1.0, rel=1e-5)
    k2 = k_squared(shape, vs)
    assert k2.shape == (16, 24, 11)
    expected = (scipy.fft.fftfreq(16, vs)[:, None, None] ** 2 + scipy.fft.fftfreq(24, vs)[None, :, None] ** 2
                + scipy.fft.rfftfreq(20, vs)[None, None, :] ** 2)
    np.testing.assert_allclose(k2, expected, rtol=1e-6)
