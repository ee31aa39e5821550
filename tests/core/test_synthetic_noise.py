"""bilayer.data.synthetic.noise: back-projected noise stays in the tilt range; the bias field is smooth."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic.noise import backprojected_noise, bias_field


def test_backprojected_noise_lies_inside_the_tilt_range():
    shape = (48, 16, 48)
    noise = backprojected_noise(np.random.default_rng(0), shape, -45.0, 45.0, 31)
    assert noise.shape == shape and noise.dtype == np.float32
    assert abs(float(noise.mean())) < 1e-3 and float(noise.std()) == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.fftn(noise)) ** 2
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.fftfreq(shape[2])[None, None, :]
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx))) + 0 * power  # angle from the kx axis
    radial = np.hypot(kz, kx) + 0 * power
    ring = (radial > 0.08) & (radial < 0.45)
    inside = ring & (angle < 40)
    wedge = ring & (angle > 50)
    # per frequency sample, the missing wedge holds far less noise than the sampled range
    assert power[wedge].mean() < 0.1 * power[inside].mean()


def test_bias_field_is_a_smooth_factor_around_one_with_the_asked_spread():
    shape = (24, 32, 40)
    field = bias_field(np.random.default_rng(3), shape, 10.0, 0.1)
    assert field.shape == shape and field.dtype == np.float32
    assert float(field.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(field.std()) == pytest.approx(0.1, rel=1e-3)  # no voxel clipped at this spread
    for axis in range(3):  # smooth: neighbouring voxels nearly equal
        a, b = np.moveaxis(field, axis, 0)[1:], np.moveaxis(field, axis, 0)[:-1]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(field, bias_field(np.random.default_rng(3), shape, 10.0, 0.1))


def test_a_strong_bias_field_is_clipped_at_one_fifth():
    field = bias_field(np.random.default_rng(4), (16, 16, 16), 10.0, 5.0)
    assert float(field.min()) == pytest.approx(0.2)
    assert float(field.max()) > 2.0
