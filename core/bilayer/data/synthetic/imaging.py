"""Imaging physics of cryo-electron tomography, applied to a density volume in Fourier space.

The reconstruction of a tilt series is modelled in 3D: the CTF of each projection depends on the
frequency magnitude |k| only (central-slice theorem), so the tomogram carries an isotropic 3D
CTF; only the tilts actually recorded are present, which leaves a missing wedge around kz (tilt
axis y, beam along z); weighted back-projection turns the projections' white noise into noise
that rises with frequency and shares the wedge. Dense objects come out dark.

Length: over 300 lines because the CTF, the wedge and the noise are one physical model whose
parameters are drawn together; the drawn looks and the noise fields already live apart
(``appearance.py``, ``noise.py``).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.fft

from bilayer.data.synthetic.config import SynthConfig
from bilayer.data.synthetic.fields import k_squared, log_uniform, smooth_random_field
from bilayer.data.synthetic.noise import backprojected_noise, bias_field

__all__ = [
    "CtfMode",
    "ImagingParams",
    "ctf",
    "draw_imaging",
    "edge_on_angle",
    "electron_wavelength",
    "missing_wedge_mask",
    "simulate",
]


_SCATTERER_AMPLITUDE = 0.3  # weight of the phase (CTF) part of a strong scatterer's contrast
_EMPTY_SCENE_RATIO = 0.5  # typical membrane contrast relative to a whole scene's, for scenes without membranes


class CtfMode(str, enum.Enum):
    """How the tomogram treats the CTF."""

    RAW = "raw"
    """Uncorrected: contrast reverses sign between CTF zeros (fringes around edges)."""

    PHASE_FLIPPED = "phase_flipped"
    """Phase-flipped: every frequency has the sign of low frequencies, zeros remain."""

    NONE = "none"
    """Fringes removed (an appearance family, see :mod:`.appearance`): the phase-flipped CTF up to
    its first maximum, flat beyond, as after an ideal correction."""


@dataclass(frozen=True)
class ImagingParams:
    """The imaging conditions of one tomogram.

    Attributes:
        defocus: Underfocus, Å (positive).
        defocus_spread: Range of defocus across the specimen and tilts, Å; damps CTF fringes.
        amplitude_contrast: Fraction of amplitude contrast.
        voltage_kv: Acceleration voltage, kV.
        spherical_aberration_mm: Cs, mm.
        ctf_mode: Raw or phase-flipped CTF.
        b_factor: B-factor of the envelope, Å².
        tilt_min: Most negative tilt, degrees.
        tilt_max: Most positive tilt, degrees.
        snr: Variance of the imaged bilayers over their label band, divided by the noise variance.
        noise_color: Exponent of the noise power's rise with frequency.
        lowpass: Cut-off of the final low-pass filter as a fraction of Nyquist, or None.
        interpolation: Power of the sinc roll-off of the reconstruction's interpolation and
            binning (0 none, 2 strong), applied to signal and noise.
        background: Amplitude of the smooth background relative to the image's std.
        inverted: Whether the contrast is inverted (dense bright).
        resolution: Effective resolution of an extra Gaussian low-pass of the signal (amplitude ½
            at 1/resolution), Å, or None.
        noise_tilts: Number of tilts of noise back-projected from a tilt series (streaks), or 0 for
            noise shaped in Fourier space by ``noise_color``.
        bias: Amplitude of a multiplicative bias field, or 0.
    """

    defocus: float
    defocus_spread: float
    amplitude_contrast: float
    voltage_kv: float
    spherical_aberration_mm: float
    ctf_mode: CtfMode
    b_factor: float
    tilt_min: float
    tilt_max: float
    snr: float
    noise_color: float
    lowpass: float | None
    interpolation: float
    background: float
    inverted: bool
    resolution: float | None = None
    noise_tilts: int = 0
    bias: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable values (enum as its value, floats rounded)."""
        out = asdict(self)
        out["ctf_mode"] = self.ctf_mode.value
        return {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in out.items()}


