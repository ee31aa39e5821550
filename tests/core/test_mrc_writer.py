"""bilayer.io.mrc_writer: every mode and suffix round-trips, headers are MRC2014, slab writes must cover the volume."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from bilayer.errors import ConfigError
from bilayer.io import open_volume_writer, output_dtype, read_volume, write_volume


DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.float16, np.float32]


SUFFIXES = [".mrc", ".rec", ".map", ".st", ".ccp4", ".mrcs"]


def _random_volume(rng: np.random.Generator, dtype: type, shape=(7, 9, 11)) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(3.0, 10.0, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_keeps_data_dtype_voxel_size_and_origin(tmp_path, rng, dtype, suffix):
    data = _random_volume(rng, dtype)
    path = tmp_path / f"vol{suffix}"
    write_volume(path, data, voxel_size=(12.5, 7.25, 3.0), origin=(-4.0, 100.5, 2.25))
    volume = read_volume(path)
    assert volume.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size == pytest.approx((12.5, 7.25, 3.0))
    assert volume.origin == pytest.approx((-4.0, 100.5, 2.25))
    assert volume.path == path


@pytest.mark.parametrize("suffix", [".mrc", ".mrcs"])
def test_written_files_are_valid_mrc2014_for_mrcfile(tmp_path, rng, suffix, capsys):
    data = _random_volume(rng, np.float32)
    path = write_volume(tmp_path / f"v{suffix}", data, voxel_size=8.0)
    assert mrcfile.validate(str(path)), capsys.readouterr().out
    with mrcfile.open(path) as mrc:
        np.testing.assert_array_equal(mrc.data, data)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)
        assert mrc.header.dmax == pytest.approx(data.max())
        assert mrc.header.rms == pytest.approx(data.std(), rel=1e-4)
        assert b"Bilayer" in bytes(mrc.header.label[0])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[[True, False]]]), np.int8),
        (np.array([[[0, 1, 2]]], dtype=np.int64), np.int8),
        (np.array([[[0, 1000]]], dtype=np.int64), np.int16),
        (np.array([[[0, 60000]]], dtype=np.int64), np.uint16),
        (np.array([[[0.5]]], dtype=np.float64), np.float32),
        (np.array([[[0.5]]], dtype=np.float16), np.float16),
    ],
)
def test_output_dtype_chooses_a_sensible_mode(values, expected):
    assert output_dtype(values) == np.dtype(expected)


def test_output_dtype_refuses_what_mrc_cannot_hold():
    with pytest.raises(ConfigError, match="float32"):
        output_dtype(np.array([[[0, 2**40]]]))
    with pytest.raises(ConfigError, match="MRC files cannot hold"):
        output_dtype(np.zeros((1, 1, 1)), np.float64)


def test_masks_are_written_as_int8(tmp_path):
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1:3] = True
    write_volume(tmp_path / "m.mrc", mask, voxel_size=10)
    with mrcfile.open(tmp_path / "m.mrc") as mrc:
        assert int(mrc.header.mode) == 0
        np.testing.assert_array_equal(mrc.data, mask.astype(np.int8))


def test_writing_values_that_do_not_fit_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(ConfigError, match="do not fit"):
        write_volume(tmp_path / "x.mrc", np.full((2, 2, 2), 300.0), voxel_size=1.5, dtype=np.int8)
    assert list(tmp_path.iterdir()) == []


def test_a_streaming_write_with_missing_sections_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="never written"):
        with open_volume_writer(tmp_path / "x.mrc", (4, 8, 8), np.float32, 10.0) as writer:
            writer.write(0, np.ones((3, 8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_slabs_can_arrive_in_any_order(tmp_path, rng):
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    with open_volume_writer(tmp_path / "s.mrc", data.shape, np.float32, 10.0) as writer:
        writer.write(3, data[3:])
        writer.write(0, data[:3])
    np.testing.assert_array_equal(read_volume(tmp_path / "s.mrc").data, data)
