"""Smooth random fields, crops and sub-voxel distance helpers shared by every object builder.

Objects are built on the crop of the volume their bounding sphere covers, in physical
coordinates: voxel (i, j, k) has its centre at (i, j, k) * voxel_size Å, in (z, y, x) order.
Shapes are implicit functions φ (approximately a signed distance in Å, negative inside);
:func:`normalise_distance` turns them into sub-voxel accurate distances with φ/|∇φ|, which is
what keeps a two-voxel-thick bilayer from coming out jagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = [
    "DISTANCE_CLIP",
    "Crop",
    "ModeField",
    "crop_around",
    "crop_between",
    "full_crop",
    "k_squared",
    "log_uniform",
    "normalise_distance",
    "random_rotation",
    "random_unit_vector",
    "smooth_max",
    "smooth_min",
    "smooth_random_field",
    "solid_fraction",
]

_MIN_GRADIENT = 0.2  # floor of |∇φ| so that φ/|∇φ| stays finite on medial axes, far from surfaces
DISTANCE_CLIP = 200.0  # Å; distances beyond this are only known to be beyond it


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A draw from [lo, hi] uniform in log space (lo, hi > 0), so that every scale is as common."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A direction uniform on the sphere, (z, y, x)."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform over SO(3) (QR of a Gaussian matrix with fixed signs)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class Crop:
    """A box of voxels of the volume with their physical coordinates.

    Attributes:
        slices: Index slices (z, y, x) into the full volume.
        z: Coordinates of the voxel centres along z, Å, shaped (n, 1, 1) for broadcasting.
        y: Same along y, shaped (1, n, 1).
        x: Same along x, shaped (1, 1, n).
    """

    slices: tuple[slice, slice, slice]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.shape[0], self.y.shape[1], self.x.shape[2])

    def within(self, parent: Crop) -> tuple[slice, slice, slice]:
        """This crop's slices relative to a larger ``parent`` crop that contains it."""
        return tuple(
            slice(s.start - p.start, s.stop - p.start) for s, p in zip(self.slices, parent.slices, strict=True)
        )  # type: ignore[return-value]

    def relative(self, center: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinates relative to ``center`` (z, y, x) in Å."""
        return self.z - np.float32(center[0]), self.y - np.float32(center[1]), self.x - np.float32(center[2])

    def rotated(self, center: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Full-size coordinates of the crop in an object's frame: rows of ``rotation`` are its axes."""
        dz, dy, dx = self.relative(center)
        r = rotation.astype(np.float32)
        return tuple(r[i, 0] * dz + r[i, 1] * dy + r[i, 2] * dx for i in range(3))  # type: ignore[return-value]


def crop_around(center: np.ndarray, radius: float, shape: tuple[int, int, int], voxel_size: float) -> Crop | None:
    """The crop of the volume within ``radius`` Å of ``center`` along each axis, or None if empty.

    Args:
        center: Physical centre (z, y, x), Å.
        radius: Half-width of the box, Å.
        shape: Volume shape (z, y, x), voxels.
        voxel_size: Voxel size, Å.
    """
    c = np.asarray(center, dtype=float)
    return crop_between(c - radius, c + radius, shape, voxel_size)


def full_crop(shape: tuple[int, int, int], voxel_size: float) -> Crop:
    """The whole volume as a crop."""
    axes = [np.arange(n, dtype=np.float32) * np.float32(voxel_size) for n in shape]
    return Crop(
        slices=(slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2])),
        z=axes[0][:, None, None],
        y=axes[1][None, :, None],
        x=axes[2][None, None, :],
    )


def crop_between(low: np.ndarray, high: np.ndarray, shape: tuple[int, int, int], voxel_size: float) -> Crop | None:
    """The crop of the volume between physical corners ``low`` and ``high`` (Å), or None if empty."""
    slices = []
    for lo_a, hi_a, n in zip(low, high, shape, strict=True):
        lo = max(int(np.floor(lo_a / voxel_size)), 0)
        hi = min(int(np.ceil(hi_a / voxel_size)) + 1, n)
        if hi <= lo:
            return None
        slices.append(slice(lo, hi))
    axes = [np.arange(s.start, s.stop, dtype=np.float32) * np.float32(voxel_size) for s in slices]
    return Crop(
        slices=(slices[0], slices[1], slices[2]),
        z=axes[0][:, None, None],
        y=axes[1][None, :, None],
        x=axes[2][None, None, :],
    )


