"""bilayer.preprocess.spectrum: MemBrain-seg's radially averaged amplitude spectrum, lighter, same numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bilayer.errors import InputFileError
from bilayer.preprocess.spectrum import amplitude_spectrum, read_spectrum, write_spectrum


def _reference(volume: np.ndarray) -> np.ndarray:
    """The rule written out plainly over the full centred spectrum (float64, every voxel)."""
    scaled = volume.astype(np.float64)
    scaled = (scaled - scaled.min()) / (scaled.max() - scaled.min())
    amplitude = np.abs(np.fft.fftshift(np.fft.fftn(scaled)))
    index = np.indices(volume.shape, dtype=np.float64)
    r = np.sqrt(sum((index[a] - n / 2) ** 2 for a, n in enumerate(volume.shape)))
    bins = max(volume.shape) / 2
    which = (bins * r / r.max()).astype(int)
    return ndimage.mean(amplitude, labels=which, index=np.arange(1, which.max() + 1))


@pytest.mark.parametrize("shape", [(16, 20, 24), (15, 21, 17), (12, 12, 13), (9, 16, 16)])
def test_the_half_spectrum_gives_the_full_spectrums_bins(shape, monkeypatch):
    import bilayer.preprocess.spectrum as module

    monkeypatch.setattr(module, "_SLAB_VOXELS", shape[1] * shape[2])  # one z section per slab
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    got = amplitude_spectrum(volume)
    want = _reference(volume)
    assert got.shape == want.shape == (int(max(shape) / 2),)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_a_bilayer_like_periodic_pattern_peaks_at_its_frequency():
    z, y, x = np.indices((32, 32, 32))
    volume = np.cos(2 * np.pi * 8 * x / 32).astype(np.float32)  # 8 periods along x: radius 8 voxels
    spectrum = amplitude_spectrum(volume)
    bin_of_radius_8 = int(16 * 8 / np.sqrt(3 * 16**2))  # the rule's bins are scaled to the corner
    assert np.nanargmax(spectrum) + 1 == bin_of_radius_8


def test_tsv_round_trip_with_membrain_segs_columns(tmp_path):
    spectrum = amplitude_spectrum(np.random.default_rng(0).normal(size=(8, 10, 12)).astype(np.float32))
    path = write_spectrum(tmp_path / "spec.tsv", spectrum)
    lines = path.read_text().splitlines()
    assert lines[0] == "freq\tintensity" and lines[1].startswith("0\t") and len(lines) == len(spectrum) + 1
    np.testing.assert_array_equal(read_spectrum(path), spectrum)
    (tmp_path / "pandas.tsv").write_text("freq\tintensity\n0\t1.5\n1\t0.25\n")  # as pandas' to_csv writes it
    np.testing.assert_array_equal(read_spectrum(tmp_path / "pandas.tsv"), [1.5, 0.25])


@pytest.mark.parametrize("text, words", [("a\tb\n0\t1\n", "no 'intensity' column"),
                                         ("freq\tintensity\n0\tx\n", "no number"),
                                         ("freq\tintensity\n0\tnan\n1\t2\n", "NaN")])
def test_bad_spectrum_files_name_the_file(tmp_path, text, words):
    (tmp_path / "s.tsv").write_text(text)
    with pytest.raises(InputFileError, match=words):
        read_spectrum(tmp_path / "s.tsv")


def test_a_constant_volume_has_no_spectrum():
    with pytest.raises(InputFileError, match="same value everywhere"):
        amplitude_spectrum(np.ones((8, 8, 8), np.float32))


def _reference_kernel(gain: np.ndarray, shape) -> np.ndarray:
    """MemBrain-seg's rotational kernel over the centred spectrum: the gain at radius k for bin k,
    built from the non-negative quadrant mirrored (including the centre voxel on even axes)."""
    quadrant = np.indices([int(np.ceil(n / 2)) for n in shape], dtype=np.float64)
    r = np.sqrt(sum(q ** 2 for q in quadrant))
    kernel = np.interp(r, np.arange(len(gain)), gain, right=0.0)
    for axis, n in enumerate(shape):
        pad = [(0, 0)] * 3
        pad[axis] = (n // 2, 0)
        kernel = np.pad(kernel, pad, mode="reflect" if n % 2 else "symmetric")
    return kernel


@pytest.mark.parametrize("shape", [(16, 20, 24), (15, 21, 17), (12, 13, 16)])
def test_matching_is_the_real_part_of_membrain_segs_filter(shape):
    from bilayer.preprocess.spectrum import equalisation, match_spectrum

    rng = np.random.default_rng(2)
    volume = ndimage.gaussian_filter(rng.normal(size=shape), 1.0).astype(np.float32)
    target = amplitude_spectrum(rng.normal(size=shape).astype(np.float32))  # white: lifts the high frequencies
    got = match_spectrum(volume, target, workers=1)
    scaled = (volume - volume.min()) / (volume.max() - volume.min())
    centred = np.fft.fftshift(np.fft.fftn(scaled.astype(np.float64)))
    gain = equalisation(_reference(volume), target)
    want = np.fft.ifftn(np.fft.ifftshift(centred * _reference_kernel(gain, shape))).real
    want = (want - want.mean()) / want.std()
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert abs(got.mean()) < 1e-5 and abs(got.std() - 1) < 1e-4


def test_the_gain_is_target_over_input_cut_rolled_off_and_clipped():
    from bilayer.preprocess.spectrum import equalisation

    spectrum = np.array([10.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.05, 0.01, 0.01])
    target = np.full(10, 2.0)  # shorter: edge-padded
    plain = equalisation(spectrum, target, almost_zero_cutoff=False, shrink_excessive_value=None)
    np.testing.assert_allclose(plain, 2.0 / spectrum)
    cut = equalisation(spectrum, target, smoothen=0, shrink_excessive_value=None)  # 0.05 at bin 11: cut at 7
    np.testing.assert_allclose(cut[:7], 2.0 / spectrum[:7])
    assert not cut[7:].any()
    assert equalisation(spectrum, target, cutoff=3, smoothen=0, shrink_excessive_value=None)[3:].sum() == 0
    assert equalisation(spectrum, target, almost_zero_cutoff=False, shrink_excessive_value=5.0).max() == 5.0
    long = np.linspace(10.0, 0.2, 200)  # never near zero: cut only where asked
    sharp = equalisation(long, np.ones(200), cutoff=120, smoothen=0, shrink_excessive_value=None)
    rolled = equalisation(long, np.ones(200), cutoff=120, smoothen=10, shrink_excessive_value=None)
    factor = rolled[:120] / sharp[:120]  # the sigmoid: 1 at low bins, falling to ~0 at the cutoff
    assert factor[0] == pytest.approx(1.0, abs=1e-6) and factor[-1] < 1e-3
    assert (np.diff(factor) <= 1e-12).all() and not rolled[120:].any()
