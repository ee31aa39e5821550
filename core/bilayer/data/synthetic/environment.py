"""The specimen slab: a FIB-milled lamella or an ice layer, with vacuum above and below.

A slab is bounded by two roughly parallel faces, slightly tilted and gently rough. Everything
biological is cut where the slab ends (milling cuts straight through membranes), and the faces
are where gold beads and ice contamination sit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bilayer.data.synthetic.fields import Crop, ModeField, solid_fraction

__all__ = ["Slab", "draw_slab"]

_CURTAINING_PROBABILITY = 0.4


@dataclass(frozen=True)
class Slab:
    """A slab of specimen between two faces.

    Attributes:
        center: A point on the slab's mid-plane (z, y, x), Å.
        normal: Unit normal of the faces (close to z).
        half_thickness: Half the slab thickness, Å.
        roughness: Smooth deviation of the faces, Å.
        vacuum: Density of the vacuum outside, relative to the solvent (negative).
    """

    center: np.ndarray
    normal: np.ndarray
    half_thickness: float
    roughness: ModeField
    vacuum: float

    def signed_distance(self, crop: Crop) -> np.ndarray:
        """Distance to the nearest face on a crop, Å: negative inside the slab."""
        dz, dy, dx = crop.relative(self.center)
        n = self.normal.astype(np.float32)
        height = n[0] * dz + n[1] * dy + n[2] * dx
        return np.abs(height) - np.float32(self.half_thickness) + self.roughness.on_crop(crop)

    def inside(self, crop: Crop, voxel_size: float) -> np.ndarray:
        """Anti-aliased fraction (0..1) of each voxel that lies in the slab."""
        return solid_fraction(self.signed_distance(crop), voxel_size)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether points (n, 3) in Å lie inside the slab, at least ``margin`` Å from its faces."""
        height = (points - self.center) @ self.normal
        return np.abs(height) + self.roughness.at(points) < self.half_thickness - margin

    def face_point(self, rng: np.random.Generator, extent: np.ndarray, side: int) -> np.ndarray:
        """A point on the top (side=+1) or bottom (-1) face above a random (y, x) of the volume."""
        y, x = rng.uniform(0, extent[1:])
        n = self.normal
        base = np.array([self.center[0], y, x])
        # Solve n·(p - c) = side * h for p = (z, y, x) with the given y and x.
        offset = side * self.half_thickness - n[1] * (y - self.center[1]) - n[2] * (x - self.center[2])
        base[0] = self.center[0] + offset / n[0]
        return base

    def z_interval(self) -> tuple[float, float]:
        """The z interval (Å) the slab spans at the volume's centre (may exceed the volume)."""
        half = self.half_thickness / abs(self.normal[0])
        return float(self.center[0] - half), float(self.center[0] + half)

    def z_range(self, extent: np.ndarray) -> tuple[float, float]:
        """The z interval (Å) of the volume covered by the slab at the volume's centre."""
        lo, hi = self.z_interval()
        return max(lo, 0.0), min(hi, float(extent[0]))

    def summary(self) -> dict[str, Any]:
        tilt = float(np.degrees(np.arccos(min(abs(self.normal[0]), 1.0))))
        return {
            "thickness": round(2 * self.half_thickness, 1),
            "center_z": round(float(self.center[0]), 1),
            "tilt_deg": round(tilt, 2),
            "vacuum_density": round(self.vacuum, 3),
        }


def _with_curtains(rng: np.random.Generator, field: ModeField) -> ModeField:
    """Add stripes of thickness variation running along a random in-plane milling direction."""
    n = int(rng.integers(3, 8))
    across = rng.uniform(0, 2 * np.pi)
    wavelengths = rng.uniform(150.0, 1200.0, n)
    direction = np.array([0.0, np.sin(across), np.cos(across)])
    wavevectors = direction[None, :] * (2 * np.pi / wavelengths)[:, None]
    amplitudes = rng.uniform(5.0, 40.0, n) * np.exp(1j * rng.uniform(0, 2 * np.pi, n))
    return ModeField(np.concatenate([field.amplitudes, amplitudes]), np.concatenate([field.wavevectors, wavevectors]))


def draw_slab(
    rng: np.random.Generator,
    extent: np.ndarray,
    thickness_range: tuple[float, float],
    tilt_max: float,
    vacuum_range: tuple[float, float],
    curtaining: bool,
) -> Slab:
    """Draw a slab whose mid-plane passes through the volume, mostly covering it.

    Args:
        rng: Random generator.
        extent: Physical size of the volume (z, y, x), Å.
        thickness_range: Slab thickness range, Å.
        tilt_max: Largest tilt of the faces away from the xy plane, degrees.
        vacuum_range: Range of the vacuum's density relative to the solvent.
        curtaining: Add FIB curtaining: thickness stripes along a random milling direction.
    """
    thickness = float(rng.uniform(*thickness_range))
    tilt = np.radians(rng.uniform(0.0, tilt_max))
    azimuth = rng.uniform(0, 2 * np.pi)
    normal = np.array([np.cos(tilt), np.sin(tilt) * np.sin(azimuth), np.sin(tilt) * np.cos(azimuth)])
    # The mid-plane sits anywhere from "slab fills the volume" to "a face crosses the middle".
    slack = max(thickness / 2 - extent[0] / 2, 0.0) + 0.5 * min(thickness / 2, extent[0] / 2)
    z = extent[0] / 2 + rng.uniform(-slack, slack)
    center = np.array([z, extent[1] / 2, extent[2] / 2])
    roughness = ModeField.random(rng, rng.uniform(5.0, 60.0), rng.uniform(800.0, 3000.0))
    if curtaining and rng.random() < _CURTAINING_PROBABILITY:
        roughness = _with_curtains(rng, roughness)
    return Slab(center, normal, thickness / 2, roughness, -float(rng.uniform(*vacuum_range)))
