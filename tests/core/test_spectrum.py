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
