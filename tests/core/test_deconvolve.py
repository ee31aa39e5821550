"""bilayer.preprocess.deconvolve: MemBrain-seg's Wiener-like deconvolution on the float32 half spectrum,
tested against the formulas and the filter written out plainly over the full spectrum."""

from __future__ import annotations

import math
import subprocess
import sys

import mrcfile
import numpy as np
import pytest
from bilayer.errors import BilayerError, ConfigError, InputFileError, OutputError, VoxelSizeError
from bilayer.io import read_volume, write_volume
from bilayer.preprocess.deconvolve import (
    DeconvolutionOptions,
    Frequencies,
    adhoc_ssnr,
    ctf,
    deconvolution_filter,
    deconvolve_file,
    deconvolve_tomogram,
    electron_wavelength,
    first_ctf_zero,
)
from scipy.optimize import brentq


def _membrain_wavelength(kv: float) -> float:
    """MemBrain-seg's (focustools') relativistic wavelength in Å."""
    return 12.2639 / math.sqrt(kv * 1e3 + 0.97845 * kv * kv)


def _contrast(f: np.ndarray, defocus: float, amplitude: float, cs_mm: float, kv: float) -> np.ndarray:
    """-CTF (Mindell & Grigorieff), the contrast-keeping sign MemBrain-seg filters with."""
    lam = _membrain_wavelength(kv)
    chi = np.pi * lam * f**2 * (defocus - 0.5 * lam**2 * f**2 * cs_mm * 1e7)
    return math.sqrt(1 - amplitude**2) * np.sin(chi) + amplitude * np.cos(chi)


def _first_zero_by_search(defocus: float, amplitude: float, cs_mm: float, kv: float) -> float:
    f = np.linspace(0, 0.2, 200001)
    values = _contrast(f, defocus, amplitude, cs_mm, kv)
    i = int(np.flatnonzero(np.sign(values[1:]) != np.sign(values[:-1]))[0])
    return brentq(lambda x: _contrast(np.array(x), defocus, amplitude, cs_mm, kv), f[i], f[i + 1], xtol=1e-15)


def _reference(volume: np.ndarray, voxel_size: float, *, grid: str = "membrain", phase_flip: bool = False,
               lowpass: bool = True, defocus: float = 50000.0, amplitude: float = 0.07, cs: float = 2.7,
               kv: float = 300.0, strength: float = 1.0, falloff: float = 1.0, hp: float = 0.02) -> np.ndarray:
    """The filter written out over the full complex spectrum in float64 (every voxel, full index grids)."""
    shape = volume.shape
    index = np.meshgrid(*[np.fft.fftfreq(n, 1.0 / n) for n in shape], indexing="ij")
    if grid == "membrain":  # index radius over the RMS edge; rounded for the CTF; 1e-3 at the origin
        edge = math.sqrt(sum(n * n for n in shape) / 3)
        radius = np.sqrt(sum(i**2 for i in index))
        f_ctf, f_ssnr = np.round(radius) / edge, radius / edge
        f_ctf[0, 0, 0] = f_ssnr[0, 0, 0] = 1e-3
        f_ctf, f_ssnr = f_ctf / voxel_size, f_ssnr / voxel_size
        lam, w1, cs_a = _membrain_wavelength(kv), math.sqrt(1 - amplitude**2), cs * 1e7
        f0 = math.sqrt(-2 * cs_a * lam * math.atan2(amplitude, w1) + 2 * math.pi * cs_a * lam + math.pi) / (
            math.sqrt(2 * math.pi * cs_a * defocus) * lam)
    else:
        f_ctf = f_ssnr = np.sqrt(sum((i / n) ** 2 for i, n in zip(index, shape))) / voxel_size
        f0 = _first_zero_by_search(defocus, amplitude, cs, kv)
    c = _contrast(f_ctf, defocus, amplitude, cs, kv)
    if phase_flip:
        gain = np.sign(c)
    else:
        ssnr = np.exp(-100 * f_ssnr * falloff) * 10 ** (3 * strength)
        ssnr = ssnr * (1 - np.cos(np.minimum(1, f_ssnr * voxel_size / hp) * np.pi / 2))
        if lowpass:
            ssnr = ssnr * np.cos(np.minimum(1, f_ssnr / f0) * np.pi / 2)
        with np.errstate(divide="ignore"):
            gain = c / (c * c + 1 / ssnr)
    return np.real(np.fft.ifftn(np.fft.fftn(volume.astype(np.float64)) * gain))


