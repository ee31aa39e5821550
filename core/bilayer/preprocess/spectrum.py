"""Radially averaged amplitude spectra of tomograms, as MemBrain-seg's ``extract_spectrum`` makes them,
and matching a tomogram's spectrum to another's (its ``match_spectrum``).

MemBrain-seg's rule (``tomo_preprocessing extract_spectrum``): the tomogram scaled to [0, 1], the
magnitude of its centred Fourier transform, averaged in radial bins. The centre of an axis of n
voxels is at n/2 of the centred spectrum, the bin of a voxel at distance r from the centre is
``int(B * r / r_max)`` with ``B = max(shape) / 2`` and ``r_max`` the distance of the corner, and
bins 1 … int(B) are kept (bin 0, around the zero frequency, is dropped). The TSV file has the
columns ``freq`` (the bin index from 0) and ``intensity``, so files written here and by
MemBrain-seg can be used in place of each other.

Matching (DeePiCt's rule as MemBrain-seg applies it): the gain per bin is target / input; above an
automatic cutoff (4 bins before either spectrum nears zero; ``cutoff`` can only lower it) the gain is
0, rolled off by a sigmoid ``smoothen`` bins wide; gains above ``shrink_excessive_value`` are clipped.
The gain of bin k is applied at k voxels from the centre of the spectrum, as MemBrain-seg's kernel
does (its radii are not the extraction's, which are scaled to the corner; kept so the results
agree). One deliberate difference: MemBrain-seg returns the *absolute value* of the inverse
transform, which turns every negative voxel positive and leaves dark membranes bright; Bilayer keeps
the real part (MemBrain-seg's kernel, slightly asymmetric on even axes, is applied symmetrised, which
is exactly what the real part of its result holds). Both z-score the result.

Bilayer computes the same numbers lighter: the real-to-complex transform in float32 (half the
spectrum: the other half mirrors it), one z-slab of bins or gains at a time, so the peak memory is
the tomogram plus its half spectrum, not MemBrain-seg's complex128 copies and full index grids.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft

from bilayer import checks
from bilayer.errors import ConfigError, InputFileError
from bilayer.io import atomic_open, check_output_path, ensure_output_dir, output_name, read_volume, write_volume
from bilayer.settings import plain_values

__all__ = ["SpectrumMatching", "amplitude_spectrum", "equalisation", "match_spectrum", "match_spectrum_file",
           "read_spectrum", "spectrum_file", "write_spectrum"]

_HEADER = ("freq", "intensity")
_SLAB_VOXELS = 1024**2  # half-spectrum voxels binned (or weighted) at a time


@dataclass(frozen=True)
class SpectrumMatching:
    """How a spectrum is matched (:func:`equalisation`); MemBrain-seg's defaults.

    Attributes:
        cutoff: no gain from this bin on; it can only lower the automatic cutoff (``None``: automatic).
        smoothen: width in bins of the sigmoid roll-off before the cutoff (0: a sharp cut).
        almost_zero_cutoff: cut 4 bins before either spectrum nears zero.
        shrink_excessive_value: gains above this are clipped.
    """

    cutoff: int | None = None
    smoothen: float = 10.0
    almost_zero_cutoff: bool = True
    shrink_excessive_value: float = 50.0

    def __post_init__(self) -> None:
        if self.cutoff is not None:
            object.__setattr__(self, "cutoff", checks.number("cutoff", self.cutoff, 1, integer=True))
        object.__setattr__(self, "smoothen", checks.number("smoothen", self.smoothen, 0.0))
        object.__setattr__(self, "almost_zero_cutoff", checks.flag("almost_zero_cutoff", self.almost_zero_cutoff))
        object.__setattr__(self, "shrink_excessive_value",
                           checks.number("shrink_excessive_value", self.shrink_excessive_value, 0.0, open_low=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpectrumMatching:
        """The options from :meth:`to_dict`'s output or a user's mapping; missing keys take defaults."""
        return cls(**checks.known_keys(cls, data, "spectrum-matching option"))


def amplitude_spectrum(data: np.ndarray, *, workers: int = -1) -> np.ndarray:
    """The radially averaged amplitude spectrum of a (z, y, x) volume by MemBrain-seg's rule.

    Args:
        data: the tomogram (any real dtype; a memory-mapped file is read once).
        workers: threads for the Fourier transform (-1: all cores).

    Returns:
        float64 array of ``int(max(shape) / 2)`` bin means, bin 1 first (NaN for a bin no voxel falls in).

    Raises:
        InputFileError: a volume that is not 3-D or holds one value everywhere.
    """
    return _radial_mean(_half_spectrum(data, workers), data.shape)


def _half_spectrum(data: np.ndarray, workers: int) -> np.ndarray:
    """The real-to-complex Fourier transform of ``data`` scaled to [0, 1] (MemBrain-seg's scaling)."""
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputFileError(f"a spectrum needs a 3-D volume of at least 2 voxels per axis, not {data.shape}")
    low, high = float(np.min(data)), float(np.max(data))
    if not high > low:
        raise InputFileError("the tomogram has the same value everywhere: it has no spectrum")
    scaled = np.asarray(data, dtype=np.float32) - np.float32(low)
    scaled *= np.float32(1.0 / (high - low))
    return scipy.fft.rfftn(scaled, workers=workers, overwrite_x=True)


def equalisation(spectrum: np.ndarray, target: np.ndarray, *, cutoff: int | None = None, smoothen: float = 10.0,
                 almost_zero_cutoff: bool = True, shrink_excessive_value: float | None = 50.0) -> np.ndarray:
    """The gain per bin that takes ``spectrum`` to ``target`` (trimmed or edge-padded to its length);
    see the module docstring. Defaults are MemBrain-seg's."""
    spectrum = np.asarray(spectrum, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)[: len(spectrum)]
    target = np.pad(target, (0, len(spectrum) - len(target)), mode="edge")
    near_zero = [np.flatnonzero(spectrum < 1e-1), np.flatnonzero(target < 1e-4)]
    automatic = max(min(int(found[0]) if found.size else 99999 for found in near_zero) - 4, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.nan_to_num(target / spectrum, nan=0.0, posinf=0.0)
    if almost_zero_cutoff:
        cutoff = automatic if not cutoff else min(cutoff, automatic)
    if cutoff:
        gain[cutoff:] = 0.0
        if smoothen:
            n = len(gain)
            slope = n / smoothen
            offset = 2 * slope * ((cutoff - n / 2) / n) - 8
            gain *= 1.0 / (1.0 + np.exp(np.linspace(-slope, slope, n) - offset))
    if shrink_excessive_value:
        gain = np.minimum(gain, shrink_excessive_value)
    return gain


def match_spectrum(data: np.ndarray, target: np.ndarray, *, workers: int = -1, **options: float | bool | None
                   ) -> np.ndarray:
    """``data`` (z, y, x) filtered so its amplitude spectrum follows ``target``; float32, z-scored.

    Args:
        data: the tomogram.
        target: a spectrum (:func:`amplitude_spectrum`, :func:`read_spectrum`).
        workers: threads for the Fourier transforms (-1: all cores).
        options: :func:`equalisation`'s (cutoff, smoothen, almost_zero_cutoff, shrink_excessive_value).

    Raises:
        InputFileError: see :func:`amplitude_spectrum`.
    """
    shape = data.shape
    half = _half_spectrum(data, workers)
    gain = equalisation(_radial_mean(half, shape), target, **options)  # type: ignore[arg-type]
    _apply_gain(half, shape, gain)
    out = scipy.fft.irfftn(half, s=shape, workers=workers, overwrite_x=True).astype(np.float32, copy=False)
    del half
    out -= np.float32(out.mean(dtype=np.float64))
    out /= np.float32(out.std(dtype=np.float64) or 1.0)
    return out


def _apply_gain(half: np.ndarray, shape: Sequence[int], gain: np.ndarray) -> None:
    """Multiply the half spectrum in place by MemBrain-seg's radial kernel of ``gain``, symmetrised."""
    nz, ny, nx = shape
    freq = [_frequencies(n) for n in shape]
    fx = freq[2][: nx // 2 + 1]
    bins = np.arange(len(gain))
    per_slab = max(1, _SLAB_VOXELS // (ny * half.shape[2]))
    for z0 in range(0, nz, per_slab):
        fz = freq[0][z0:z0 + per_slab]
        kernel = np.zeros((len(fz), ny, len(fx)))
        for sign in (1, -1):
            d = [_kernel_distance(_wrap(sign * f, n), n) for f, n in ((fz, nz), (freq[1], ny), (fx, nx))]
            r = np.sqrt(d[0][:, None, None] ** 2 + d[1][None, :, None] ** 2 + d[2][None, None, :] ** 2)
            kernel += 0.5 * np.interp(r, bins, gain, right=0.0)
        half[z0:z0 + per_slab] *= kernel.astype(np.float32)


def _kernel_distance(f: np.ndarray, n: int) -> np.ndarray:
    """MemBrain-seg's kernel radius along an axis: |f|, but |f| - 1 for negative frequencies of an
    even axis (its kernel mirrors the non-negative half including the centre voxel)."""
    return np.where((n % 2 == 0) & (f < 0), -f - 1, np.abs(f)).astype(np.float64)


def _radial_mean(half: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Bin means of |F| over the full centred spectrum, from its real-to-complex half ``half``."""
    nz, ny, nx = shape
    bins = max(shape) / 2
    r_max = math.sqrt(sum((n / 2) ** 2 for n in shape))
    count = int(bins) + 1
    sums, hits = np.zeros(count), np.zeros(count)
    freq = [_frequencies(n) for n in shape]
    fx_direct = freq[2][: nx // 2 + 1]  # rfft columns 0 … nx//2 (an even axis' last is -nx/2, centred)
    mirrored = slice(1, (nx - 1) // 2 + 1)  # columns whose negative partner is a separate voxel
    per_slab = max(1, _SLAB_VOXELS // (ny * half.shape[2]))
    for z0 in range(0, nz, per_slab):
        amplitude = np.abs(half[z0:z0 + per_slab]).astype(np.float64)
        fz = freq[0][z0:z0 + per_slab]
        for sign_fz, sign_fy, fx, values in ((fz, freq[1], fx_direct, amplitude),
                                             (-fz, -freq[1], -fx_direct[mirrored], amplitude[:, :, mirrored])):
            d = [_offset(_wrap(f, n), n) for f, n in ((sign_fz, nz), (sign_fy, ny), (fx, nx))]
            r = np.sqrt(d[0][:, None, None] ** 2 + d[1][None, :, None] ** 2 + d[2][None, None, :] ** 2)
            which = (bins * r / r_max).astype(np.int64).ravel()
            sums += np.bincount(which, weights=values.ravel(), minlength=count)[:count]
            hits += np.bincount(which, minlength=count)[:count]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / hits)[1:]


def _frequencies(n: int) -> np.ndarray:
    """Signed integer frequencies of an axis of n voxels in FFT order."""
    return np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)


def _wrap(f: np.ndarray, n: int) -> np.ndarray:
    """Frequencies folded into the centred spectrum's range [-n//2, n - n//2 - 1]."""
    h = n // 2
    return np.mod(f + h, n) - h


def _offset(f: np.ndarray, n: int) -> np.ndarray:
    """Distance from the centre n/2 of the centred (fftshift-ed) index of frequency ``f``."""
    return (f + n // 2) - n / 2


def spectrum_file(source: str | os.PathLike, destination: str | os.PathLike | None = None, *,
                  voxel_size: float | None = None, overwrite: bool = False) -> Path:
    """Write the amplitude spectrum of the tomogram ``source`` as a TSV (default: its
    ``<stem>_spectrum.tsv`` beside it); returns the path written."""
    source = Path(source)
    target = Path(destination) if destination is not None else source.with_name(output_name(source, "spectrum"))
    ensure_output_dir(target.parent)
    check_output_path(target, overwrite=overwrite, protect=[source])
    volume = read_volume(source, voxel_size=voxel_size)
    return write_spectrum(target, amplitude_spectrum(volume.data), overwrite=overwrite, protect=[source])


def match_spectrum_file(source: str | os.PathLike, target_spectrum: str | os.PathLike,
                        destination: str | os.PathLike | None = None, *,
                        options: SpectrumMatching = SpectrumMatching(), voxel_size: float | None = None,
                        overwrite: bool = False) -> Path:
    """Filter the tomogram ``source`` so its spectrum follows the TSV ``target_spectrum``; write it
    (float32, z-scored, the input's voxel size and origin; default ``<stem>_matched.mrc`` beside it)."""
    source, target_spectrum = Path(source), Path(target_spectrum)
    destination = Path(destination) if destination is not None else source.with_name(output_name(source, "matched"))
    protect = [source, target_spectrum]
    target = read_spectrum(target_spectrum)
    ensure_output_dir(destination.parent)
    check_output_path(destination, overwrite=overwrite, protect=protect)
    volume = read_volume(source, voxel_size=voxel_size)
    filtered = match_spectrum(volume.data, target, **options.to_dict())
    return write_volume(destination, volume.with_data(filtered), overwrite=overwrite, protect=protect,
                        labels=[f"bilayer preprocess match-spectrum to {target_spectrum.name}"])


def write_spectrum(path: str | os.PathLike, spectrum: np.ndarray, *, overwrite: bool = False,
                   protect: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``spectrum`` as MemBrain-seg's TSV (``freq``, ``intensity``), atomically."""
    lines = ["\t".join(_HEADER)] + [f"{i}\t{float(v)!r}" for i, v in enumerate(np.asarray(spectrum, dtype=float))]
    with atomic_open(path, overwrite=overwrite, protect=protect) as f:
        f.write(("\n".join(lines) + "\n").encode())
    return Path(path)


def read_spectrum(path: str | os.PathLike) -> np.ndarray:
    """The ``intensity`` column of a spectrum TSV (Bilayer's or MemBrain-seg's).

    Raises:
        InputFileError: a missing or unreadable file, no ``intensity`` column, or values that are not
            finite numbers.
    """
    path = Path(path)
    try:
        rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read the spectrum {path}: {e}; give a TSV from bilayer preprocess spectrum "
                             "or MemBrain-seg's extract_spectrum") from e
    if not rows or "intensity" not in rows[0]:
        raise InputFileError(f"{path} has no 'intensity' column; give a TSV from bilayer preprocess spectrum or "
                             "MemBrain-seg's extract_spectrum")
    column = rows[0].index("intensity")
    try:
        values = np.array([float(row[column]) for row in rows[1:]])
    except (ValueError, IndexError) as e:
        raise InputFileError(f"{path}: a row has no number in its 'intensity' column ({e}); fix or remake the "
                             "file") from e
    if values.size == 0 or not np.isfinite(values).all():
        raise InputFileError(f"{path}: the spectrum is empty or holds NaN/Inf; remake it from a tomogram")
    if values.size < 2:
        raise ConfigError(f"{path}: a spectrum needs at least 2 bins")
    return values
