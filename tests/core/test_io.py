"""bilayer.io: MRC round trips, real crops, memory mapping, atomic and safe writes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from bilayer.errors import BilayerWarning, ConfigError, InputFileError, OutputError, VoxelSizeError
from bilayer.io import Volume, open_volume_writer, output_dtype, read_volume, write_volume

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


def test_volume_round_trip_with_anisotropic_voxels(tmp_path, rng):
    volume = Volume(_random_volume(rng, np.int16), voxel_size=(20.0, 10.0, 10.0), origin=(1.0, 2.0, 3.0))
    write_volume(tmp_path / "a.mrc", volume)
    back = read_volume(tmp_path / "a.mrc")
    assert back.voxel_size == pytest.approx((20.0, 10.0, 10.0))
    with pytest.raises(VoxelSizeError, match="anisotropic"):
        back.isotropic_voxel_size


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


def test_writing_never_overwrites_the_input(tmp_path, real_crops):
    path = real_crops["visfd"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    volume = read_volume(path)
    with pytest.raises(OutputError, match="is an input"):
        write_volume(path, volume, overwrite=True)
    with pytest.raises(OutputError, match="is an input"):
        write_volume(path, volume.data * 2, voxel_size=10, overwrite=True, protect=[path])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, rng):
    path = tmp_path / "out.mrc"
    write_volume(path, np.zeros((2, 3, 4), np.float32), voxel_size=5)
    with pytest.raises(OutputError, match="already exists"):
        write_volume(path, np.ones((2, 3, 4), np.float32), voxel_size=5)
    assert read_volume(path).data.max() == 0
    write_volume(path, np.ones((2, 3, 4), np.float32), voxel_size=5, overwrite=True)
    assert read_volume(path).data.min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]


def test_an_error_inside_a_streaming_write_leaves_no_file(tmp_path):
    path = tmp_path / "partial.mrc"
    with pytest.raises(RuntimeError):
        with open_volume_writer(path, (4, 8, 8), np.float32, 10.0) as writer:
            writer.write(0, np.ones((2, 8, 8), np.float32))
            raise RuntimeError("simulated crash")
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


def test_a_writer_killed_mid_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "killed.mrc"
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from bilayer.io import open_volume_writer
        with open_volume_writer({str(target)!r}, (50, 256, 256), np.float32, 10.0) as w:
            for z in range(50):
                w.write(z, np.ones((1, 256, 256), np.float32))
                if z == 10:
                    print("writing", flush=True)
                    time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -9
    assert list(tmp_path.iterdir()) == []


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


# ---- output groups: a tomogram's outputs appear together, or not at all ----

def test_an_output_group_publishes_together_the_first_file_last(tmp_path, monkeypatch):
    import bilayer.io.atomic as atomic
    from bilayer.io import HEADER_BYTES, open_volume_writer, output_group

    order = []
    original = atomic._publish
    monkeypatch.setattr(atomic, "_publish", lambda fd, part, path, overwrite: (order.append(path.name),
                                                                               original(fd, part, path, overwrite)))
    mask = np.arange(2 * 3 * 4, dtype=np.int8).reshape(2, 3, 4)
    with output_group() as group:
        with open_volume_writer(tmp_path / "t_seg.mrc", mask.shape, np.int8, 10.0, group=group) as w:
            w.write(0, mask)
        assert list(tmp_path.iterdir()) == []  # finished, not yet named
        np.testing.assert_array_equal(group.memmap(tmp_path / "t_seg.mrc", np.int8, mask.shape, HEADER_BYTES), mask)
        write_volume(tmp_path / "t_scores.mrc", mask.astype(np.float32), voxel_size=10.0, group=group)
        assert list(tmp_path.iterdir()) == []
    assert order == ["t_scores.mrc", "t_seg.mrc"]
    np.testing.assert_array_equal(read_volume(tmp_path / "t_seg.mrc").data, mask)


def test_an_error_in_a_group_leaves_none_of_its_files(tmp_path):
    from bilayer.io import output_group

    with pytest.raises(RuntimeError):
        with output_group() as group:
            write_volume(tmp_path / "a.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            write_volume(tmp_path / "b.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            raise RuntimeError("killed during post-processing")
    assert list(tmp_path.iterdir()) == []


def test_a_group_that_cannot_name_a_file_removes_those_it_named(tmp_path):
    from bilayer.errors import OutputError
    from bilayer.io import output_group

    with pytest.raises(OutputError, match="appeared while it was being written"):
        with output_group() as group:
            write_volume(tmp_path / "first.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            write_volume(tmp_path / "second.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            (tmp_path / "first.mrc").write_bytes(b"someone else's")  # appears while the group is open
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.mrc"]  # theirs, untouched; second.mrc removed
    assert (tmp_path / "first.mrc").read_bytes() == b"someone else's"


def test_a_full_disk_while_writing_is_an_output_error_naming_the_file(tmp_path, monkeypatch):
    import errno
    import os

    import bilayer.io.mrc_writer as mrc_writer
    from bilayer.errors import OutputError

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mrc_writer, "_pwrite_all", full)
    with pytest.raises(OutputError, match=r"cannot write .*v.mrc: No space left on device; free space"):
        write_volume(tmp_path / "v.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0)
    assert list(tmp_path.iterdir()) == []
