"""bilayer.data.synthetic.imaging: missing wedge, edge-on angles, CTF, dark dense objects, SNR in the wedge."""

# Expected values are computed independently of the generator: CTF zeros from the quadratic in k²,
# wedge membership from the tilt geometry, edge-on angles by brute force over the tilts.

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic import CtfMode
from bilayer.data.synthetic.imaging import (
    ImagingParams,
    _ctf_without_fringes,
    ctf,
    edge_on_angle,
    electron_wavelength,
    missing_wedge_mask,
    simulate,
)


def test_missing_wedge_mask_keeps_exactly_the_sampled_wedge():
    shape = (24, 10, 30)
    theta = 55.0
    mask = missing_wedge_mask(shape, -theta, theta)
    assert mask.shape == (24, 10, 16)
    kz = np.fft.fftfreq(shape[0])
    kx = np.fft.rfftfreq(shape[2])
    for i, fz in enumerate(kz):
        for j, fx in enumerate(kx):
            kept = abs(fz) <= fx * np.tan(np.radians(theta)) + 1e-12
            assert np.all(mask[i, :, j] == kept), (fz, fx)


def test_missing_wedge_mask_asymmetric_range():
    shape = (32, 4, 32)
    mask = missing_wedge_mask(shape, -30.0, 60.0)
    kz = np.fft.fftfreq(32)
    kx = np.fft.rfftfreq(32)
    # A direction at atan(-kz/kx) = +45 deg is recorded, -45 deg is not.
    i_neg = int(np.argmin(np.abs(kz + 0.25)))  # kz = -0.25
    i_pos = int(np.argmin(np.abs(kz - 0.25)))
    j = int(np.argmin(np.abs(kx - 0.25)))
    assert mask[i_neg, 0, j] and not mask[i_pos, 0, j]


