"""bilayer.surfaces.thickness: the distance between a membrane's two leaflet minima along its normals,
against exact answers: hand-written phantoms of two dark Gaussian sheets (flat and spherical) at known
separations, the synthetic generator's bilayers with leaflets 40 Å apart, and, as unresolved, its
single-band look and pure noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bilayer.data.synthetic import SynthConfig, generate_tomogram
from bilayer.errors import ConfigError
from bilayer.io.volume import Volume
from bilayer.postprocess.components import connected_components
from bilayer.surfaces.extract import membrane_meshes
from bilayer.surfaces.mesh import Mesh
from bilayer.surfaces.thickness import membrane_thickness
from scipy import ndimage

VOXEL = 10.0  # Å
LEAFLET_SIGMA = 6.0  # Å, one head-group sheet's Gaussian
ORIGIN = (-300.0, 150.0, 40.0)  # (z, y, x) Å: the tomogram is not at zero


def _noise(shape, seed, amplitude):
    """Noise correlated over about a voxel, of standard deviation ``amplitude``."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.0)
    return amplitude * noise / noise.std()


def _two_sheets(distance, separation):
    """Density of two dark Gaussian sheets at ``distance = ±separation / 2`` (dense is dark)."""
    return -sum(np.exp(-0.5 * ((distance - s) / LEAFLET_SIGMA) ** 2) for s in (separation / 2, -separation / 2))


def _flat_membrane(separation, noise=0.3, seed=0):
    """A sheet mesh at z = 20 voxels and a tomogram of two dark sheets around z = 20.3 voxels."""
    band = np.zeros((40, 48, 48), dtype=bool)
    band[18:23] = True
    (mesh,) = membrane_meshes(band, VOXEL, ORIGIN)
    z = np.arange(band.shape[0]) * VOXEL - 20.3 * VOXEL
    image = np.broadcast_to(_two_sheets(z, separation)[:, None, None], band.shape) + _noise(band.shape, seed, noise)
    return mesh, Volume(image.astype(np.float32), (VOXEL,) * 3, ORIGIN)


@pytest.mark.parametrize("separation", [35.0, 40.0, 50.0])
def test_two_flat_dark_sheets_give_their_separation(separation):
    mesh, tomogram = _flat_membrane(separation)
    result = membrane_thickness(mesh, tomogram)
    assert result.membrane_resolved
    assert result.membrane_thickness == pytest.approx(separation, abs=2.0)  # 0.2 nm
    assert result.resolved.mean() > 0.95
    assert np.nanmedian(result.thickness) == pytest.approx(separation, abs=2.0)
    assert np.all(np.isnan(result.thickness[~result.resolved]))
    # the mean profile's two minima lie at ±separation / 2 around the sheets' middle (+3 Å along the normals)
    normal_z = np.sign(mesh.vertex_normals()[:, 2].mean())
    positions, profile = result.profile_positions, result.profile
    middle = np.argmin(np.abs(positions - 3.0 * normal_z))
    minima = [positions[:middle][np.argmin(profile[:middle])], positions[middle:][np.argmin(profile[middle:])]]
    assert minima[1] - minima[0] == pytest.approx(separation, abs=VOXEL / 2 + 1)


def test_inverted_contrast_is_read_with_dense_dark_off():
    mesh, tomogram = _flat_membrane(45.0)
    bright = tomogram.with_data(-tomogram.data)
    result = membrane_thickness(mesh, bright, dense_dark=False)
    assert result.membrane_resolved and result.membrane_thickness == pytest.approx(45.0, abs=2.0)
    assert not membrane_thickness(mesh, bright).membrane_resolved  # two bright sheets are not two minima
    np.testing.assert_allclose(result.profile, -membrane_thickness(mesh, tomogram).profile, atol=1e-6)


