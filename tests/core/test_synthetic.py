"""Tests of bilayer.data.synthetic: determinism, the output contract, sub-voxel label geometry,
the imaging physics (CTF, missing wedge) and configuration errors.

Expected values are computed independently of the generator: exact ellipsoid distances by root
finding, curve distances by brute force on a densely resampled curve, CTF zeros from the
quadratic in k², wedge membership from the tilt geometry.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize
import scipy.spatial
from bilayer.data.synthetic import (
    CtfMode,
    DistractorKind,
    MembraneKind,
    SceneType,
    SynthConfig,
    generate_patches,
    generate_tomogram,
)
from bilayer.data.synthetic.compose import MEMBRANE_BUILDERS, place_membrane
from bilayer.data.synthetic.curves import curve_field, random_curve
from bilayer.data.synthetic.fields import full_crop, normalise_distance
from bilayer.data.synthetic.imaging import (
    ImagingParams,
    ctf,
    edge_on_angle,
    electron_wavelength,
    missing_wedge_mask,
    simulate,
)
from bilayer.data.synthetic.membranes import Frame, ellipsoid_phi
from bilayer.data.synthetic.render import Bilayer, Canvas, bilayer_density
from bilayer.errors import BilayerError, ConfigError

SMALL = SynthConfig(shape=(40, 40, 40))


def _bilayer(separation: float = 40.0, width: float = 10.0, label_half: float = 25.0) -> Bilayer:
    return Bilayer(separation=separation, width=width, label_half=label_half, outer=1.5, inner=1.5, core=0.0)


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_tomograms():
    a = generate_tomogram(SMALL, seed=7)
    b = generate_tomogram(SMALL, seed=7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert a.params == b.params


def test_different_seeds_give_different_scenes():
    a = generate_tomogram(SMALL, seed=1)
    b = generate_tomogram(SMALL, seed=2)
    assert not np.array_equal(a.image, b.image)
    assert a.params != b.params


def test_patches_are_independent_of_n_and_differ():
    first = list(generate_patches(SMALL, 3, seed=11))
    again = list(generate_patches(SMALL, 2, seed=11))
    for p, q in zip(first[:2], again, strict=True):
        assert np.array_equal(p.image, q.image)
        assert np.array_equal(p.labels, q.labels)
    assert not np.array_equal(first[0].image, first[1].image)
    assert [p.params["patch"] for p in first] == [0, 1, 2]


def test_generation_does_not_touch_global_random_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    generate_tomogram(SMALL, seed=3)
    assert np.random.random() == expected


# ---------------------------------------------------------------- output contract


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("scene", [SceneType.LAMELLA, SceneType.IN_VITRO])
def test_output_contract(seed, scene):
    config = SynthConfig(shape=(36, 40, 44), scene_type=scene)
    t = generate_tomogram(config, seed=seed)
    assert t.image.shape == t.labels.shape == (36, 40, 44)
    assert t.image.dtype == np.float32 and np.all(np.isfinite(t.image))
    assert abs(float(t.image.mean())) < 1e-3 and abs(float(t.image.std()) - 1) < 1e-3
    assert t.labels.dtype == np.uint8 and set(np.unique(t.labels)) <= {0, 1, 2}
    assert config.voxel_size_range[0] <= t.voxel_size <= config.voxel_size_range[1]
    params = json.loads(json.dumps(t.params))
    assert params["voxel_size"] == pytest.approx(t.voxel_size, abs=1e-3)
    assert params["scene_type"] == scene.value
    assert {"defocus", "tilt_min", "tilt_max", "snr", "ctf_mode"} <= set(params["imaging"])
    lo, hi = config.snr_range
    assert lo <= params["imaging"]["snr"] <= hi


def test_fixed_voxel_size_is_used_and_recorded():
    t = generate_tomogram(SynthConfig(shape=(32, 32, 32), voxel_size=13.5), seed=4)
    assert t.voxel_size == 13.5
    assert t.params["voxel_size"] == 13.5


def test_ignore_label_is_sparse_and_membranes_present_over_seeds():
    membrane, ignore = [], []
    for t in generate_patches(SynthConfig(shape=(40, 40, 40)), 12, seed=21):
        membrane.append(np.mean(t.labels == 1))
        ignore.append(np.mean(t.labels == 2))
    assert np.mean(membrane) > 0.01
    assert np.mean(ignore) < 0.1 * np.mean(membrane)


def test_every_geometry_and_distractor_kind_appears():
    seen = set()
    for t in generate_patches(SMALL, 60, seed=0):
        seen |= {m["kind"] for m in t.params["membranes"]}
        seen |= {d["kind"] for d in t.params["distractors"] if d.get("count", 1) > 0}
    expected = {k.value for k in MembraneKind} | {k.value for k in DistractorKind}
    assert expected <= seen, f"never drawn: {sorted(expected - seen)}"


def test_empty_scenes_have_no_membrane_labels():
    t = generate_tomogram(SynthConfig(shape=(32, 32, 32), empty_probability=1.0), seed=2)
    assert t.params["membranes"] == []
    assert not np.any(t.labels == 1)


# ---------------------------------------------------------------- sub-voxel geometry


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


def test_label_band_is_continuous_at_20_angstrom():
    """Every line along z crossing a tilted plane hits the band at least twice (2.6 voxels thick)."""
    n, vs = 40, 20.0
    normal = np.array([0.9, 0.3, -0.2])
    normal /= np.linalg.norm(normal)
    crop = full_crop((n, n, n), vs)
    dz, dy, dx = crop.relative(np.array([n / 2 + 0.37, n / 2, n / 2]) * vs)
    phi = normal[0] * dz + normal[1] * dy + normal[2] * dx
    d, normals = normalise_distance(phi.astype(np.float32), vs)
    canvas = Canvas((n, n, n), vs, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    canvas.add_membrane(np.random.default_rng(0), crop, d, normals, _bilayer(label_half=26.0))
    per_column = canvas.band[4:-4].sum(axis=0)  # stay clear of the top and bottom faces
    assert per_column[8:-8, 8:-8].min() >= 2
    labels = scipy.ndimage.label(canvas.band)[1]
    assert labels == 1


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
    n, vs, separation = 48, 10.0, 42.0
    normal = np.array([0.3, -0.8, 0.52])
    normal /= np.linalg.norm(normal)
    crop = full_crop((n, n, n), vs)
    dz, dy, dx = crop.relative(np.array([n / 2 + 0.21, n / 2, n / 2]) * vs)
    exact = normal[0] * dz + normal[1] * dy + normal[2] * dx
    d, normals = normalise_distance(exact.astype(np.float32), vs)
    canvas = Canvas((n, n, n), vs, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    canvas.add_membrane(np.random.default_rng(0), crop, d, normals, _bilayer(separation=separation))
    bins = np.arange(-60.0, 61.0, 2.0)
    which = np.digitize(exact.ravel(), bins)
    mean = np.array([canvas.membrane_density.ravel()[which == i].mean() for i in range(1, len(bins))])
    centres = 0.5 * (bins[1:] + bins[:-1])
    assert centres[np.argmax(np.where(centres > 0, mean, -np.inf))] == pytest.approx(separation / 2, abs=3.0)
    assert centres[np.argmax(np.where(centres < 0, mean, -np.inf))] == pytest.approx(-separation / 2, abs=3.0)


@pytest.mark.parametrize("kind", list(MembraneKind))
def test_labels_sit_on_the_bilayer_density(kind):
    """For every geometry, the bilayer density lies in the label band, not beside it."""
    rng = np.random.default_rng(3)
    vs, shape = 10.0, (48, 48, 48)
    canvas = Canvas(shape, vs, tilt_range=(-60.0, 60.0), hidden_angle=90.0)
    extent = np.array(shape) * vs
    frame = Frame(
        shape, vs, SynthConfig(shape=shape), (0.0, extent[0]), (0.0, extent[0]), float("inf"), canvas.membrane_distance
    )
    inside = np.ones(shape, np.float32)
    summary = None
    for _ in range(10):
        summary = place_membrane(rng, frame, canvas, inside, MEMBRANE_BUILDERS[kind])
        if summary is not None:
            break
    assert summary is not None and summary["kind"] == kind.value
    density = np.clip(canvas.membrane_density, 0, None)
    near_band = scipy.ndimage.binary_dilation(canvas.band)
    assert density[near_band].sum() > 0.9 * density.sum()
    assert density[canvas.band].mean() > 5 * density[~near_band].mean()


# ---------------------------------------------------------------- imaging physics


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


# ---------------------------------------------------------------- configuration


def test_config_round_trips_through_json():
    config = SynthConfig(shape=(32, 48, 64), voxel_size=12.0, scene_type=SceneType.IN_VITRO, snr_range=(0.2, 2.0))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["scene_type"] == "in_vitro"
    assert SynthConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"snr_range": (0.0, 1.0)}, "snr_range"),
        ({"voxel_size_range": (20.0, 5.0)}, "voxel_size_range"),
        ({"shape": (8, 64, 64)}, "shape"),
        ({"voxel_size": -3.0}, "voxel_size"),
        ({"tilt_range": (45.0, 120.0)}, "tilt_range"),
        ({"membrane_count_range": (1, 2.5)}, "membrane_count_range"),
        ({"invert_probability": 1.5}, "invert_probability"),
        ({"label_thickness": 1.0}, "label_thickness"),
    ],
)
def test_config_errors_name_the_field_and_range(kwargs, field):
    with pytest.raises(ConfigError, match=field) as info:
        SynthConfig(**kwargs)
    assert isinstance(info.value, BilayerError)
    assert f"SynthConfig.{field}" in str(info.value)
    assert "[" in str(info.value) or "<=" in str(info.value)


def test_from_dict_rejects_unknown_keys_and_bad_scene_types():
    with pytest.raises(ConfigError, match="snr_rang"):
        SynthConfig.from_dict({"snr_rang": [0.1, 1.0]})
    with pytest.raises(ConfigError, match="lamella, in_vitro, or null"):
        SynthConfig.from_dict({"scene_type": "cryo"})


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seeds_are_config_errors(seed):
    with pytest.raises(ConfigError, match="seed"):
        generate_tomogram(SMALL, seed=seed)
    with pytest.raises(ConfigError, match="seed"):
        next(generate_patches(SMALL, 1, seed=seed))
