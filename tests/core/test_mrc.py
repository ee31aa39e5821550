"""bilayer.io.mrc: real crops read right, memory-mapped, with NaN/Inf and voxel-size problems named."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from bilayer.errors import BilayerWarning, InputFileError, VoxelSizeError
from bilayer.io import read_volume, write_volume


def test_real_tardis_crop_reads_with_a_warning_as_unsigned_bytes(real_crop_paths):
    path = real_crop_paths["tardis"]
    with pytest.warns(BilayerWarning, match=path.name):
        volume = read_volume(path)
    assert volume.shape == (78, 64, 32)
    assert volume.data.dtype == np.uint8
    assert volume.voxel_size == pytest.approx((23.2, 23.2, 23.2), abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(path, permissive=True, header_only=True) as mrc:
            header = mrc.header.copy()
    # the file's own statistics describe unsigned bytes (its mean is the uncropped tomogram's)
    assert volume.data.min() == header.dmin and volume.data.max() == header.dmax
    assert float(volume.data.mean()) == pytest.approx(float(header.dmean), abs=1.0)


def test_real_visfd_crop_reads_strictly(real_crop_paths):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        volume = read_volume(real_crop_paths["visfd"])
    assert volume.shape == (16, 16, 16)
    assert volume.data.dtype == np.int16
    assert volume.voxel_size == pytest.approx((19.7333,) * 3, abs=1e-3)
    assert volume.origin == pytest.approx((700.533, -10648.7, -7995.95), abs=0.01)
    with mrcfile.open(real_crop_paths["visfd"]) as mrc:
        np.testing.assert_array_equal(volume.data, mrc.data)


def test_real_crop_round_trip_keeps_geometry(tmp_path, real_crop_paths):
    volume = read_volume(real_crop_paths["visfd"])
    back = read_volume(write_volume(tmp_path / "copy.rec", volume))
    np.testing.assert_array_equal(back.data, volume.data)
    assert back.voxel_size == pytest.approx(volume.voxel_size)
    assert back.origin == pytest.approx(volume.origin)


def test_read_is_memory_mapped_and_does_not_load_the_file(tmp_path):
    """A 512 MB tomogram: reading it (including the NaN scan) must not grow RSS by its size."""
    path = tmp_path / "big.mrc"
    shape = (128, 1024, 1024)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, fill=None) as mrc:
        mrc.voxel_size = 10.0
        mrc.data[64, 500, 500] = 7.0
    script = textwrap.dedent(
        f"""
        import resource, sys
        from bilayer.io import read_volume
        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        before = rss_mb()
        v = read_volume({str(path)!r})
        central = float(v.data[64].max())
        print(rss_mb() - before, central, type(v.data).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.split()
    growth_mb, central, kind = float(out[0]), float(out[1]), out[2]
    assert central == 7.0
    assert kind == "memmap"
    file_mb = path.stat().st_size / 1024**2
    assert growth_mb < 0.15 * file_mb, f"RSS grew by {growth_mb:.0f} MB reading a {file_mb:.0f} MB file"


def _write_header_and_data(path: Path, data: np.ndarray, voxel_size: float) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mrcfile's, while writing the bad file
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_errors(tmp_path, bad):
    data = np.zeros((4, 6, 6), np.float32)
    data[2, 3, 1] = bad
    _write_header_and_data(tmp_path / "bad.mrc", data, 10.0)
    with pytest.raises(InputFileError, match=r"bad\.mrc contains NaN or Inf .* z=2"):
        read_volume(tmp_path / "bad.mrc")


@pytest.mark.parametrize("voxel_size", [0.0, None])
def test_missing_voxel_size_is_an_error_unless_given(tmp_path, voxel_size):
    path = tmp_path / "novs.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((3, 4, 5), np.float32))
        if voxel_size is None:
            mrc.header.mx = 0  # no sampling: the voxel size cannot be computed at all
        else:
            mrc.voxel_size = voxel_size
    with pytest.raises(VoxelSizeError, match=r"novs\.mrc .*--voxel-size"):
        read_volume(path)
    assert read_volume(path, voxel_size=14.0).voxel_size == (14.0, 14.0, 14.0)


def test_one_angstrom_header_warns(tmp_path):
    _write_header_and_data(tmp_path / "one.mrc", np.zeros((3, 4, 5), np.float32), 1.0)
    with pytest.warns(BilayerWarning, match="1 Å"):
        read_volume(tmp_path / "one.mrc")


@pytest.mark.parametrize("bad_size", [0.0, -3.0, float("nan")])
def test_a_bad_given_voxel_size_is_refused(real_crop_paths, bad_size):
    with pytest.raises(VoxelSizeError, match="positive"):
        read_volume(real_crop_paths["visfd"], voxel_size=bad_size)


def test_non_mmap_read_gives_the_same_array(real_crop_paths):
    a = read_volume(real_crop_paths["visfd"])
    b = read_volume(real_crop_paths["visfd"], mmap=False)
    assert not isinstance(b.data, np.memmap)
    np.testing.assert_array_equal(a.data, b.data)


def test_read_tomogram_refuses_an_implausible_header_voxel_size_in_one_error_not_a_warning_too(tmp_path):
    from bilayer.io import read_tomogram

    path = write_volume(tmp_path / "unset.mrc", np.zeros((4, 4, 4), np.float32), voxel_size=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(VoxelSizeError, match=r"unset\.mrc: header voxel size 1 Å .* --voxel-size"):
            read_tomogram(path)
        assert read_tomogram(path, voxel_size=9.0).voxel_size == (9.0, 9.0, 9.0)
    assert read_tomogram(write_volume(tmp_path / "ok.mrc", np.zeros((4, 4, 4), np.float32), voxel_size=12.0)
                         ).voxel_size == (12.0, 12.0, 12.0)
