"""bilayer.io.volume: a Volume checks its geometry, knows cubic voxels, and passes them to derived data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bilayer.errors import ConfigError, VoxelSizeError
from bilayer.io import Volume, as_voxel_size, read_volume, write_volume


def test_volume_round_trip_with_anisotropic_voxels(tmp_path, rng):
    data = rng.integers(-32768, 32768, (7, 9, 11)).astype(np.int16)
    volume = Volume(data, voxel_size=(20.0, 10.0, 10.0), origin=(1.0, 2.0, 3.0))
    write_volume(tmp_path / "a.mrc", volume)
    back = read_volume(tmp_path / "a.mrc")
    assert back.voxel_size == pytest.approx((20.0, 10.0, 10.0))
    with pytest.raises(VoxelSizeError, match="anisotropic"):
        back.isotropic_voxel_size


def test_a_voxel_size_is_one_number_or_three_all_positive():
    assert as_voxel_size(12) == (12.0, 12.0, 12.0) and type(as_voxel_size(12)[0]) is float
    assert as_voxel_size(np.float32(7.5)) == (7.5, 7.5, 7.5)
    assert as_voxel_size([20, 10.0, 10.5]) == (20.0, 10.0, 10.5)
    for bad in (0.0, -3.0, float("nan"), float("inf"), (10.0, 0.0, 10.0)):
        with pytest.raises(VoxelSizeError, match=r"header of t\.mrc .* is not a positive number; .*--voxel-size"):
            as_voxel_size(bad, source="header of t.mrc")
    with pytest.raises(ConfigError, match="expected one value or three .* got 2"):
        as_voxel_size((10.0, 10.0))


def test_a_volume_checks_its_geometry_and_reports_its_shape():
    volume = Volume(np.zeros((2, 3, 4), np.float32), voxel_size=10, origin=[1, 2, 3])
    assert volume.voxel_size == (10.0, 10.0, 10.0) and volume.origin == (1.0, 2.0, 3.0)
    assert volume.shape == (2, 3, 4) and volume.isotropic_voxel_size == 10.0
    assert volume.path is None
    with pytest.raises(ConfigError, match=r"3-D .* got shape \(3, 4\)"):
        Volume(np.zeros((3, 4)), voxel_size=10)
    with pytest.raises(ConfigError, match="origin must be"):
        Volume(np.zeros((2, 3, 4)), voxel_size=10, origin=(0.0, 0.0))
    with pytest.raises(VoxelSizeError):
        Volume(np.zeros((2, 3, 4)), voxel_size=-1)


def test_nearly_cubic_voxels_are_cubic_and_the_error_names_the_file():
    assert Volume(np.zeros((1, 1, 1)), voxel_size=(10.005, 10.0, 10.0)).isotropic_voxel_size == 10.0
    skewed = Volume(np.zeros((1, 1, 1)), voxel_size=(10.2, 10.0, 10.0), path=Path("tomo.mrc"))
    with pytest.raises(VoxelSizeError, match=r"voxel size of tomo\.mrc is anisotropic"):
        skewed.isotropic_voxel_size


def test_with_data_keeps_the_geometry_and_forgets_the_file():
    volume = Volume(np.zeros((2, 3, 4), np.float32), voxel_size=(8.0, 8.0, 8.0), origin=(5.0, 6.0, 7.0),
                    path=Path("tomo.mrc"))
    mask = np.ones((2, 3, 4), np.int8)
    derived = volume.with_data(mask)
    assert derived.data is mask and derived.path is None
    assert derived.voxel_size == volume.voxel_size and derived.origin == volume.origin
    with pytest.raises(ConfigError, match=r"shape \(2, 3\), the volume has \(2, 3, 4\)"):
        volume.with_data(np.zeros((2, 3)))


def test_a_header_voxel_size_outside_what_tomograms_have_is_refused_unless_given():
    from bilayer.io import PLAUSIBLE_VOXEL_SIZE, check_plausible_voxel_size

    low, high = PLAUSIBLE_VOXEL_SIZE
    for size in (low, 10.0, high):
        check_plausible_voxel_size(Volume(np.zeros((2, 2, 2), np.float32), size, path=Path("t.mrc")), given=False)
    for size in (1.0, low * 0.99, high * 1.01):
        volume = Volume(np.zeros((2, 2, 2), np.float32), size, path=Path("t.mrc"))
        with pytest.raises(VoxelSizeError, match=r"t\.mrc: header voxel size .* --voxel-size"):
            check_plausible_voxel_size(volume, given=False)
        check_plausible_voxel_size(volume, given=True)
