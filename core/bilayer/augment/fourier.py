"""Fourier-space augmentations of MemBrain v2: amplitude-spectrum reshaping and a missing wedge.

Tomograms from different microscopes, defoci and reconstructions differ mostly in their radial
amplitude spectrum and in the shape of their missing wedge. Two augmentations make a network
indifferent to both (MemBrain-seg's ``fourier_augmentations.py``, branch ``FourierAugmentations``):

* amplitude: a smoothed 1-D random walk, one point per frequency shell up to Nyquist (patch/2
  points), becomes a radial 3-D gain that multiplies every Fourier coefficient. The gain is real
  and positive, so phases are kept; it is divided by its value at frequency 0, so the mean is kept.
* missing wedge: the coefficients a tilt series over ±``max_tilt_deg`` would not have measured
  are set to zero (beam along z, tilt axis y by default).

Both act in one real FFT round trip on the tensor's device. The random transform then
standardises the patch and, like MemBrain-seg, may apply the change only locally, blending
original and filtered patch with a large random Gaussian blob (always so for the wedge).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from bilayer.augment._common import (
    IMAGE_KEYS,
    RandImageTransform,
    RandMapped,
    Shape3,
    check_image,
    draw_blob,
    gaussian_blob,
    standardize,
)
from bilayer.checks import number, number_pair, probability
from bilayer.errors import ConfigError

__all__ = ["RandFourier", "RandFourierd", "fourier_amplitude", "missing_wedge", "radial_gain", "wedge_mask"]

_EDGE_TOLERANCE = 1e-6  # cycles/voxel: a coefficient on the wedge's edge is kept
_PROFILE_FLOOR = 1e-3  # of the profile's maximum, so that no shell (or the mean) is divided by zero
_FFT_DIMS = (-3, -2, -1)


def _rfft_frequencies(shape: Shape3, device: torch.device | None) -> list[torch.Tensor]:
    """Frequencies in cycles/voxel of the ``rfftn`` layout of a (Z, Y, X) volume, broadcastable over it."""
    z = torch.fft.fftfreq(shape[0], device=device).view(-1, 1, 1)
    y = torch.fft.fftfreq(shape[1], device=device).view(1, -1, 1)
    x = torch.fft.rfftfreq(shape[2], device=device).view(1, 1, -1)
    return [z, y, x]


def radial_gain(shape: Shape3, profile: Sequence[float] | torch.Tensor, *,
                device: torch.device | None = None) -> torch.Tensor:
    """A rotationally symmetric gain on the ``rfftn`` grid of a (Z, Y, X) volume.

    Point ``j`` of ``profile`` is the gain at spatial frequency ``j / (2 * len(profile))``
    cycles/voxel, so a profile of ``n / 2`` points spans frequency 0 to Nyquist of an n³ patch
    in steps of one Fourier shell. Between points the gain is interpolated linearly; beyond the
    last point (the corners of the cube, past Nyquist) it stays at the last value.

    Returns:
        float32 tensor of shape (Z, Y, X // 2 + 1).
    """
    p = torch.as_tensor(profile, dtype=torch.float32, device=device).flatten()
    low, high, weight = _shell_interpolation(tuple(shape), p.numel(), p.device)
    return torch.lerp(p[low], p[high], weight)


@functools.lru_cache(maxsize=8)
def _shell_interpolation(shape: Shape3, length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each ``rfftn`` coefficient: the profile points below and above its frequency, and the weight
    of the upper one. Cached per shape, as every patch of a training run has the same (read-only)."""
    fz, fy, fx = _rfft_frequencies(shape, device)
    position = torch.sqrt(fz**2 + fy**2 + fx**2).mul_(2 * length).clamp_(max=length - 1)
    low = position.floor()
    return low.long(), (low + 1).clamp_(max=length - 1).long(), position - low


def wedge_mask(shape: Shape3, max_tilt_deg: float, *, beam_axis: int = 0, tilt_axis: int = 1,
               device: torch.device | None = None) -> torch.Tensor:
    """Where a tilt series over ±``max_tilt_deg`` measures Fourier space, on the ``rfftn`` grid.

    A tilt image at angle α samples the central plane through the tilt axis at α from the third
    axis, so the series samples frequencies with |f_beam| ≤ tan(max_tilt)·|f_third|; the rest is
    the missing wedge. The tilt axis itself and the mean (frequency 0) are always measured.

    Args:
        shape: (Z, Y, X) of the volume.
        max_tilt_deg: largest tilt angle in degrees, in (0, 90).
        beam_axis: axis along the electron beam (0 = z).
        tilt_axis: axis the specimen is tilted about (1 = y).
        device: where to build the mask.

    Returns:
        bool tensor of shape (Z, Y, X // 2 + 1): True where measured (kept).
    """
    beam, third = _check_axes(beam_axis, tilt_axis)
    angle = math.radians(number("max_tilt_deg", max_tilt_deg, 0.0, 90.0, open_low=True, open_high=True))
    freqs = _rfft_frequencies(shape, device)
    kept = freqs[beam].abs() * math.cos(angle) <= freqs[third].abs() * math.sin(angle) + _EDGE_TOLERANCE
    return torch.broadcast_to(kept, (shape[0], shape[1], shape[2] // 2 + 1))


def _check_axes(beam_axis: int, tilt_axis: int) -> tuple[int, int]:
    if beam_axis not in range(3) or tilt_axis not in range(3) or beam_axis == tilt_axis:
        raise ConfigError(f"beam_axis={beam_axis!r} and tilt_axis={tilt_axis!r} must be two different axes "
                          "among 0 (z), 1 (y), 2 (x)")
    return beam_axis, 3 - beam_axis - tilt_axis


def _filter(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``x`` with its ``rfftn`` coefficients multiplied by ``gain`` (real or bool, Hermitian-symmetric)."""
    spectrum = torch.fft.rfftn(x, dim=_FFT_DIMS)
    spectrum.mul_(gain)
    return torch.fft.irfftn(spectrum, s=tuple(x.shape[-3:]), dim=_FFT_DIMS).to(x.dtype)


def fourier_amplitude(x: torch.Tensor, profile: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """``x`` with its amplitude spectrum reshaped by a radial ``profile``; phases and mean are kept.

    Every coefficient at frequency f is multiplied by ``profile(|f|) / profile[0]`` (see
    :func:`radial_gain`), a real positive factor: its phase does not change, and the mean
    (frequency 0) is multiplied by exactly 1.

    Args:
        x: (C, Z, Y, X) float tensor.
        profile: ≥ 2 finite non-negative gains, the first one positive.

    Returns:
        A new tensor like ``x``.

    Raises:
        ConfigError: bad ``x`` or ``profile``.
    """
    check_image(x)
    p = torch.as_tensor(profile, dtype=torch.float32, device=x.device).flatten()
    if p.numel() < 2 or not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or float(p[0]) <= 0:
        raise ConfigError(f"profile of {p.numel()} values must hold ≥ 2 finite gains ≥ 0, the first > 0")
    return _filter(x, radial_gain(tuple(x.shape[-3:]), p / p[0], device=x.device))


def missing_wedge(x: torch.Tensor, max_tilt_deg: float, *, beam_axis: int = 0, tilt_axis: int = 1) -> torch.Tensor:
    """``x`` with the Fourier coefficients of a missing wedge set to zero (see :func:`wedge_mask`).

    Args:
        x: (C, Z, Y, X) float tensor.
        max_tilt_deg: largest tilt angle in degrees, in (0, 90); smaller removes more.
        beam_axis: axis along the electron beam (0 = z).
        tilt_axis: axis the specimen is tilted about (1 = y).

    Returns:
        A new tensor like ``x``; every other coefficient is unchanged.

    Raises:
        ConfigError: bad ``x``, angle or axes.
    """
    check_image(x)
    return _filter(x, wedge_mask(tuple(x.shape[-3:]), max_tilt_deg, beam_axis=beam_axis, tilt_axis=tilt_axis,
                                 device=x.device))


def _walk_profile(rng: np.random.RandomState, length: int, step_sigma: float, smooth_sigma: float,
                  offset: float) -> np.ndarray:
    """|Gaussian-smoothed random walk + offset|, floored above 0 (MemBrain-seg's ``get_line_plot``)."""
    walk = np.cumsum(rng.normal(0.0, step_sigma, size=length))
    if smooth_sigma > 0:
        walk = gaussian_filter1d(walk, smooth_sigma, mode="reflect")
    profile = np.abs(walk + offset)
    return np.maximum(profile, _PROFILE_FLOOR * profile.max() + np.finfo(np.float32).tiny)


class RandFourier(RandImageTransform):
    """Random amplitude-spectrum reshaping and missing wedge, then standardisation.

    Each call draws: amplitude reshaping (``amplitude_prob``) with a walk of ``max(shape) // 2``
    points, step σ from ``step_sigma``, smoothing σ (in points) from ``smooth_sigma`` and offset
    from ``offset``; a missing wedge (``missing_wedge_prob``) with a largest tilt from
    ``max_tilt_deg``; and local blending (``local_prob``, always with a wedge) through a Gaussian
    blob whose width per axis is log-uniform in [n^0.75, n^1.5] voxels. A drawn patch comes out
    with mean 0 and standard deviation 1; a patch with neither change is returned as it is.

    Args:
        prob: probability of considering the transform at all.
        amplitude_prob, missing_wedge_prob, local_prob: per-part probabilities (MemBrain-seg: 0.5).
        step_sigma: range of the walk's step standard deviation (MemBrain v2: 0.2).
        smooth_sigma: range of the walk's Gaussian smoothing σ, in points (MemBrain-seg: 2-4).
        offset: range of the constant added to the walk (MemBrain-seg: 2-10).
        max_tilt_deg: range of the largest tilt angle, degrees (MemBrain-seg: 45).
        beam_axis, tilt_axis: wedge orientation, as in :func:`wedge_mask`.

    Raises:
        ConfigError: a probability outside [0, 1], a negative σ or offset, a tilt outside (0, 90).
    """

    def __init__(self, prob: float = 1.0, *, amplitude_prob: float = 0.5, step_sigma: tuple[float, float] = (0.2, 0.2),
                 smooth_sigma: tuple[float, float] = (2.0, 4.0), offset: tuple[float, float] = (2.0, 10.0),
                 missing_wedge_prob: float = 0.5, max_tilt_deg: tuple[float, float] = (45.0, 45.0),
                 beam_axis: int = 0, tilt_axis: int = 1, local_prob: float = 0.5) -> None:
        super().__init__(prob)
        self.amplitude_prob = probability("amplitude_prob", amplitude_prob)
        self.step_sigma = number_pair("step_sigma", step_sigma, 0.0)
        self.smooth_sigma = number_pair("smooth_sigma", smooth_sigma, 0.0)
        self.offset = number_pair("offset", offset, 0.0)
        self.missing_wedge_prob = probability("missing_wedge_prob", missing_wedge_prob)
        self.max_tilt_deg = number_pair("max_tilt_deg", max_tilt_deg, 0.0, 90.0, open_low=True, open_high=True)
        self.beam_axis, self.tilt_axis = beam_axis, tilt_axis
        _check_axes(beam_axis, tilt_axis)
        self.local_prob = probability("local_prob", local_prob)
        self.profile: np.ndarray | None = None
        self.tilt_deg: float | None = None
        self.blob: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def _draw(self, shape: Shape3) -> None:
        amplitude = self.R.rand() < self.amplitude_prob
        wedge = self.R.rand() < self.missing_wedge_prob
        local = self.R.rand() < self.local_prob or wedge
        self.profile = None
        if amplitude:
            step, smooth, offset = (self.R.uniform(*r) for r in (self.step_sigma, self.smooth_sigma, self.offset))
            self.profile = _walk_profile(self.R, max(2, max(shape) // 2), step, smooth, offset)
        self.tilt_deg = float(self.R.uniform(*self.max_tilt_deg)) if wedge else None
        self.blob = draw_blob(self.R, shape, [(n**0.75, n**1.5) for n in shape]) if local else None

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        if self.profile is None and self.tilt_deg is None:
            return img
        shape = tuple(img.shape[-3:])
        gain = torch.ones((), device=img.device)
        if self.profile is not None:
            gain = radial_gain(shape, self.profile / self.profile[0], device=img.device)
        if self.tilt_deg is not None:
            gain = gain * wedge_mask(shape, self.tilt_deg, beam_axis=self.beam_axis, tilt_axis=self.tilt_axis,
                                     device=img.device)
        out = standardize(_filter(img, gain))
        if self.blob is None:
            return out
        base = standardize(img)
        weight = gaussian_blob(shape, *self.blob, device=img.device, dtype=img.dtype)
        return standardize(base + weight * (out - base))


class RandFourierd(RandMapped):
    """Dict variant of :class:`RandFourier`, applied to the image only by default."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 1.0, *, amplitude_prob: float = 0.5,
                 step_sigma: tuple[float, float] = (0.2, 0.2), smooth_sigma: tuple[float, float] = (2.0, 4.0),
                 offset: tuple[float, float] = (2.0, 10.0), missing_wedge_prob: float = 0.5,
                 max_tilt_deg: tuple[float, float] = (45.0, 45.0), beam_axis: int = 0, tilt_axis: int = 1,
                 local_prob: float = 0.5) -> None:
        super().__init__(keys, RandFourier(prob, amplitude_prob=amplitude_prob, step_sigma=step_sigma,
                                           smooth_sigma=smooth_sigma, offset=offset,
                                           missing_wedge_prob=missing_wedge_prob, max_tilt_deg=max_tilt_deg,
                                           beam_axis=beam_axis, tilt_axis=tilt_axis, local_prob=local_prob))
