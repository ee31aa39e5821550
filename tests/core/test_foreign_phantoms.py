"""The hand-written foreign phantoms (tests/foreign_phantoms.py): geometry, labels, determinism."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.foreign_phantoms import (  # noqa: E402
    FAMILIES,
    FWHM,
    NOISE_SNR,
    RENDERINGS,
    VOXEL_SIZES,
    _grid,
    _labels,
    _plane,
    _render_membranes,
    _sphere,
    default_label_half_width,
    foreign_grid,
    foreign_set,
    make_phantom,
)


@pytest.mark.parametrize("voxel_size", VOXEL_SIZES)
def test_sphere_label_volume_is_area_times_thickness(voxel_size: float) -> None:
    rng = np.random.default_rng(3)
    hw = default_label_half_width(voxel_size)
    for radius in (150.0, 250.0, 350.0):
        n = int(2 * (radius + 3 * hw) / voxel_size) + 4
        grid = _grid((n, n, n), voxel_size)
        centre = rng.uniform(-0.5, 0.5, size=3) * voxel_size  # off the voxel lattice
        labels = _labels([_sphere(grid, centre, radius)], (n, n, n), hw)
        expected = 4 * np.pi * radius**2 * (2 * hw) / voxel_size**3
        assert np.count_nonzero(labels == 1) == pytest.approx(expected, rel=0.10)
        assert not np.any(labels == 2)


def test_sphere_phantom_labels_match_its_spheres() -> None:
    """Spheres of the phantom lying wholly inside the volume carry 4πR²T/voxel³ label voxels."""
    checked = 0
    for voxel_size in VOXEL_SIZES:
        p = make_phantom("sphere", "single", voxel_size, "low", seed=0)
        hw = p.params["label_half_width_A"]
        half = (np.array(p.labels.shape) - 1) / 2 * voxel_size
        grid = _grid(p.labels.shape, voxel_size)
        for centre, radius in zip(p.params["centres_A"], p.params["radii_A"]):
            centre = np.array(centre)
            if np.all(np.abs(centre) + radius + 2 * hw < half):
                near = np.abs(_sphere(grid, centre, radius)) <= 2 * hw
                expected = 4 * np.pi * radius**2 * (2 * hw) / voxel_size**3
                assert np.count_nonzero((p.labels == 1) & near) == pytest.approx(expected, rel=0.10)
                checked += 1
    assert checked >= 1


def test_label_is_at_least_one_and_a_half_voxels_thick() -> None:
    assert default_label_half_width(8.0) == 20.0
    assert default_label_half_width(40.0) == 30.0  # 0.75 voxel
    grid = _grid((1, 1, 64), 40.0)
    labels = _labels([_plane(grid, np.zeros(3), np.array([0.0, 0.0, 1.0]))], (1, 1, 64), 30.0)
    assert np.count_nonzero(labels == 1) >= 1.5


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_labels_lie_on_the_dark_band(family: str, rendering: str) -> None:
    p = make_phantom(family, rendering, 14.0, "low", seed=1)
    membrane = p.labels == 1
    background = p.labels == 0
    for key in ("lumen", "spikes", "core", "blobs"):  # plain background only
        if key in p.masks:
            background &= ~p.masks[key]
    assert membrane.sum() > 100
    assert p.image[membrane].mean() < p.image[background].mean() - 1.0


def test_profiles_single_band_and_two_lines_keep_their_mass() -> None:
    vs = 2.0
    d = (np.arange(-100, 101) * vs)[None, None, :]
    single, sp = _render_membranes([d], "single", np.random.default_rng(0), vs)
    double, dp = _render_membranes([d], "double", np.random.default_rng(0), vs)
    single, double = single.ravel(), double.ravel()
    assert abs(d.ravel()[np.argmax(single)]) <= vs
    left = d.ravel() < 0
    assert abs(abs(d.ravel()[left][np.argmax(double[left])]) - dp["line_offset_A"]) <= vs
    assert double[100] < 0.5 * double.max()  # resolved: bright between the lines
    # mass per unit area: σ√(2π) per Gaussian of peak 1, kept by anti-aliasing
    assert single.sum() * vs == pytest.approx(sp["band_fwhm_A"] / FWHM * np.sqrt(2 * np.pi), rel=1e-3)
    assert double.sum() * vs == pytest.approx(2 * dp["line_fwhm_A"] / FWHM * np.sqrt(2 * np.pi), rel=1e-3)


def test_crossing_sheets_are_ignored_where_they_meet() -> None:
    shape, vs, hw = (32, 32, 32), 10.0, 20.0
    grid = _grid(shape, vs)
    a = _plane(grid, np.zeros(3), np.array([1.0, 0.0, 0.0]))
    b = _plane(grid, np.zeros(3), np.array([0.0, 0.0, 1.0]))
    labels = _labels([a, b], shape, hw)
    ignore = labels == 2
    assert np.all(ignore == ((np.abs(a) <= 2 * hw) & (np.abs(b) <= 2 * hw)))
    assert np.all(labels[(np.abs(a) <= hw) & (np.abs(b) > 2 * hw)] == 1)


def test_same_seed_same_phantom_other_seed_differs() -> None:
    one = make_phantom("virion", "double", 14.0, "mid", seed=5)
    two = make_phantom("virion", "double", 14.0, "mid", seed=5)
    other = make_phantom("virion", "double", 14.0, "mid", seed=6)
    assert one.image.tobytes() == two.image.tobytes()
    assert one.labels.tobytes() == two.labels.tobytes()
    assert one.params == two.params
    assert not np.array_equal(one.labels, other.labels)
    assert not np.array_equal(one.image, other.image)


def test_renderings_and_noise_levels_share_the_geometry() -> None:
    a = make_phantom("tube", "single", 8.0, "low", seed=2)
    b = make_phantom("tube", "double", 8.0, "high", seed=2)
    assert np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, b.image)


@pytest.mark.parametrize("voxel_size", VOXEL_SIZES)
def test_virion_hard_negatives_are_not_labelled(voxel_size: float) -> None:
    p = make_phantom("virion", "single", voxel_size, "low", seed=0)
    assert p.params["spikes"] and all(20 <= n <= 40 for n in p.params["spikes"])
    for key in ("spikes", "core", "blobs"):
        assert p.masks[key].any(), key
        assert not np.any(p.labels[p.masks[key]] == 1), key
    assert not np.any(p.labels[p.masks["lumen"]] == 1)
    assert p.masks["core"].sum() > 0.1 * p.masks["lumen"].sum()  # a dense core, not a few grains
    assert p.image[p.masks["core"]].mean() < p.image[p.labels == 0].mean()  # dense is dark


@pytest.mark.parametrize("family", FAMILIES)
def test_image_is_standardised_and_labels_are_valid(family: str) -> None:
    p = make_phantom(family, "double", 20.0, "high", seed=3)
    assert p.image.dtype == np.float32 and p.image.shape == (64, 96, 96)
    assert p.labels.dtype == np.uint8 and p.labels.shape == p.image.shape
    assert abs(float(p.image.mean(dtype=np.float64))) < 1e-4
    assert float(p.image.std(dtype=np.float64)) == pytest.approx(1.0, abs=1e-4)
    assert set(np.unique(p.labels)) <= {0, 1, 2}
    assert p.params["noise_sigma"] ** 2 == pytest.approx(p.params["signal_var"] / NOISE_SNR["high"])


def test_full_grid_has_90_phantoms_of_the_named_families() -> None:
    grid = foreign_grid()
    assert len(grid) == 90 and len(set(grid)) == 90
    phantoms = foreign_set(seed=0, shape=(8, 16, 16))
    assert len(phantoms) == 90
    assert {p.family for p in phantoms} == set(FAMILIES) == {"sphere", "ellipsoid", "sheet", "tube", "virion"}
    assert {p.rendering for p in phantoms} == {"single", "double"}
    assert {p.voxel_size for p in phantoms} == {8.0, 14.0, 20.0}
    assert {p.noise for p in phantoms} == {"low", "mid", "high"}
    assert len({p.name for p in phantoms}) == 90