def _volume(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape) + np.linspace(0, 3, shape[2])  # a ramp: the mean and low frequencies matter
    return data.astype(np.float32)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_the_wavelength_is_the_relativistic_one():
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    for kv in (100.0, 200.0, 300.0):
        volts = kv * 1e3
        exact = h / math.sqrt(2 * m * e * volts * (1 + e * volts / (2 * m * c * c))) * 1e10
        assert electron_wavelength(kv) == pytest.approx(exact, rel=1e-4)  # MemBrain-seg's constants: 3e-5 off
        assert electron_wavelength(kv) == pytest.approx(_membrain_wavelength(kv), rel=1e-14)


@pytest.mark.parametrize("defocus, cs, kv", [(50000.0, 2.7, 300.0), (20000.0, 2.7, 200.0), (8000.0, 0.0, 300.0)])
def test_the_ctf_follows_the_formula_and_first_crosses_zero_where_theory_puts_it(defocus, cs, kv):
    f = np.array([0.0, 0.01, 0.02, 0.05, 0.1])
    np.testing.assert_allclose(ctf(f, defocus=defocus, cs=cs, voltage=kv), -_contrast(f, defocus, 0.07, cs, kv),
                               rtol=0, atol=1e-12)
    assert ctf(0.0, defocus=defocus, cs=cs, voltage=kv) == pytest.approx(-0.07)
    zero = first_ctf_zero(defocus=defocus, cs=cs, voltage=kv)
    assert zero == pytest.approx(_first_zero_by_search(defocus, 0.07, cs, kv), rel=1e-9)
    below = np.linspace(0, zero, 10001)[:-1]
    assert np.all(ctf(below, defocus=defocus, cs=cs, voltage=kv) < 0)
    assert ctf(zero * 1.001, defocus=defocus, cs=cs, voltage=kv) > 0
    if cs == 0:  # without spherical aberration: pi * lambda * f^2 * defocus = pi - atan(w2 / w1)
        lam = electron_wavelength(kv)
        assert zero == pytest.approx(math.sqrt((math.pi - math.atan(0.07 / math.sqrt(1 - 0.07**2)))
                                               / (math.pi * lam * defocus)), rel=1e-12)


def test_the_ssnr_is_a_cosine_high_pass_times_an_exponential_falloff_rolled_off_at_the_cutoff():
    voxel, top = 10.0, 10.0**3
    end = 0.02 / voxel  # the high-pass ends at 0.02 cycles per voxel
    f = np.array([0.0, end / 2, end, 0.01, 0.03])
    plain = adhoc_ssnr(f, voxel)
    np.testing.assert_allclose(plain, top * np.exp(-100 * f) * [0, 1 - math.cos(math.pi / 4), 1, 1, 1], rtol=1e-12)
    assert np.all(np.diff(adhoc_ssnr(np.linspace(0, end, 50), voxel)) > 0)
    rolled = adhoc_ssnr(f, voxel, lowpass_frequency=0.03)
    np.testing.assert_allclose(rolled[:4], plain[:4] * np.cos(f[:4] / 0.03 * np.pi / 2), rtol=1e-12)
    assert rolled[4] < 1e-12 * plain[4]
    assert adhoc_ssnr(0.05, voxel, strength=0.5, falloff=2.0, highpass_fraction=0.0) == pytest.approx(
        10**1.5 * math.exp(-10))


@pytest.mark.parametrize("shape", [(16, 20, 24), (15, 21, 17), (12, 12, 13), (9, 16, 16)])
@pytest.mark.parametrize("grid", ["membrain", "physical"])
def test_the_half_spectrum_filter_gives_the_full_spectrums_result(shape, grid, monkeypatch):
    import bilayer.preprocess.deconvolve as module

    monkeypatch.setattr(module, "_SLAB_VOXELS", shape[1] * shape[2])  # one z section per slab
    volume = _volume(shape)
    _assert_close(deconvolve_tomogram(volume, 8.0, frequencies=grid), _reference(volume, 8.0, grid=grid))