def test_edge_on_angle_matches_brute_force_over_tilts():
    rng = np.random.default_rng(8)
    normals = rng.standard_normal((300, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    tilt_min, tilt_max = -48.0, 61.0
    alphas = np.radians(np.linspace(tilt_min, tilt_max, 20001))
    beam_dot = normals[:, 0:1] * np.cos(alphas) + normals[:, 2:3] * np.sin(alphas)
    expected = np.degrees(np.arcsin(np.abs(beam_dot).min(axis=1)))
    got = edge_on_angle(normals[:, 0], normals[:, 2], tilt_min, tilt_max)
    assert np.allclose(got, expected, atol=0.02)
    assert edge_on_angle(np.array([1.0]), np.array([0.0]), -60.0, 60.0)[0] == pytest.approx(30.0)
    assert edge_on_angle(np.array([0.0]), np.array([0.0]), -60.0, 60.0)[0] == 0.0


def test_ctf_value_zero_and_sign():
    defocus, a, kv, cs = 30000.0, 0.07, 300.0, 2.7
    assert electron_wavelength(300.0) == pytest.approx(0.01969, abs=2e-5)
    assert ctf(np.array([0.0]), defocus, a)[0] == pytest.approx(-a, abs=1e-6)
    lam = 12.2643 / np.sqrt(300e3 * (1 + 0.978466e-6 * 300e3))
    # First zero: chi = pi - arcsin(A), chi = pi lam df u - pi/2 Cs lam^3 u^2 with u = k^2.
    c2, c1, c0 = 0.5 * np.pi * cs * 1e7 * lam**3, -np.pi * lam * defocus, np.pi - np.arcsin(a)
    u = (-c1 - np.sqrt(c1 * c1 - 4 * c2 * c0)) / (2 * c2)
    k0 = np.sqrt(u)
    values = ctf(np.array([0.5 * k0, k0, 1.05 * k0]), defocus, a, kv, cs)
    assert values[0] < 0 and abs(values[1]) < 1e-4 and values[2] > 0
    flipped = ctf(np.linspace(0, 0.1, 500), defocus, a, kv, cs, phase_flipped=True)
    assert np.all(flipped <= 0)


def test_ctf_without_fringes_never_reverses_contrast():
    params = ImagingParams(defocus=40000.0, defocus_spread=0.0, amplitude_contrast=0.07, voltage_kv=300.0,
                           spherical_aberration_mm=2.7, ctf_mode=CtfMode.NONE, b_factor=0.0, tilt_min=-60.0,
                           tilt_max=60.0, snr=1.0, noise_color=0.0, lowpass=None, interpolation=0.0,
                           background=0.0, inverted=False)
    k = np.linspace(0, 0.1, 2001).astype(np.float32)
    t = _ctf_without_fringes(k, params)
    assert np.all(t <= 0)  # dense is dark at every frequency
    assert t[0] == pytest.approx(-0.07, abs=1e-4)  # only amplitude contrast at k = 0
    raw = -ctf(k, 40000.0, 0.07, 300.0, 2.7)  # the first maximum of the raw CTF, found on the grid
    first_peak = k[np.argmax(np.diff(raw) < 0)]
    assert np.all(t[k > first_peak * 1.01] == -1.0)
    assert np.all(np.diff(t[k < 0.99 * first_peak]) <= 1e-6)  # rises in magnitude up to its first maximum


def _imaging(**overrides) -> ImagingParams:
    values = {
        "defocus": 30000.0,
        "defocus_spread": 0.0,
        "amplitude_contrast": 0.07,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "ctf_mode": CtfMode.PHASE_FLIPPED,
        "b_factor": 100.0,
        "tilt_min": -60.0,
        "tilt_max": 60.0,
        "snr": 1e6,
        "noise_color": 0.5,
        "lowpass": None,
        "interpolation": 0.0,
        "background": 0.0,
        "inverted": False,
    }
    values.update(overrides)
    return ImagingParams(**values)


@pytest.mark.parametrize("mode", list(CtfMode))
@pytest.mark.parametrize("defocus", [15000.0, 60000.0])
@pytest.mark.parametrize("inverted", [False, True])
def test_dense_objects_come_out_dark_unless_inverted(mode, defocus, inverted):
    """A protein-like soft blob is darker than its surroundings, raw or phase-flipped CTF."""
    n, vs = 48, 10.0
    z, y, x = np.mgrid[:n, :n, :n] * vs
    r = np.sqrt((z - 24 * vs) ** 2 + (y - 24 * vs) ** 2 + (x - 24 * vs) ** 2)
    density = np.exp(-0.5 * (r / 30.0) ** 2).astype(np.float32)
    params = _imaging(ctf_mode=mode, defocus=defocus, inverted=inverted)
    image = simulate(np.random.default_rng(0), density, vs, params, density, density > 0.5)
    inside = float(image[r < 60.0].mean())
    assert (inside > 1.0) if inverted else (inside < -1.0)


def test_signal_and_noise_both_lie_in_the_recorded_wedge():
    n, vs = 32, 12.0
    rng = np.random.default_rng(1)
    density = rng.random((n, n, n)).astype(np.float32)
    params = _imaging(snr=0.5, tilt_min=-50.0, tilt_max=65.0)
    image = simulate(rng, density, vs, params, density, density > 0.5)
    power = np.abs(np.fft.rfftn(image)) ** 2
    mask = missing_wedge_mask((n, n, n), -50.0, 65.0)
    mask[0, 0, 0] = True  # the mean is removed by normalisation
    assert power[~mask].max() < 1e-6 * power[mask].max()


@pytest.mark.parametrize("snr", [0.05, 1.0, 20.0])
def test_snr_sets_the_noise_level_relative_to_the_membrane_signal(snr):
    """The noise variance is var(signal over the band) / snr, so the image correlates with the
    noise-free image as 1 / sqrt(1 + var(signal over the band) / (snr · var(signal)))."""
    n, vs = 32, 10.0
    density = np.zeros((n, n, n), np.float32)
    density[:, :, 14:18] = 1.0
    band = density > 0
    clean = simulate(np.random.default_rng(0), density, vs, _imaging(snr=1e12), density, band)
    noisy = simulate(np.random.default_rng(1), density, vs, _imaging(snr=snr), density, band)
    q = float(clean[band].std() / clean.std())
    expected = 1.0 / np.sqrt(1.0 + q * q / snr)
    assert np.corrcoef(noisy.ravel(), clean.ravel())[0, 1] == pytest.approx(expected, abs=0.03)