def test_a_spherical_bilayer_gives_its_separation_everywhere_on_a_closed_mesh():
    shape, centre, radius, separation = (56, 56, 56), np.array([28.2, 27.7, 28.4]), 18.0, 40.0
    r = np.linalg.norm(np.indices(shape, dtype=np.float64) - centre[:, None, None, None], axis=0)
    (mesh,) = membrane_meshes(np.abs(r - radius) <= 2.0, VOXEL)
    assert mesh.closed
    image = _two_sheets((r - radius) * VOXEL, separation) + _noise(shape, 1, 0.3)
    result = membrane_thickness(mesh, Volume(image.astype(np.float32), (VOXEL,) * 3))
    assert result.membrane_resolved and result.membrane_thickness == pytest.approx(separation, abs=2.0)
    assert result.resolved.mean() > 0.95
    assert np.nanmedian(result.thickness) == pytest.approx(separation, abs=2.0)


def _synthetic(seed, **config):
    settings = {"shape": (64, 64, 64), "voxel_size": VOXEL, "leaflet_separation_range": (40.0, 40.0),
                "invert_probability": 0.0, "defocus_range_um": (1.5, 3.0)}
    tomogram = generate_tomogram(SynthConfig(**{**settings, **config}), seed)
    components = connected_components(tomogram.labels == 1, min_size=500)
    meshes = [m for m in membrane_meshes(components.labels, VOXEL) if m.vertex_count >= 1000]
    assert meshes
    return tomogram, meshes, Volume(tomogram.image, (VOXEL,) * 3)


def test_the_generators_bilayers_with_leaflets_4_nm_apart_measure_4_nm():
    tomogram, meshes, volume = _synthetic(1)
    assert tomogram.params["appearance"] is None and not tomogram.params["imaging"]["inverted"]
    for mesh in meshes:
        result = membrane_thickness(mesh, volume)
        assert result.membrane_resolved
        assert result.membrane_thickness == pytest.approx(40.0, abs=5.0)  # 4 ± 0.5 nm
        assert result.resolved.mean() > 0.8
        assert np.nanmedian(result.thickness) == pytest.approx(40.0, abs=5.0)
        assert np.all(result.quality[result.resolved] >= 4.0)


def test_the_generators_single_band_membranes_are_unresolved():
    tomogram, meshes, volume = _synthetic(2, appearance_probability=1.0)
    assert tomogram.params["appearance"]["single_band"]
    for mesh in meshes:
        result = membrane_thickness(mesh, volume)
        assert not result.membrane_resolved and math.isnan(result.membrane_thickness)
        assert result.resolved.mean() < 0.02
        assert np.isnan(result.thickness[~result.resolved]).all()


def test_pure_noise_around_a_mesh_is_unresolved():
    mesh, tomogram = _flat_membrane(40.0)
    for seed in range(3):
        noise = tomogram.with_data(_noise(tomogram.shape, 10 + seed, 1.0).astype(np.float32))
        result = membrane_thickness(mesh, noise)
        assert not result.membrane_resolved and math.isnan(result.membrane_thickness)
        assert result.resolved.mean() < 0.05


def test_a_mesh_outside_the_tomogram_has_no_profile():
    mesh, tomogram = _flat_membrane(40.0)
    away = Mesh(mesh.vertices + 1e5, mesh.faces)
    result = membrane_thickness(away, tomogram)
    assert not result.resolved.any() and np.isnan(result.thickness).all() and np.isnan(result.quality).all()
    assert np.isnan(result.profile).all() and not result.membrane_resolved


def test_vertex_values_go_on_the_mesh():
    mesh, tomogram = _flat_membrane(40.0)
    result = membrane_thickness(mesh, tomogram)
    measured = mesh.with_values(**result.vertex_values())
    np.testing.assert_array_equal(measured.values["thickness_resolved"], result.resolved.astype(float))
    assert len(result.profile) == len(result.profile_positions) == 2 * round(80.0 / (VOXEL / 2)) + 1


@pytest.mark.parametrize("option", [{"neighbourhood": 20.0}, {"half_width": 15.0}, {"step": 0.0},
                                    {"min_contrast": -1.0}, {"dense_dark": "yes"}])
def test_bad_options_are_refused_by_name(option):
    mesh, tomogram = _flat_membrane(40.0)
    with pytest.raises(ConfigError, match=next(iter(option))):
        membrane_thickness(mesh, tomogram, **option)