@pytest.mark.parametrize("changes", [
    {"defocus": 30000.0, "strength": 0.5, "falloff": 2.0, "hp": 0.05},
    {"cs": 0.01, "kv": 200.0, "amplitude": 0.1, "lowpass": False},
    {"phase_flip": True},
])
def test_the_options_reach_the_filter(changes):
    volume = _volume((14, 18, 20), seed=2)
    names = {"defocus": "defocus", "strength": "strength", "falloff": "falloff", "hp": "highpass_fraction",
             "cs": "cs", "kv": "voltage", "amplitude": "amplitude_contrast", "lowpass": "lowpass",
             "phase_flip": "phase_flip"}
    got = deconvolve_tomogram(volume, 12.0, **{names[k]: v for k, v in changes.items()})
    _assert_close(got, _reference(volume, 12.0, **changes))
    assert not np.allclose(got, deconvolve_tomogram(volume, 12.0), atol=1e-3)


def test_phase_flip_negates_what_the_ctf_inverts_and_keeps_the_rest():
    n, voxel = 32, 10.0  # a cube: MemBrain-seg's grid is the true one; waves along x at whole indices
    x = np.arange(n)
    sign = np.sign(_contrast(np.arange(n // 2) / (n * voxel), 50000.0, 0.07, 2.7, 300.0))
    kept, flipped = 5, 12  # first lobe (before the zero at index 10.1); second lobe
    assert sign[kept] == 1 and sign[flipped] == -1
    for k, expected in ((kept, 1.0), (flipped, -1.0)):
        wave = np.broadcast_to(np.cos(2 * np.pi * k * x / n), (n, n, n)).astype(np.float32)
        np.testing.assert_allclose(deconvolve_tomogram(wave, voxel, phase_flip=True), expected * wave, atol=1e-5)


def test_membrains_grid_is_anisotropic_on_non_cubic_volumes_and_the_physical_one_is_not():
    shape, voxel = (16, 32, 32), 10.0
    z, _, x = np.indices(shape)
    along_z = np.cos(2 * np.pi * 4 * z / 16).astype(np.float32)  # both 0.25 cycles per voxel, 0.025 / Å
    along_x = np.cos(2 * np.pi * 8 * x / 32).astype(np.float32)

    def gain(wave, grid):
        return float(np.sum(deconvolve_tomogram(wave, voxel, frequencies=grid) * wave) / np.sum(wave * wave))

    assert gain(along_z, "physical") == pytest.approx(gain(along_x, "physical"), rel=1e-5)
    assert abs(gain(along_z, "membrain") - gain(along_x, "membrain")) > 0.1 * abs(gain(along_x, "membrain"))


def test_the_physical_grid_removes_the_mean_and_membrains_scales_it():
    volume = _volume((16, 16, 16)) + 5
    assert abs(deconvolve_tomogram(volume, 10.0, frequencies="physical").mean()) < 1e-5
    dc = deconvolution_filter(volume.shape, 10.0)[0, 0, 0]
    assert 0.1 < dc < 0.5  # MemBrain-seg filters the zero frequency as if it were at radius 1e-3
    assert deconvolve_tomogram(volume, 10.0).mean() == pytest.approx(dc * volume.mean(dtype=np.float64), rel=1e-4)


def test_the_filter_has_the_half_spectrum_shape_and_matches_the_volume_result():
    shape = (10, 12, 15)
    volume = _volume(shape, seed=4)
    half = deconvolution_filter(shape, 9.0)
    assert half.shape == (10, 12, 8) and half.dtype == np.float32
    expected = np.fft.irfftn(np.fft.rfftn(volume.astype(np.float64)) * half, s=shape)
    _assert_close(deconvolve_tomogram(volume, 9.0), expected)


def test_options_round_trip_and_refuse_bad_values():
    options = DeconvolutionOptions(defocus=30000, frequencies="physical", phase_flip=True)
    assert options.frequencies is Frequencies.PHYSICAL and options.defocus == 30000.0
    assert DeconvolutionOptions.from_dict(options.to_dict()) == options
    assert options.to_dict()["frequencies"] == "physical"
    for bad, word in (({"defocus": -1.0}, "defocus"), ({"defocus": 0.0}, "defocus"),
                      ({"amplitude_contrast": 1.5}, "amplitude_contrast"), ({"voltage": 0.0}, "voltage"),
                      ({"strength": 50.0}, "strength"), ({"highpass_fraction": -0.1}, "highpass_fraction"),
                      ({"frequencies": "exact"}, "membrain, physical"), ({"lowpass": "yes"}, "lowpass")):
        with pytest.raises(ConfigError, match=word):
            DeconvolutionOptions(**bad)
    with pytest.raises(ConfigError, match="unknown deconvolution option key.*'df'"):
        DeconvolutionOptions.from_dict({"df": 1.0})


def test_the_array_function_refuses_what_is_no_volume():
    with pytest.raises(InputFileError, match="3-D"):
        deconvolve_tomogram(np.zeros((8, 8), np.float32), 10.0)
    with pytest.raises(ConfigError, match="voxel_size"):
        deconvolve_tomogram(np.zeros((8, 8, 8), np.float32), 0.0)
    with pytest.raises(ConfigError, match="defocus"):
        deconvolve_tomogram(np.zeros((8, 8, 8), np.float32), 10.0, defocus=-5000.0)


def test_the_file_keeps_the_inputs_geometry_and_names_the_step(tmp_path):
    volume = _volume((12, 16, 20), seed=5)
    source = write_volume(tmp_path / "t.mrc", (volume * 100).astype(np.int16), voxel_size=14.0, origin=(1.0, 2.0, 3.0))
    options = DeconvolutionOptions(defocus=40000.0, strength=0.8)
    written = deconvolve_file(source, options=options)
    assert written == tmp_path / "t_deconv.mrc"
    out = read_volume(written)
    assert out.data.dtype == np.float32 and out.voxel_size == (14.0, 14.0, 14.0) and out.origin == (1.0, 2.0, 3.0)
    data = read_volume(source).data
    np.testing.assert_allclose(out.data, deconvolve_tomogram(data, 14.0, defocus=40000.0, strength=0.8), atol=1e-4)
    with mrcfile.open(written, permissive=True, header_only=True) as mrc:
        labels = [bytes(label).decode().strip() for label in mrc.header.label[: int(mrc.header.nlabl)]]
    assert "bilayer preprocess deconvolve: defocus 40000 A, strength 0.8, falloff 1" in labels
    with pytest.raises(OutputError, match="already exists"):
        deconvolve_file(source, options=options)
    given = deconvolve_file(source, tmp_path / "other.mrc", voxel_size=7.0)
    assert read_volume(given).voxel_size == (7.0, 7.0, 7.0)


def test_bad_files_are_refused_in_one_line_and_nothing_is_written(tmp_path):
    volume = _volume((8, 10, 12))
    unset = write_volume(tmp_path / "unset.mrc", volume, voxel_size=1.0)
    cases = [
        (lambda: deconvolve_file(unset), VoxelSizeError, ["unset.mrc", "1 Å", "--voxel-size"]),
        (lambda: deconvolve_file(unset, unset, voxel_size=10.0), OutputError, ["unset.mrc"]),
    ]
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"not an MRC file")
    cases.append((lambda: deconvolve_file(junk, voxel_size=10.0), InputFileError, ["junk.mrc"]))
    with mrcfile.new(tmp_path / "image.mrc") as mrc:
        mrc.set_data(volume[0])
        mrc.voxel_size = 10.0
    cases.append((lambda: deconvolve_file(tmp_path / "image.mrc"), InputFileError, ["image.mrc"]))
    before = sorted(p.name for p in tmp_path.iterdir())
    for call, error, words in cases:
        with pytest.raises(error) as caught:
            call()
        assert isinstance(caught.value, BilayerError) and "\n" not in str(caught.value)
        assert all(word in str(caught.value) for word in words), str(caught.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_deconvolving_a_file_loads_no_torch(tmp_path):
    source = write_volume(tmp_path / "t.mrc", _volume((8, 8, 8)), voxel_size=10.0)
    code = ("import sys; from bilayer.preprocess import deconvolve_file; "
            f"deconvolve_file({str(source)!r}); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False" and (tmp_path / "t_deconv.mrc").is_file()
