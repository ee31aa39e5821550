"""Wiener-like deconvolution of a tomogram with one CTF, as MemBrain-seg's ``tomo_preprocessing
deconvolve`` does it (Warp's / tom_deconv's filter, by way of focustools).

The filter of a spatial frequency f (1/Å) is ``c · SSNR / (c² · SSNR + 1)``, i.e. MemBrain-seg's
``c / (c² + 1/SSNR)`` written so that an SSNR of 0 gives 0, where ``c = -CTF(f)`` (the CTF negated so
the contrast is kept: low frequencies pass with a positive sign) and

- ``CTF(f) = -w1 sin X - w2 cos X``, ``X = π λ f² (Δf - λ² f² Cs / 2)``, ``w2`` the amplitude contrast,
  ``w1 = sqrt(1 - w2²)``, λ the relativistic electron wavelength (Mindell & Grigorieff 2003);
- ``SSNR(f) = H · exp(-100 f · falloff) · 10^(3 strength) · L``: the high-pass
  ``H = 1 - cos(min(1, f·voxel_size / highpass_fraction) · π/2)`` and, with ``lowpass``, the
  low-pass ``L = cos(min(1, f / f0) · π/2)`` that reaches 0 at the CTF's first zero f0.

``phase_flip`` multiplies by the sign of ``c`` instead (focustools' ``CorrectCTF(phase_flip=True)``):
phases corrected, amplitudes left as they are, the SSNR unused.

MemBrain-seg's choices, kept by default (``frequencies="membrain"``) so its output is reproduced (on a
200×512×512 tomogram: correlation 1 to 15 digits, largest difference 3e-7 of the largest value):

- its frequency of the Fourier index (i, j, k) is ``|(i, j, k)| / sqrt((nz² + ny² + nx²) / 3)`` per
  voxel, i.e. the index radius over the root-mean-square edge. On a cube this is the true
  frequency; on a 200×512×512 tomogram x and y frequencies come out 1.18× too high and z ones 2.2×
  too low, so the CTF's zeros are misplaced, differently along z than in the x-y plane.
- the CTF is evaluated at that radius rounded to whole indices (the SSNR at the radius itself).
- the zero frequency is given the radius 1e-3 (not 0), so the high-pass does not quite remove the
  mean: the mean is scaled by about 0.2 at the defaults.
- its first CTF zero ``f0`` solves ``π λ f² Δf - π / (2 λ Cs) = π - atan(w2/w1)``: the spherical
  aberration term (``π λ³ f⁴ Cs / 2``) is inverted, so ``f0`` is 0.005 % low at 5 µm defocus,
  300 kV and 2.7 mm, 0.5 % low at 0.5 µm; the error changes sign and grows as Cs shrinks, and with
  ``cs=0`` there is no low-pass at all.
- ``highpass_fraction`` is documented as a fraction of Nyquist but compared with cycles per voxel
  (Nyquist = 0.5): the high-pass ends at twice the documented frequency. tom_deconv itself uses
  fractions of Nyquist, a high-pass that rises to 2, a falloff twice as steep and no low-pass.
- its default CLI applies the low-pass (``--skip-lowpass`` turns it off; its Python function
  defaults to skipping it). Bilayer's default is the CLI's.

``frequencies="physical"`` uses the true frequency ``sqrt((i/nz)² + (j/ny)² + (k/nx)²) / voxel_size``
unrounded, 0 at the origin (the mean is removed), and the exact first zero of the CTF above, Cs
included. Two MemBrain-seg bugs are not kept in either mode: its inverse transform, called without
the shape, returns a volume one voxel shorter along an odd axis (its last, Bilayer's z), and it
writes the origin as 0.

Bilayer computes the same numbers lighter: the real-to-complex transform in float32, filtered in
place slab by slab (with MemBrain-seg's grid the filter depends only on the integer i² + j² + k², so
it is one table look-up per voxel) and inverted in place, so the peak memory is the tomogram plus its
half spectrum (0.49 GB for a 0.2 GB tomogram, against MemBrain-seg's 3.1 GB of complex128 spectra
and full float64 index grids).
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bilayer import checks
from bilayer.errors import InputFileError
from bilayer.io import check_output_path, ensure_output_dir, output_name, read_tomogram, write_volume
from bilayer.settings import plain_values

__all__ = ["DeconvolutionOptions", "Frequencies", "adhoc_ssnr", "ctf", "deconvolution_filter", "deconvolve_file",
           "deconvolve_tomogram", "electron_wavelength", "first_ctf_zero"]

_SLAB_VOXELS = 1024**2  # half-spectrum voxels filtered at a time
_MEMBRAIN_ZERO_RADIUS = 1e-3  # MemBrain-seg's radius of the zero frequency (in its normalised units)


class Frequencies(str, enum.Enum):
    """Which spatial frequency each Fourier voxel is filtered as."""

    MEMBRAIN = "membrain"
    """MemBrain-seg's: index radius over the RMS edge, rounded for the CTF (its exact output)."""
    PHYSICAL = "physical"
    """The true frequency along each axis, unrounded; the exact first CTF zero."""