@dataclass(frozen=True)
class ModeField:
    """A smooth random function of position: a sum of a few plane waves of long wavelength.

    Used for low-frequency shape perturbations and bends. Evaluating it on a crop is a sum of
    separable terms, done as one small complex matrix product rather than per-voxel cosines.

    Attributes:
        amplitudes: Complex amplitude of each wave (phase folded in), Å or any unit.
        wavevectors: Angular wave vectors (n, 3) in rad/Å, (z, y, x).
    """

    amplitudes: np.ndarray
    wavevectors: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, wavelength: float, n_modes: int = 6) -> ModeField:
        """A field with standard deviation about ``amplitude`` and wavelengths around ``wavelength`` Å."""
        directions = rng.standard_normal((n_modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength * rng.uniform(0.7, 1.5, n_modes)
        wavevectors = directions * (2 * np.pi / lengths)[:, None]
        weights = rng.standard_normal(n_modes) * amplitude * np.sqrt(2.0 / n_modes)
        phases = rng.uniform(0, 2 * np.pi, n_modes)
        return cls(amplitudes=weights * np.exp(1j * phases), wavevectors=wavevectors)

    def on_crop(self, crop: Crop) -> np.ndarray:
        """The field at every voxel of ``crop``, float32 of the crop's shape."""
        if len(self.amplitudes) == 0:
            return np.zeros(crop.shape, np.float32)
        z, y, x = crop.z.ravel(), crop.y.ravel(), crop.x.ravel()
        ez = self.amplitudes[:, None] * np.exp(1j * self.wavevectors[:, 0:1] * z[None, :])
        ey = np.exp(1j * self.wavevectors[:, 1:2] * y[None, :])
        ex = np.exp(1j * self.wavevectors[:, 2:3] * x[None, :]).astype(np.complex64)
        ezy = (ez[:, :, None] * ey[:, None, :]).reshape(len(self.amplitudes), -1).astype(np.complex64)
        out = (ezy.T @ ex).real
        return out.reshape(crop.shape).astype(np.float32, copy=False)

    def at(self, points: np.ndarray) -> np.ndarray:
        """The field at physical points (n, 3) in Å, float64 (n,)."""
        return (np.exp(1j * points @ self.wavevectors.T) @ self.amplitudes).real


def smooth_random_field(
    rng: np.random.Generator, shape: tuple[int, int, int], voxel_size: float, correlation_length: float
) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation, float32 (z, y, x).

    Args:
        rng: Random generator.
        shape: Volume shape, voxels.
        voxel_size: Voxel size, Å.
        correlation_length: Standard deviation of the Gaussian filter, Å.
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    spectrum = scipy.fft.rfftn(noise, workers=-1)
    k2 = k_squared(shape, voxel_size)
    spectrum *= np.exp(-2.0 * np.pi**2 * correlation_length**2 * k2).astype(np.float32)
    field = scipy.fft.irfftn(spectrum, s=shape, workers=-1).astype(np.float32, copy=False)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def k_squared(shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """|k|² in 1/Å² on the rfftn grid of ``shape``, broadcastable float32."""
    kz = scipy.fft.fftfreq(shape[0], voxel_size).astype(np.float32)[:, None, None]
    ky = scipy.fft.fftfreq(shape[1], voxel_size).astype(np.float32)[None, :, None]
    kx = scipy.fft.rfftfreq(shape[2], voxel_size).astype(np.float32)[None, None, :]
    return kz**2 + ky**2 + kx**2


def _central_difference(a: np.ndarray, axis: int, step: float) -> np.ndarray:
    """Derivative of ``a`` along ``axis`` by central differences (one-sided at the edges)."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    if n < 2:
        return out
    a_m = np.moveaxis(a, axis, 0)
    o_m = np.moveaxis(out, axis, 0)
    np.subtract(a_m[2:], a_m[:-2], out=o_m[1:-1])
    o_m[1:-1] *= np.float32(0.5 / step)
    o_m[0] = (a_m[1] - a_m[0]) / step
    o_m[-1] = (a_m[-1] - a_m[-2]) / step
    return out


def normalise_distance(
    phi: np.ndarray, voxel_size: float, clip: float = DISTANCE_CLIP
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Signed distance d = φ/|∇φ| (Å) and the unit normal field of an implicit surface.

    φ/|∇φ| is exact to first order near the zero set of any smooth φ, which gives sub-voxel
    accuracy for perturbed and smoothly combined shapes whose φ is only approximately a
    distance. φ is first clipped to ±``clip``: far from the surface only the sign matters, and
    clipping removes the jumps that primitives merged on sub-crops leave far away (a jump would
    otherwise read as a steep gradient, hence a small distance, hence a false label).

    Args:
        phi: Implicit function on a crop, float32, Å, negative inside.
        voxel_size: Voxel size, Å.
        clip: Distance beyond which φ is flattened, Å; every |d| >= clip is reported as >= clip.

    Returns:
        ``(d, (nz, ny, nx))``: the distance (Å) and the unit normal components, all float32.
    """
    phi = np.clip(phi, np.float32(-clip), np.float32(clip))
    grads = [_central_difference(phi, axis, voxel_size) for axis in range(3)]
    norm = np.sqrt(grads[0] ** 2 + grads[1] ** 2 + grads[2] ** 2)
    np.maximum(norm, np.float32(_MIN_GRADIENT), out=norm)
    d = phi / norm
    normals = tuple(g / norm for g in grads)
    return d.astype(np.float32, copy=False), normals


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union of implicit shapes) with blend radius ``k`` Å."""
    h = np.clip(np.float32(k) - np.abs(a - b), 0, None) / np.float32(k)
    return np.minimum(a, b) - h * h * np.float32(k * 0.25)


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum (smooth intersection / subtraction) with blend radius ``k`` Å."""
    return -smooth_min(-a, -b, k)


def solid_fraction(d: np.ndarray, voxel_size: float) -> np.ndarray:
    """Anti-aliased occupancy (0..1) of a solid whose signed distance is ``d`` Å (negative inside)."""
    return np.clip(np.float32(0.5) - d / np.float32(voxel_size), 0, 1)