def draw_imaging(rng: np.random.Generator, config: SynthConfig, specimen_thickness: float) -> ImagingParams:
    """Draw the imaging conditions of one tomogram from the configuration."""
    return ImagingParams(
        defocus=float(rng.uniform(*config.defocus_range_um)) * 1e4,
        defocus_spread=float(specimen_thickness * rng.uniform(0.2, 1.0) + rng.uniform(0.0, 5000.0)),
        amplitude_contrast=float(rng.uniform(*config.amplitude_contrast_range)),
        voltage_kv=config.voltage_kv,
        spherical_aberration_mm=config.spherical_aberration_mm,
        ctf_mode=CtfMode.PHASE_FLIPPED if rng.random() < config.phase_flip_probability else CtfMode.RAW,
        b_factor=float(rng.uniform(*config.b_factor_range)),
        tilt_min=-float(rng.uniform(*config.tilt_range)),
        tilt_max=float(rng.uniform(*config.tilt_range)),
        snr=log_uniform(rng, *config.snr_range),
        noise_color=float(rng.uniform(*config.noise_color_range)),
        lowpass=float(rng.uniform(0.35, 0.9)) if rng.random() < config.lowpass_probability else None,
        interpolation=float(rng.uniform(0.0, 2.0)),
        background=float(rng.uniform(*config.background_range)),
        inverted=bool(rng.random() < config.invert_probability),
    )


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength, Å, at an acceleration voltage in kV (0.0197 Å at 300 kV)."""
    volts = voltage_kv * 1e3
    return 12.2643 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


def ctf(
    k: np.ndarray,
    defocus: float,
    amplitude_contrast: float,
    voltage_kv: float = 300.0,
    spherical_aberration_mm: float = 2.7,
    defocus_spread: float = 0.0,
    phase_flipped: bool = False,
) -> np.ndarray:
    """The contrast transfer function at spatial frequencies ``k`` (1/Å), float32.

    CTF = -(sqrt(1 - A²) sin χ + A cos χ), χ = π λ Δf k² - π/2 Cs λ³ k⁴, so that it is negative
    at low frequencies and dense objects come out dark. Averaging over defocus uniform in a range
    of width S (``defocus_spread``) multiplies it by sin(π λ S k²/2) / (π λ S k²/2), which damps
    the fringes at high frequency as the defocus gradient of a tilted, thick specimen does.

    Args:
        k: Spatial frequency magnitudes, 1/Å.
        defocus: Underfocus Δf, Å (positive).
        amplitude_contrast: Fraction of amplitude contrast A.
        voltage_kv: Acceleration voltage, kV.
        spherical_aberration_mm: Cs, mm.
        defocus_spread: Full width of the uniform defocus distribution, Å.
        phase_flipped: Take the absolute value of the oscillating part (phase-flipping correction).
    """
    lam = electron_wavelength(voltage_kv)
    cs = spherical_aberration_mm * 1e7
    k2 = np.asarray(k, dtype=np.float64) ** 2
    chi = np.pi * lam * defocus * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
    a = amplitude_contrast
    core = np.sqrt(1 - a * a) * np.sin(chi) + a * np.cos(chi)
    if phase_flipped:
        core = np.abs(core)
    if defocus_spread > 0:
        core = core * np.sinc(0.5 * lam * defocus_spread * k2)
    return (-core).astype(np.float32)


def missing_wedge_mask(shape: tuple[int, int, int], tilt_min: float, tilt_max: float) -> np.ndarray:
    """Boolean mask on the ``rfftn`` grid of ``shape``: True for frequencies the tilt series sampled.

    A tilt by α around y records the central plane whose in-plane (kz, kx) direction makes the
    angle atan(-kz/kx) = α with the kx axis; a tilt range [tilt_min, tilt_max] records the
    directions in between, for every ky. With a symmetric range ±θ this keeps exactly
    |kz| <= |kx| tan θ.

    Args:
        shape: Real-space shape (z, y, x).
        tilt_min: Most negative tilt, degrees.
        tilt_max: Most positive tilt, degrees.
    """
    kz = scipy.fft.fftfreq(shape[0])[:, None, None]
    kx = scipy.fft.rfftfreq(shape[2])[None, None, :]
    angle = np.degrees(np.arctan2(-kz, kx))
    inside = (angle >= tilt_min - 1e-9) & (angle <= tilt_max + 1e-9)
    dc_line = (kz == 0) & (kx == 0)
    return np.broadcast_to(inside | dc_line, (shape[0], shape[1], shape[2] // 2 + 1)).copy()


def edge_on_angle(nz: np.ndarray, nx: np.ndarray, tilt_min: float, tilt_max: float) -> np.ndarray:
    """Smallest angle (degrees) between the beam and a membrane plane over the tilt series.

    At tilt α the beam runs along (cos α, 0, sin α) in (z, y, x); a membrane with unit normal n
    is seen edge-on when n_z cos α + n_x sin α = 0, which is exactly when its normal direction
    is a recorded frequency of :func:`missing_wedge_mask`. A membrane that is never close to
    edge-on leaves almost nothing in the reconstruction.

    Args:
        nz: z component of the unit normals.
        nx: x component of the unit normals.
        tilt_min: Most negative tilt, degrees.
        tilt_max: Most positive tilt, degrees.
    """
    lo, hi = np.radians(tilt_min), np.radians(tilt_max)
    phase = np.arctan2(nx, nz)
    edge_on = np.mod(phase + np.pi, np.pi) - np.pi / 2  # the tilt in [-90°, 90°) that sees it edge-on
    at_lo = np.abs(nz * np.cos(lo) + nx * np.sin(lo))
    at_hi = np.abs(nz * np.cos(hi) + nx * np.sin(hi))
    sine = np.where((edge_on >= lo) & (edge_on <= hi), 0.0, np.minimum(at_lo, at_hi))
    return np.degrees(np.arcsin(np.clip(sine, 0.0, 1.0)))


def _ctf_without_fringes(k: np.ndarray, params: ImagingParams) -> np.ndarray:
    """A CTF with its fringes removed, as a perfect correction would leave it: the phase-flipped
    CTF up to its first maximum (low frequencies stay weak), then flat; dense comes out dark."""
    flipped = -ctf(k, params.defocus, params.amplitude_contrast, params.voltage_kv, params.spherical_aberration_mm,
                   phase_flipped=True)
    # the CTF is -sin(χ + asin A): its first maximum is at χ = π/2 - asin A, χ ≈ π λ Δf k²
    phase = 0.5 - np.arcsin(params.amplitude_contrast) / np.pi
    first_peak = np.sqrt(phase / (electron_wavelength(params.voltage_kv) * params.defocus))
    return -np.where(k < first_peak, flipped, np.float32(1.0)).astype(np.float32)


def _apply(density: np.ndarray, transfer: np.ndarray) -> np.ndarray:
    """Filter a real volume by a transfer function on its rfftn grid."""
    out = scipy.fft.irfftn(scipy.fft.rfftn(density, workers=-1) * transfer, s=density.shape, workers=-1)
    return out.astype(np.float32, copy=False)


def _lowpass(
    shape: tuple[int, ...], voxel_size: float, k: np.ndarray, cutoff: float | None, interpolation: float
) -> np.ndarray:
    """Final filters common to signal and noise: optional Butterworth low-pass (order 4) and the
    separable sinc roll-off of linear interpolation / binning, raised to ``interpolation``."""
    rolloff = np.ones(k.shape, np.float32)
    if interpolation > 0:
        axes = (
            scipy.fft.fftfreq(shape[0])[:, None, None],
            scipy.fft.fftfreq(shape[1])[None, :, None],
            scipy.fft.rfftfreq(shape[2])[None, None, :],
        )
        for f in axes:
            rolloff = rolloff * np.abs(np.sinc(f)).astype(np.float32) ** np.float32(interpolation)
    if cutoff is None:
        return rolloff
    nyquist = 0.5 / voxel_size
    return rolloff / np.sqrt(1.0 + (k / np.float32(cutoff * nyquist)) ** 8).astype(np.float32)


def simulate(
    rng: np.random.Generator,
    density: np.ndarray,
    voxel_size: float,
    params: ImagingParams,
    reference: np.ndarray,
    reference_mask: np.ndarray,
    scatterer: np.ndarray | None = None,
) -> np.ndarray:
    """Turn a density volume into a normalised tomogram with the given imaging conditions.

    The noise level is set from the imaged contrast of ``reference`` (the bilayers alone) over
    ``reference_mask`` (their label band), so that the SNR says how visible the membranes are,
    whatever else (gold, carbon, vacuum edges) the scene contains.

    Args:
        rng: Random generator (noise, background).
        density: Relative density (z, y, x), float32, everything included.
        voxel_size: Voxel size, Å.
        params: Imaging conditions.
        reference: Density whose imaged standard deviation over ``reference_mask`` is the signal
            of the SNR (the membranes alone).
        reference_mask: Where that standard deviation is measured; if empty, the whole volume of
            ``density`` is used, scaled by a typical membrane-to-scene ratio.
        scatterer: Density of strong scatterers (gold, crystalline ice), imaged mostly through
            amplitude contrast, so that they come out dark at any defocus; None for none.

    Returns:
        The tomogram, float32, mean 0 and standard deviation 1.
    """
    shape = density.shape
    k = np.sqrt(k_squared(shape, voxel_size))
    wedge = missing_wedge_mask(shape, params.tilt_min, params.tilt_max)
    lowpass = _lowpass(shape, voxel_size, k, params.lowpass, params.interpolation)
    if params.ctf_mode is CtfMode.NONE:
        transfer = _ctf_without_fringes(k, params)
    else:
        transfer = ctf(
            k,
            params.defocus,
            params.amplitude_contrast,
            params.voltage_kv,
            params.spherical_aberration_mm,
            params.defocus_spread,
            params.ctf_mode is CtfMode.PHASE_FLIPPED,
        )
    transfer *= np.exp(np.float32(-params.b_factor / 4.0) * k * k)
    if params.resolution:
        transfer *= np.exp(np.float32(-np.log(2.0) * params.resolution**2) * k * k)
    transfer = transfer * wedge * lowpass
    signal = _apply(density, transfer)
    if scatterer is not None and scatterer.any():
        amplitude = np.exp(np.float32(-params.b_factor / 4.0) * k * k) * wedge * lowpass
        signal += _apply(scatterer, np.float32(_SCATTERER_AMPLITUDE) * transfer - amplitude)
    if reference_mask.any():
        signal_std = float(_apply(reference, transfer)[reference_mask].std())
    else:
        signal_std = _EMPTY_SCENE_RATIO * float(signal.std())
    signal_std = signal_std or 1.0

    if params.noise_tilts:
        white = backprojected_noise(rng, shape, params.tilt_min, params.tilt_max, params.noise_tilts)
        shaping = np.float32(1.0)
    else:
        white = rng.standard_normal(shape, dtype=np.float32)
        shaping = (np.float32(0.05) + k * np.float32(2 * voxel_size)) ** np.float32(params.noise_color / 2)
    noise = scipy.fft.irfftn(scipy.fft.rfftn(white, workers=-1) * (shaping * wedge * lowpass), s=shape, workers=-1)
    noise = noise.astype(np.float32, copy=False)
    noise /= np.float32(noise.std() or 1.0)
    image = signal + np.float32(signal_std / np.sqrt(params.snr)) * noise

    if params.background > 0:
        extent = float(min(shape)) * voxel_size
        blob = smooth_random_field(rng, shape, voxel_size, extent * rng.uniform(0.15, 0.4))
        ramp_dir = rng.standard_normal(3)
        ramp = sum(
            np.float32(ramp_dir[i])
            * np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if j == i else 1 for j in range(3)])
            for i, n in enumerate(shape)
        )
        background = blob + ramp
        background /= np.float32(background.std() or 1.0)
        image += np.float32(params.background * image.std()) * background
    if params.bias > 0:
        image -= np.float32(image.mean())
        image *= bias_field(rng, shape, voxel_size, params.bias)
    if params.inverted:
        image = -image
    image -= np.float32(image.mean())
    image /= np.float32(image.std() or 1.0)
    return image.astype(np.float32, copy=False)
