"""Noise and intensity textures of reconstructed tomograms that the Fourier-shaped noise of
:mod:`.imaging` lacks: the streaks of weighted back-projection and a multiplicative bias field
(appearance families, see :mod:`.appearance`)."""

from __future__ import annotations

import numpy as np

from bilayer.data.synthetic.fields import smooth_random_field

__all__ = ["backprojected_noise", "bias_field"]


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], voxel_size: float, amplitude: float) -> np.ndarray:
    """A smooth positive factor around 1 with standard deviation ``amplitude`` (uneven
    illumination and thickness, as a multiplicative bias), float32."""
    extent = float(min(shape)) * voxel_size
    field = smooth_random_field(rng, shape, voxel_size, extent * rng.uniform(0.2, 0.5))
    return np.clip(np.float32(1.0) + np.float32(amplitude) * field, 0.2, None).astype(np.float32)


def backprojected_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], tilt_min: float, tilt_max: float, n_tilts: int
) -> np.ndarray:
    """Noise of a weighted back-projection: white noise in each of ``n_tilts`` projections (tilt
    axis y, beam along z at tilt 0), ramp-filtered along x and smeared back through the volume
    along its tilt's direction, so that it streaks along the tilt directions as real tomograms
    do. Unit standard deviation, float32 (z, y, x)."""
    nz, ny, nx = shape
    width = int(np.ceil(np.hypot(nz, nx))) + 2
    ramp = np.abs(np.fft.rfftfreq(width)).astype(np.float32)
    z = np.arange(nz, dtype=np.float32)[:, None] - np.float32((nz - 1) / 2)
    x = np.arange(nx, dtype=np.float32)[None, :] - np.float32((nx - 1) / 2)
    out = np.zeros((ny, nz, nx), np.float32)
    rows = np.arange(ny)[:, None]
    for angle in np.radians(np.linspace(tilt_min, tilt_max, n_tilts)):
        projection = np.fft.irfft(np.fft.rfft(rng.standard_normal((ny, width)), axis=1) * ramp, n=width, axis=1)
        u = (x * np.float32(np.cos(angle)) + z * np.float32(np.sin(angle)) + np.float32((width - 1) / 2)).ravel()
        i0 = np.clip(np.floor(u).astype(np.int64), 0, width - 2)
        f = (u - i0).astype(np.float32)
        sampled = projection[rows, i0] * (1 - f) + projection[rows, i0 + 1] * f
        out += sampled.reshape(ny, nz, nx).astype(np.float32)
    out = np.ascontiguousarray(out.transpose(1, 0, 2))
    out -= np.float32(out.mean())
    return out / np.float32(out.std() or 1.0)
