"""Tests of bilayer.data.synthetic.appearance: a drawn look changes how a scene looks, never
what it contains, and each appearance family does what it says (one dark band, dense cores off
the membranes). The fringe-free CTF and the back-projected noise that looks also draw are tested
with their modules (test_synthetic_imaging.py, test_synthetic_noise.py)."""

from __future__ import annotations

import numpy as np
import pytest
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.data.synthetic.appearance import Appearance, add_dense_cores, draw_appearance, restyle_bilayer
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
