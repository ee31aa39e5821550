"""Tests of bilayer.data.synthetic.appearance: a drawn look changes how a scene looks, never
what it contains, and each appearance family does what it says (one dark band, no fringes,
streaky back-projected noise, dense cores off the membranes)."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.data.synthetic.appearance import Appearance, add_dense_cores, draw_appearance, restyle_bilayer
from bilayer.data.synthetic.imaging import (
    CtfMode,
    ImagingParams,
    _ctf_without_fringes,
    ctf,
)
from bilayer.data.synthetic.noise import backprojected_noise
from bilayer.data.synthetic.render import Bilayer, bilayer_density
from bilayer.errors import ConfigError

_SMALL = {"shape": (40, 56, 56), "voxel_size": 12.0}


def _look(**changes) -> Appearance:
    base = Appearance(single_band=True, band_fwhm=40.0, membrane_gain=1.0, ctf=False, resolution=None,
                      noise_tilts=0, bias=0.0, dense_cores=False)
    return Appearance(**{**base.__dict__, **changes})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_look_keeps_the_scene_geometry_and_labels(seed):
    plain = generate_tomogram(SynthConfig(**_SMALL), seed=seed)
    looked = generate_tomogram(SynthConfig(**_SMALL, appearance_probability=1.0), seed=seed)
    assert plain.params["appearance"] is None
    assert looked.params["appearance"] is not None
    np.testing.assert_array_equal(plain.labels, looked.labels)
    assert not np.allclose(plain.image, looked.image)
    assert [m["kind"] for m in plain.params["membranes"]] == [m["kind"] for m in looked.params["membranes"]]


def test_without_looks_the_appearance_ranges_change_nothing():
    a = generate_tomogram(SynthConfig(**_SMALL), seed=4)
    b = generate_tomogram(SynthConfig(**_SMALL, band_fwhm_range=(60.0, 70.0), resolution_range=(30.0, 31.0)), seed=4)
    np.testing.assert_array_equal(a.image, b.image)


def test_looks_are_drawn_with_the_configured_probability():
    config = SynthConfig(**_SMALL, appearance_probability=0.3)
    rng = np.random.default_rng(0)
    drawn = [draw_appearance(rng, config) for _ in range(2000)]
    share = np.mean([d is not None for d in drawn])
    assert 0.27 < share < 0.33
    looks = [d for d in drawn if d is not None]
    assert all(25.0 <= d.band_fwhm <= 55.0 for d in looks)
    assert all(8.0 <= d.resolution <= 40.0 for d in looks if d.resolution is not None)
    assert 0.5 < np.mean([d.single_band for d in looks]) < 0.7  # both renderings are common


def test_single_band_is_one_dark_band_of_the_drawn_width_with_the_same_label():
    bilayer = Bilayer(separation=40.0, width=11.0, label_half=25.5, outer=1.5, inner=1.3, core=-0.2)
    band = restyle_bilayer(np.random.default_rng(0), bilayer, _look(band_fwhm=40.0))
    assert band.label_half == bilayer.label_half
    d = np.linspace(-150, 150, 3001).astype(np.float32)
    rho = bilayer_density(d, band, voxel_size=1.0)  # a 1 Å voxel barely widens the band
    peaks = np.flatnonzero((rho[1:-1] > rho[:-2]) & (rho[1:-1] > rho[2:]))
    assert len(peaks) == 1 and abs(d[peaks[0] + 1]) < 0.2
    above = d[rho >= rho.max() / 2]
    assert 0.85 * 40.0 - 1 <= above[-1] - above[0] <= 1.15 * 40.0 + 1
    assert rho.max() == pytest.approx(bilayer.outer + bilayer.inner, rel=0.02)
    # the bilayer itself has two maxima, ±20 Å from the mid-surface
    two = bilayer_density(d, bilayer, voxel_size=1.0)
    assert len(np.flatnonzero((two[1:-1] > two[:-2]) & (two[1:-1] > two[2:]))) == 2
    # no look, or a bilayer look, leaves it as it is
    assert restyle_bilayer(np.random.default_rng(0), bilayer, None) is bilayer
    assert restyle_bilayer(np.random.default_rng(0), bilayer, _look(single_band=False)) is bilayer


def test_a_single_band_scene_shows_its_membranes_as_dark_bands():
    config = SynthConfig(shape=(48, 80, 80), voxel_size=14.0, appearance_probability=1.0, snr_range=(8.0, 10.0),
                         empty_probability=0.0, scene_type="in_vitro", invert_probability=0.0)
    seen = 0
    for seed in range(40):
        tomo = generate_tomogram(config, seed=seed)
        look = tomo.params["appearance"]
        if not look["single_band"] or (tomo.labels == 1).sum() < 500:
            continue
        seen += 1
        assert tomo.image[tomo.labels == 1].mean() < tomo.image[tomo.labels == 0].mean() - 0.3, seed
        if seen == 3:
            break
    assert seen == 3


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


def test_dense_cores_fill_vesicles_and_stay_off_membranes():
    shape, vs = (48, 48, 48), 10.0
    centre = np.array(shape) * vs / 2
    z, y, x = np.meshgrid(*[(np.arange(n) + 0.5) * vs for n in shape], indexing="ij")
    r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    distance = np.abs(r - 200.0).astype(np.float32)  # one vesicle membrane of radius 20 nm
    density = np.zeros(shape, np.float32)
    vesicle = {"kind": "vesicle", "center": centre.tolist(), "semi_axes": [200.0, 200.0, 200.0]}
    rng = np.random.default_rng(1)
    out = add_dense_cores(rng, density, distance, vs, [vesicle])
    core = out[0]
    assert core["kind"] == "dense_core" and core["count"] > 5
    assert np.allclose(core["center"], centre)
    assert density[r < 100].mean() > 0.1  # the lumen is dense
    assert np.abs(density[distance < 20]).max() < 0.15 * density.max()  # the membrane is left clear


def test_appearance_settings_are_checked():
    with pytest.raises(ConfigError, match="appearance_probability"):
        SynthConfig(appearance_probability=1.5)
    with pytest.raises(ConfigError, match="band_fwhm_range"):
        SynthConfig(band_fwhm_range=(50.0, 20.0))
    assert SynthConfig.from_dict(SynthConfig(appearance_probability=0.5).to_dict()).appearance_probability == 0.5