@dataclass(frozen=True)
class DeconvolutionOptions:
    """The microscope and the filter (:func:`deconvolve_tomogram`); MemBrain-seg's defaults.

    Attributes:
        defocus: Å, underfocus positive (typically the zero tilt's).
        amplitude_contrast: fraction, 0-1.
        cs: spherical aberration, mm.
        voltage: acceleration voltage, kV.
        strength: SSNR scale, 10^(3·strength) at low frequency (1: 1000).
        falloff: how fast the SSNR falls with frequency (higher: more low-pass).
        highpass_fraction: where the high-pass ends, in MemBrain-seg's units (cycles per voxel).
        lowpass: roll the SSNR off to 0 at the first CTF zero (MemBrain-seg's CLI default).
        phase_flip: only flip the phases where the CTF is negative (no Wiener filter).
        frequencies: MemBrain-seg's frequency grid or the physical one (:class:`Frequencies`).
    """

    defocus: float = 50000.0
    amplitude_contrast: float = 0.07
    cs: float = 2.7
    voltage: float = 300.0
    strength: float = 1.0
    falloff: float = 1.0
    highpass_fraction: float = 0.02
    lowpass: bool = True
    phase_flip: bool = False
    frequencies: Frequencies = Frequencies.MEMBRAIN

    def __post_init__(self) -> None:
        values = {
            "defocus": checks.number("defocus", self.defocus, 0.0, open_low=True),
            "amplitude_contrast": checks.number("amplitude_contrast", self.amplitude_contrast, 0.0, 1.0),
            "cs": checks.number("cs", self.cs, 0.0),
            "voltage": checks.number("voltage", self.voltage, 0.0, open_low=True),
            "strength": checks.number("strength", self.strength, -10.0, 10.0),
            "falloff": checks.number("falloff", self.falloff, 0.0),
            "highpass_fraction": checks.number("highpass_fraction", self.highpass_fraction, 0.0, 1.0),
            "lowpass": checks.flag("lowpass", self.lowpass),
            "phase_flip": checks.flag("phase_flip", self.phase_flip),
            "frequencies": checks.choice("frequencies", self.frequencies, Frequencies),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the grid by its name)."""
        return plain_values(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeconvolutionOptions:
        """The options from :meth:`to_dict`'s output or a user's mapping; missing keys take defaults."""
        return cls(**checks.known_keys(cls, data, "deconvolution option"))


_DEFAULT = DeconvolutionOptions()


def electron_wavelength(voltage: float) -> float:
    """Relativistic electron wavelength in Å at ``voltage`` kV (MemBrain-seg's constants)."""
    volts = voltage * 1e3
    return 12.2639 / math.sqrt(volts + 0.97845e-6 * volts * volts)


def ctf(frequency: np.ndarray | float, *, defocus: float = _DEFAULT.defocus,
        amplitude_contrast: float = _DEFAULT.amplitude_contrast, cs: float = _DEFAULT.cs,
        voltage: float = _DEFAULT.voltage) -> np.ndarray:
    """The CTF ``-w1 sin X - w2 cos X`` at spatial frequencies in 1/Å (negative at low frequency for
    underfocus); defocus in Å, ``cs`` in mm, ``voltage`` in kV. float64."""
    f2 = np.square(np.asarray(frequency, dtype=np.float64))
    wavelength = electron_wavelength(voltage)
    phase = np.pi * wavelength * f2 * (defocus - 0.5 * wavelength**2 * f2 * cs * 1e7)
    w2 = amplitude_contrast
    return -math.sqrt(1.0 - w2 * w2) * np.sin(phase) - w2 * np.cos(phase)


def first_ctf_zero(*, defocus: float = _DEFAULT.defocus, amplitude_contrast: float = _DEFAULT.amplitude_contrast,
                   cs: float = _DEFAULT.cs, voltage: float = _DEFAULT.voltage) -> float:
    """The lowest spatial frequency (1/Å) where :func:`ctf` is 0, ``inf`` where it never is.

    ``X = π - atan(w2/w1)`` there, a quadratic in f²; its smaller root, in the form that stays exact
    as Cs goes to 0.
    """
    wavelength = electron_wavelength(voltage)
    target = math.pi - math.atan2(amplitude_contrast, math.sqrt(1.0 - amplitude_contrast**2))
    linear = math.pi * wavelength * defocus
    quadratic = 0.5 * math.pi * wavelength**3 * cs * 1e7
    discriminant = linear * linear - 4.0 * quadratic * target
    if discriminant < 0:
        return math.inf
    return math.sqrt(2.0 * target / (linear + math.sqrt(discriminant)))


def _membrain_first_zero(options: DeconvolutionOptions) -> float:
    """MemBrain-seg's first zero (see the module docstring): inf when ``cs`` is 0."""
    wavelength = electron_wavelength(options.voltage)
    w2 = options.amplitude_contrast
    target = math.pi - math.atan2(w2, math.sqrt(1.0 - w2 * w2))
    cs_term = math.inf if options.cs == 0 else 1.0 / (2.0 * wavelength**2 * options.cs * 1e7 * options.defocus)
    return math.sqrt(target / (math.pi * wavelength * options.defocus) + cs_term)


def adhoc_ssnr(frequency: np.ndarray | float, voxel_size: float, *, strength: float = _DEFAULT.strength,
               falloff: float = _DEFAULT.falloff, highpass_fraction: float = _DEFAULT.highpass_fraction,
               lowpass_frequency: float | None = None) -> np.ndarray:
    """Tegunov's ad-hoc SSNR at spatial frequencies in 1/Å, as MemBrain-seg writes it (module
    docstring); ``lowpass_frequency`` (1/Å) is where the optional low-pass reaches 0. float64."""
    f = np.asarray(frequency, dtype=np.float64)
    ssnr = np.exp(-100.0 * falloff * f) * 10.0 ** (3.0 * strength)
    if highpass_fraction > 0:
        ssnr *= 1.0 - np.cos(np.minimum(1.0, f * voxel_size / highpass_fraction) * (np.pi / 2))
    if lowpass_frequency is not None:
        ssnr *= np.cos(np.minimum(1.0, f / lowpass_frequency) * (np.pi / 2))
    return ssnr


def _filter_values(ctf_frequency: np.ndarray, ssnr_frequency: np.ndarray, voxel_size: float,
                   options: DeconvolutionOptions, first_zero: float) -> np.ndarray:
    """The filter (float64) at the frequencies the CTF and the SSNR are evaluated at."""
    contrast = -ctf(ctf_frequency, defocus=options.defocus, amplitude_contrast=options.amplitude_contrast,
                    cs=options.cs, voltage=options.voltage)
    if options.phase_flip:
        return np.sign(contrast)
    ssnr = adhoc_ssnr(ssnr_frequency, voxel_size, strength=options.strength, falloff=options.falloff,
                      highpass_fraction=options.highpass_fraction,
                      lowpass_frequency=first_zero if options.lowpass else None)
    return contrast * ssnr / (contrast * contrast * ssnr + 1.0)


def _filter_slabs(shape: Sequence[int], voxel_size: float, options: DeconvolutionOptions
                  ) -> Iterator[tuple[slice, np.ndarray]]:
    """(z slice, float32 filter) over the real-to-complex half spectrum of ``shape``, slab by slab."""
    nz, ny, nx = shape
    index = [np.fft.fftfreq(nz, 1.0 / nz), np.fft.fftfreq(ny, 1.0 / ny), np.fft.rfftfreq(nx, 1.0 / nx)]
    per_slab = max(1, _SLAB_VOXELS // (ny * (nx // 2 + 1)))
    if options.frequencies is Frequencies.MEMBRAIN:
        table = _membrain_table(shape, voxel_size, options)
        square = [np.rint(i * i).astype(np.int64) for i in index]
        for z0 in range(0, nz, per_slab):
            m = square[0][z0:z0 + per_slab, None, None] + square[1][None, :, None] + square[2][None, None, :]
            yield slice(z0, z0 + per_slab), table[m]
        return
    first_zero = first_ctf_zero(defocus=options.defocus, amplitude_contrast=options.amplitude_contrast,
                                cs=options.cs, voltage=options.voltage)
    fz, fy, fx = (i / (n * voxel_size) for i, n in zip(index, shape))
    for z0 in range(0, nz, per_slab):
        f = np.sqrt(fz[z0:z0 + per_slab, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)
        yield slice(z0, z0 + per_slab), _filter_values(f, f, voxel_size, options, first_zero).astype(np.float32)


def _membrain_table(shape: Sequence[int], voxel_size: float, options: DeconvolutionOptions) -> np.ndarray:
    """MemBrain-seg's filter for every integer squared index radius m = i² + j² + k² (float32)."""
    rms_edge = math.sqrt(sum(n * n for n in shape) / 3.0)
    radius = np.sqrt(np.arange(sum((n // 2) ** 2 for n in shape) + 1, dtype=np.float64))
    rounded = np.rint(radius)
    radius[0] = rounded[0] = _MEMBRAIN_ZERO_RADIUS * rms_edge
    scale = 1.0 / (rms_edge * voxel_size)
    values = _filter_values(rounded * scale, radius * scale, voxel_size, options, _membrain_first_zero(options))
    return values.astype(np.float32)


def deconvolution_filter(shape: Sequence[int], voxel_size: float, options: DeconvolutionOptions = _DEFAULT
                         ) -> np.ndarray:
    """The filter over the real-to-complex half spectrum of a (z, y, x) ``shape`` (``scipy.fft.rfftn``
    order), float32 of shape (nz, ny, nx // 2 + 1); ``voxel_size`` in Å."""
    shape = _checked_shape(shape)
    voxel_size = checks.number("voxel_size", voxel_size, 0.0, open_low=True)
    out = np.empty((shape[0], shape[1], shape[2] // 2 + 1), dtype=np.float32)
    for where, values in _filter_slabs(shape, voxel_size, options):
        out[where] = values
    return out


def deconvolve_tomogram(data: np.ndarray, voxel_size: float, *, defocus: float = _DEFAULT.defocus,
                        amplitude_contrast: float = _DEFAULT.amplitude_contrast, cs: float = _DEFAULT.cs,
                        voltage: float = _DEFAULT.voltage, strength: float = _DEFAULT.strength,
                        falloff: float = _DEFAULT.falloff, highpass_fraction: float = _DEFAULT.highpass_fraction,
                        lowpass: bool = _DEFAULT.lowpass, phase_flip: bool = _DEFAULT.phase_flip,
                        frequencies: Frequencies | str = _DEFAULT.frequencies, workers: int = -1) -> np.ndarray:
    """``data`` (z, y, x) deconvolved with one CTF (module docstring); float32 of the same shape.

    Args:
        data: the tomogram (any real dtype; a memory-mapped file is read once).
        voxel_size: Å (cubic voxels).
        defocus, amplitude_contrast, cs, voltage, strength, falloff, highpass_fraction, lowpass,
            phase_flip, frequencies: see :class:`DeconvolutionOptions` (Å, mm, kV).
        workers: threads for the Fourier transforms (-1: all cores).

    Raises:
        InputFileError: ``data`` is not a 3-D volume.
        ConfigError: an option or the voxel size is out of range.
    """
    options = DeconvolutionOptions(defocus=defocus, amplitude_contrast=amplitude_contrast, cs=cs, voltage=voltage,
                                   strength=strength, falloff=falloff, highpass_fraction=highpass_fraction,
                                   lowpass=lowpass, phase_flip=phase_flip,
                                   frequencies=frequencies)  # type: ignore[arg-type]
    shape = data.shape
    return _inverse(_filtered_half(data, voxel_size, options, workers), shape, workers)


def _filtered_half(data: np.ndarray, voxel_size: float, options: DeconvolutionOptions, workers: int) -> np.ndarray:
    """The float32 real-to-complex spectrum of ``data``, filtered in place."""
    import scipy.fft  # here, not at the top: the command line imports this module for its defaults

    shape = _checked_shape(data.shape)
    voxel_size = checks.number("voxel_size", voxel_size, 0.0, open_low=True)
    half = scipy.fft.rfftn(np.asarray(data, dtype=np.float32), workers=workers)
    for where, values in _filter_slabs(shape, voxel_size, options):
        half[where] *= values
    return half


def _inverse(half: np.ndarray, shape: Sequence[int], workers: int) -> np.ndarray:
    """The real volume of ``shape`` whose half spectrum is ``half`` (overwritten). In two steps because
    ``irfftn`` copies the whole half spectrum first; the complex step here runs in place."""
    import scipy.fft

    half = scipy.fft.ifftn(half, axes=(0, 1), workers=workers, overwrite_x=True)
    return scipy.fft.irfft(half, n=shape[2], axis=2, workers=workers).astype(np.float32, copy=False)


def _checked_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 3 or min(shape) < 1:
        raise InputFileError(f"deconvolution needs a 3-D (z, y, x) volume, not one of shape {tuple(shape)}")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def deconvolve_file(source: str | os.PathLike, destination: str | os.PathLike | None = None,
                    options: DeconvolutionOptions = _DEFAULT, *, voxel_size: float | None = None,
                    overwrite: bool = False, workers: int = -1) -> Path:
    """Deconvolve the tomogram ``source`` and write it (float32, the input's voxel size and origin;
    default ``<stem>_deconv.mrc`` beside it); returns the path written.

    Args:
        voxel_size: Å, replacing the header's (and its plausibility check).

    Raises:
        VoxelSizeError: anisotropic voxels, or a header voxel size outside
            :data:`~bilayer.io.PLAUSIBLE_VOXEL_SIZE` (1 Å usually means unset) when none is given.
        InputFileError, OutputError: an unreadable input; an output that exists or is the input.
    """
    source = Path(source)
    target = Path(destination) if destination is not None else source.with_name(output_name(source, "deconvolved"))
    ensure_output_dir(target.parent)
    check_output_path(target, overwrite=overwrite, protect=[source])
    volume = read_tomogram(source, voxel_size=voxel_size)
    size = volume.isotropic_voxel_size
    geometry = {"voxel_size": volume.voxel_size, "origin": volume.origin}
    shape = volume.shape
    half = _filtered_half(volume.data, size, options, workers)
    del volume  # unmap the input before the inverse transform allocates the output
    out = _inverse(half, shape, workers)
    del half
    return write_volume(target, out, **geometry, overwrite=overwrite, protect=[source], labels=[_label(options)])


def _label(options: DeconvolutionOptions) -> str:
    """The MRC header label naming the step and its microscope (≤ 80 characters)."""
    what = "phase flip" if options.phase_flip else f"strength {options.strength:g}, falloff {options.falloff:g}"
    return f"bilayer preprocess deconvolve: defocus {options.defocus:g} A, {what}"
