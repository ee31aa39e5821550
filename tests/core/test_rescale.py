"""bilayer.preprocess.rescale: MemBrain-seg's pixel-size matching out of core."""

from __future__ import annotations

import os
import subprocess
import sys

import bilayer.preprocess.rescale as module
import numpy as np
import pytest
import scipy.fft
from bilayer.errors import BilayerError, ConfigError, InputFileError, OutputError, VoxelSizeError
from bilayer.io import read_volume, write_volume
from bilayer.io.volume import PLAUSIBLE_VOXEL_SIZE
from bilayer.preprocess.rescale import rescale_file, rescale_volume, rescaled_shape, smooth_edge_mask
from scipy import ndimage


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def _membrain_edge(shape) -> np.ndarray:
    """MemBrain-seg's cosine_ellipsoid_filter written out plainly (scipy's distance transform, whole grid)."""
    index = np.indices(shape)
    terms = [((index[a] - n // 2) / ((n - 25) * 0.5)) ** 2 for a, n in enumerate(shape)]
    inside = np.sqrt((terms[2] + terms[1]) + terms[0]) <= 1  # its arrays are (x, y, z)
    distance = ndimage.distance_transform_edt(~inside)
    edge = np.where((distance > 0) & (distance <= 12), 0.5 * (1 + np.cos(np.pi * distance / 12)), 0.0)
    return inside + edge


def _membrain_rule(volume: np.ndarray, shape, smooth: bool) -> np.ndarray:
    """MemBrain-seg's crop / mask / pad of the whole centred spectrum, one side of each Nyquist, real part."""
    spectrum = np.fft.fftshift(np.fft.fftn(volume.astype(np.float64)))
    grid = [min(n, m) for n, m in zip(volume.shape, shape)]
    spectrum = spectrum[tuple(slice((n - g) // 2, (n - g) // 2 + g) for n, g in zip(volume.shape, grid))]
    if smooth:
        spectrum = spectrum * _membrain_edge(grid)
    spectrum = np.pad(spectrum, [(m // 2 - g // 2, m - g - (m // 2 - g // 2)) for g, m in zip(grid, shape)])
    return _zscore(np.fft.ifftn(np.fft.ifftshift(spectrum)).real)


def _band_matrix(n: int, m: int) -> np.ndarray:
    """Fourier crop (m < n) or zero-pad (m > n) of one axis as an (m, n) matrix in FFT order, an
    even-length Nyquist shared half and half between its two sides."""
    matrix = np.zeros((m, n))
    for j, f in enumerate(np.fft.fftfreq(n, 1 / n).round().astype(int)):
        if m > n and n % 2 == 0 and f == -n // 2:  # the old Nyquist, split over -n/2 and +n/2
            matrix[(-n // 2) % m, j] = matrix[(n // 2) % m, j] = 0.5
        elif m < n and m % 2 == 0 and abs(f) == m // 2:  # both sides into the new Nyquist, half each
            matrix[(-m // 2) % m, j] += 0.5
        elif -(min(n, m) // 2) <= f <= (min(n, m) - 1) // 2:
            matrix[f % m, j] = 1.0
    return matrix


def _whole_volume_resample(volume: np.ndarray, shape) -> np.ndarray:
    """The 3-D crop or pad of the whole spectrum (numpy's fftn of the whole volume, float64)."""
    spectrum = np.fft.fftn(volume.astype(np.float64))
    for axis, (n, m) in enumerate(zip(volume.shape, shape)):
        spectrum = np.moveaxis(np.tensordot(_band_matrix(n, m), np.moveaxis(spectrum, axis, 0), axes=1), 0, axis)
    return _zscore(np.fft.ifftn(spectrum).real)


@pytest.fixture
def small_slabs(monkeypatch):
    """A work budget of a few kB: every pass runs over many slabs and blocks."""
    monkeypatch.setattr(module, "_WORK_BYTES", 20_000)


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("shape, voxel_sizes, expected", [
    ((63, 64, 65), (16, 10), (102, 102, 104)),  # 100.8 → 101 → 102; 102.4 → 102; 104
    ((200, 512, 512), (8, 10), (160, 410, 410)),  # 409.6 → 410
    ((5, 7, 9), (5, 10), (2, 4, 4)),  # 2.5 → 2 (half to even); 3.5 → 4; 4.5 → 4
])
def test_the_new_shape_is_membrains_rounded_even_rule(shape, voxel_sizes, expected):
    assert rescaled_shape(shape, *voxel_sizes) == expected


@pytest.mark.parametrize("shape, new", [
    ((16, 18, 20), (26, 30, 32)),  # up, even
    ((15, 17, 21), (24, 28, 34)),  # up, odd
    ((24, 26, 30), (14, 16, 18)),  # down, even
    ((25, 27, 31), (16, 18, 20)),  # down, odd
    ((21, 20, 22), (20, 24, 22)),  # mixed: down, up, equal
])
def test_one_axis_at_a_time_over_slabs_is_the_whole_volume_transform(shape, new, small_slabs):
    volume = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32) + 3
    got = rescale_volume(volume, new, smooth_edge=False)
    assert got.shape == new and got.dtype == np.float32
    np.testing.assert_allclose(got, _whole_volume_resample(volume, new), atol=2e-5)


@pytest.mark.parametrize("shape, new", [((30, 34, 40), (48, 54, 64)), ((31, 33, 41), (50, 52, 66)),
                                        ((41, 45, 51), (32, 36, 40)), ((40, 31, 44), (38, 32, 46))])
def test_with_the_smooth_edge_it_is_membrains_one_sided_crop_or_pad(shape, new, small_slabs):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(rescale_volume(volume, new), _membrain_rule(volume, new, smooth=True), atol=2e-5)


def test_without_the_edge_only_the_double_nyquist_bins_differ_from_membrains_rule():
    volume = np.random.default_rng(1).normal(size=(20, 24, 28)).astype(np.float32)  # white: the worst case
    got, membrain = rescale_volume(volume, (32, 38, 44), smooth_edge=False), _membrain_rule(volume, (32, 38, 44), False)
    assert np.abs(got - membrain).max() > 1e-3 and np.corrcoef(got.ravel(), membrain.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("shape", [(26, 30, 40), (27, 33, 41), (40, 31, 29)])
def test_the_smooth_edge_is_membrains_ellipsoid_with_a_cosine_edge(shape):
    mask = smooth_edge_mask(shape)
    np.testing.assert_allclose(mask, _membrain_edge(shape), atol=1e-7)
    centre = tuple(n // 2 for n in shape)
    assert mask[centre] == 1.0 and mask[0].max() == mask[:, 0].max() == mask[:, :, 0].max() == 0.0
    assert np.any((mask > 0) & (mask < 1))
    with pytest.raises(ConfigError, match="more than 25 voxels.*--no-smooth-edge"):
        smooth_edge_mask((25, 40, 40))


def test_the_file_gets_the_target_voxel_size_the_origin_and_the_rules_shape(tmp_path, small_slabs):
    data = np.random.default_rng(2).normal(size=(30, 34, 40)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=16.0, origin=(10.0, 20.0, 30.0))
    written = rescale_file(tomo, None, 10.0)
    assert written == tmp_path / "t_rescaled.mrc"
    out = read_volume(written)
    assert out.shape == (48, 54, 64) and out.data.dtype == np.float32
    assert out.voxel_size == (10.0, 10.0, 10.0) and out.origin == (10.0, 20.0, 30.0)
    np.testing.assert_allclose(out.data, rescale_volume(data, (48, 54, 64)), atol=1e-6)
    assert abs(float(out.data.mean())) < 1e-5 and abs(float(out.data.std()) - 1) < 1e-5
    (tmp_path / "sub").mkdir()
    assert rescale_file(tomo, tmp_path / "sub", 20.0, smooth_edge=False) == tmp_path / "sub" / "t_rescaled.mrc"
    assert read_volume(tmp_path / "sub" / "t_rescaled.mrc").shape == (24, 28, 32)


def test_an_integer_tomogram_with_a_large_offset_keeps_float32_precision(tmp_path):
    rng = np.random.default_rng(5)
    data = (rng.normal(size=(30, 32, 34)) * 20 + 20000).astype(np.int16)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=12.0)
    got = read_volume(rescale_file(tomo, tmp_path / "r.mrc", 10.0)).data
    np.testing.assert_allclose(got, _membrain_rule(data.astype(np.float64), got.shape, smooth=True), atol=1e-4)


def test_the_same_voxel_size_writes_the_zscored_tomogram_as_membrain_does(tmp_path):
    data = np.random.default_rng(3).normal(size=(12, 14, 16)).astype(np.float32) * 5 + 2
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=10.0)
    out = read_volume(rescale_file(tomo, tmp_path / "same.mrc", 10.0))
    np.testing.assert_allclose(out.data, _zscore(data.astype(np.float64)), atol=1e-5)


def test_a_header_of_1_angstrom_needs_the_input_voxel_size(tmp_path):
    data = np.random.default_rng(4).normal(size=(26, 30, 30)).astype(np.float32)
    tomo = write_volume(tmp_path / "t.mrc", data, voxel_size=1.0)
    with pytest.raises(VoxelSizeError, match=r"t.mrc: header voxel size 1 Å .* --voxel-size"):
        rescale_file(tomo, None, 10.0)
    out = read_volume(rescale_file(tomo, None, 10.0, input_voxel_size=20.0, smooth_edge=False))
    assert out.shape == (52, 60, 60) and out.voxel_size == (10.0, 10.0, 10.0)


@pytest.mark.parametrize("case, error, words", [
    ("target too small", ConfigError, r"target voxel size \(Å\)=0.5 is out of range"),
    ("target too large", ConfigError, r"target voxel size \(Å\)=500.0 is out of range"),
    ("output is the input", OutputError, "is an input"),
    ("output exists", OutputError, "already exists"),
    ("fewer than 2 voxels", ConfigError, "fewer than 2 voxels"),
    ("edge on a small grid", ConfigError, "--no-smooth-edge"),
    ("one value everywhere", InputFileError, "same value everywhere"),
    ("not a tomogram", InputFileError, "not a readable MRC file"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, case, error, words):
    data = np.random.default_rng(6).normal(size=(4, 40, 40) if case == "fewer than 2 voxels" else (40, 40, 40))
    data = np.full((40, 40, 40), 3.0) if case == "one value everywhere" else data
    tomo = write_volume(tmp_path / "t.mrc", data.astype(np.float32), voxel_size=2.0 if "2 voxels" in case else 8.0)
    if case == "not a tomogram":
        tomo.write_bytes(b"not an MRC file")
    if case == "output exists":
        (tmp_path / "t_rescaled.mrc").write_bytes(b"keep me")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    destination = tomo if case == "output is the input" else None
    target = {"target too small": 0.5, "target too large": 500.0, "fewer than 2 voxels": 100.0,
              "edge on a small grid": 90.0}.get(case, 10.0)
    with pytest.raises(error, match=words) as caught:
        rescale_file(tomo, destination, target, overwrite=case == "output is the input")
    assert "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_target_range_is_the_plausible_voxel_size_range(tmp_path):
    tomo = write_volume(tmp_path / "t.mrc", np.random.default_rng(7).normal(size=(30, 30, 30)).astype(np.float32),
                        voxel_size=PLAUSIBLE_VOXEL_SIZE[0])
    rescale_file(tomo, tmp_path / "low.mrc", PLAUSIBLE_VOXEL_SIZE[0])
    with pytest.raises(ConfigError, match=f"in \\[{PLAUSIBLE_VOXEL_SIZE[0]:g}, {PLAUSIBLE_VOXEL_SIZE[1]:g}\\]"):
        rescale_file(tomo, tmp_path / "high.mrc", PLAUSIBLE_VOXEL_SIZE[1] * 1.01)


def test_a_disk_too_small_for_spectrum_and_output_is_refused_first(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    tomo = write_volume(tmp_path / "t.mrc", np.random.default_rng(8).normal(size=(30, 30, 30)).astype(np.float32),
                        voxel_size=16.0)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10**12, 0, 10**6))
    with pytest.raises(OutputError, match=r"output .* MB, temporary spectrum .* free; free some space"):
        rescale_file(tomo, None, 10.0)
    assert _listing(tmp_path) == ["t.mrc"]


def test_an_interrupt_leaves_no_temporary_file_and_no_output(tmp_path, monkeypatch):
    tomo = write_volume(tmp_path / "t.mrc", np.random.default_rng(9).normal(size=(30, 30, 30)).astype(np.float32),
                        voxel_size=16.0)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def open_in(folder) -> list[str]:  # an anonymous temporary file shows as '<folder>/#inode (deleted)'
        links = (os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                 if os.path.islink(f"/proc/self/fd/{fd}"))
        return [link for link in links if link.startswith(str(folder))]

    monkeypatch.setattr(scipy.fft, "irfft2", interrupted)  # the last pass, after the spectrum is written
    with pytest.raises(KeyboardInterrupt):
        rescale_file(tomo, None, 10.0, temp_dir=scratch)
    assert _listing(tmp_path) == ["scratch", "t.mrc"] and _listing(scratch) == []
    assert open_in(scratch) == [] and open_in(tmp_path) == []


def test_errors_are_bilayer_errors():
    assert issubclass(VoxelSizeError, BilayerError) and issubclass(OutputError, BilayerError)


_PEAK = """
import sys
from bilayer.preprocess.rescale import rescale_file

def peak():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))

before = peak()
rescale_file(sys.argv[1], sys.argv[2], 10.0)
print(before, peak())
"""


def test_peak_memory_stays_far_below_the_tomograms_size(tmp_path):
    """A 200 MB tomogram rescaled 8 Å → 10 Å in its own process: resident memory grows by less than half
    of it (MemBrain-seg's whole complex arrays would take about 20 times it)."""
    from bilayer.io import open_volume_writer

    shape = (200, 512, 512)
    rng = np.random.default_rng(12)
    with open_volume_writer(tmp_path / "t.mrc", shape, np.float32, 8.0) as writer:
        for z in range(0, shape[0], 20):
            writer.write(z, rng.normal(size=(20, *shape[1:])).astype(np.float32))
    out = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "t.mrc"), str(tmp_path / "r.mrc")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    size = 4 * np.prod(shape)
    assert after - before < size / 2, (before, after)
    assert read_volume(tmp_path / "r.mrc", check_finite=False).shape == (160, 410, 410)
