"""Simple membrane geometries as implicit surfaces: vesicles, tubes and large crossing sheets.

Each builder draws one object and returns a :class:`MembraneObject`: its surfaces as implicit
functions φ (Å, approximately signed distances, negative inside) on a crop of the volume, the
lumens whose contents differ from the surroundings, and a JSON-friendly summary. Compound
organelles (stacks, invaginations, mitochondria) live in :mod:`.organelles`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bilayer.data.synthetic.appearance import Appearance, restyle_bilayer
from bilayer.data.synthetic.config import SynthConfig
from bilayer.data.synthetic.curves import curve_field, random_curve
from bilayer.data.synthetic.fields import (
    Crop,
    ModeField,
    crop_around,
    crop_between,
    full_crop,
    log_uniform,
    random_rotation,
    random_unit_vector,
)
from bilayer.data.synthetic.render import Bilayer, draw_bilayer_params

__all__ = [
    "Frame",
    "Lumen",
    "MembraneKind",
    "MembraneObject",
    "Surface",
    "build_sheet",
    "build_tube",
    "build_vesicle",
    "draw_lumen",
    "ellipsoid_phi",
]

_PROFILE_MARGIN = 80.0  # Å beyond a mid-surface that a crop must keep (bilayer density and blur)
_MIN_CLEARANCE = 70.0  # Å between the mid-surfaces of two membranes that do not cross


class MembraneKind(str, enum.Enum):
    """The membrane geometries the generator draws."""

    VESICLE = "vesicle"
    TUBE = "tube"
    SHEET = "sheet"
    STACK = "stack"
    INVAGINATION = "invagination"
    MITOCHONDRION = "mitochondrion"


@dataclass(frozen=True)
class Frame:
    """Where a scene's objects go.

    Attributes:
        shape: Volume shape (z, y, x), voxels.
        voxel_size: Voxel size, Å.
        config: The generator's configuration.
        z_range: Physical z interval (Å) of the specimen inside the volume, where object
            centres are drawn.
        slab_z: Physical z interval (Å) of the whole specimen slab (may exceed the volume).
        max_height: Largest extent along z a free object may have (thin ice flattens vesicles,
            and keeps them inside), Å; infinite in a lamella.
        membrane_distance: Distance to the nearest membrane drawn so far (the canvas's map,
            updated as membranes are drawn), Å; builders use it to give up early on collisions.
        look: The scene's drawn appearance (how its membranes are rendered), or None.
        look_rng: The look's own random stream, so that a look never changes the geometry.
    """

    shape: tuple[int, int, int]
    voxel_size: float
    config: SynthConfig
    z_range: tuple[float, float]
    slab_z: tuple[float, float]
    max_height: float
    membrane_distance: np.ndarray
    look: Appearance | None = None
    look_rng: np.random.Generator | None = None

    @property
    def extent(self) -> np.ndarray:
        """Physical size of the volume (z, y, x), Å."""
        return np.array(self.shape, dtype=float) * self.voxel_size

    def random_point(self, rng: np.random.Generator, margin: float = 0.0) -> np.ndarray:
        """A point uniform in the specimen part of the volume, widened by ``margin`` Å."""
        ext = self.extent
        z = rng.uniform(self.z_range[0] - margin, self.z_range[1] + margin)
        y, x = rng.uniform(-margin, ext[1:] + margin)
        return np.array([z, y, x])

    def is_clear(self, points: np.ndarray, clearance: float) -> bool:
        """Whether every point (n, 3) inside the volume is at least ``clearance`` Å from all membranes."""
        idx = np.rint(points / self.voxel_size).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        if not inside.any():
            return True
        return bool(np.all(self.membrane_distance[tuple(idx[inside].T)] >= clearance))

    def bilayer(self, rng: np.random.Generator) -> Bilayer:
        """Draw a membrane profile from the configuration."""
        c = self.config
        bilayer = draw_bilayer_params(rng, c.leaflet_separation_range, c.leaflet_width_range, c.label_thickness)
        return restyle_bilayer(self.look_rng, bilayer, self.look)

    def perturbation(self, rng: np.random.Generator, radius: float, wavelength: float) -> ModeField:
        """A smooth shape deformation with amplitude drawn relative to ``radius`` Å."""
        amplitude = radius * rng.uniform(*self.config.shape_perturbation_range)
        return ModeField.random(rng, amplitude, wavelength)

    def full_crop(self) -> Crop:
        """The whole volume as a crop."""
        return full_crop(self.shape, self.voxel_size)


@dataclass
class Surface:
    """One membrane: an implicit mid-surface on a crop and its bilayer profile."""

    crop: Crop
    phi: np.ndarray
    bilayer: Bilayer


@dataclass
class Lumen:
    """A region (φ < 0 on a crop) whose contents have a different density than its surroundings.

    Attributes:
        crop: Where ``phi`` lives.
        phi: Implicit function of the region, Å, negative inside.
        density: Density offset of the contents.
        inset: Distance kept from the region's boundary (the membrane), Å.
        crowding: Factor (0..1) on the proteins and crowding texture inside the region.
    """

    crop: Crop
    phi: np.ndarray
    density: float
    inset: float
    crowding: float


@dataclass
class MembraneObject:
    """A drawn membrane object before rendering."""

    kind: MembraneKind
    surfaces: list[Surface] = field(default_factory=list)
    lumens: list[Lumen] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def ellipsoid_phi(q: tuple[np.ndarray, np.ndarray, np.ndarray], axes: np.ndarray) -> np.ndarray:
    """Approximate signed distance (Å) to an ellipsoid with semi-axes ``axes`` in its own frame.

    Uses k0 (k0 - 1) / k1 with k0 = |q/a| and k1 = |q/a²|: exact for spheres and first-order
    correct near the surface, which :func:`normalise_distance` then refines.
    """
    k0 = np.sqrt(sum((qi / np.float32(a)) ** 2 for qi, a in zip(q, axes, strict=True)))
    k1 = np.sqrt(sum((qi / np.float32(a * a)) ** 2 for qi, a in zip(q, axes, strict=True)))
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def draw_lumen(rng: np.random.Generator, crop: Crop, phi: np.ndarray, bilayer: Bilayer, p_dense: float) -> Lumen:
    """The contents of a region enclosed by a membrane: sometimes denser or lighter, often clearer
    than the cytoplasm (few proteins), kept clear of the membrane's own density."""
    density = float(rng.uniform(-0.3, 0.8)) if rng.random() < p_dense else 0.0
    crowding = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.2, 1.0))
    return Lumen(crop, phi, density, bilayer.separation / 2 + bilayer.width, crowding)


def build_vesicle(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A vesicle: a sphere or ellipsoid, sometimes deformed, double-walled or with dense contents."""
    c = frame.config
    radius = log_uniform(rng, *c.vesicle_diameter_range) / 2
    axes = np.full(3, radius)
    rotation = random_rotation(rng)
    if rng.random() < 0.4:
        axes = radius * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)])
    if 2 * axes.max() > frame.max_height:
        rotation = np.eye(3)
        axes[0] = min(axes[0], frame.max_height / 2 * rng.uniform(0.8, 1.0))
    center = frame.random_point(rng, margin=0.5 * radius)
    if np.isfinite(frame.max_height):
        lo, hi = frame.slab_z[0] + axes[0], frame.slab_z[1] - axes[0]
        center[0] = np.clip(center[0], lo, hi) if lo <= hi else 0.5 * (lo + hi)
    deform = frame.perturbation(rng, radius, radius * rng.uniform(1.5, 3.5))
    crop = crop_around(center, axes.max() * 1.5 + _PROFILE_MARGIN + 2 * frame.voxel_size, frame.shape, frame.voxel_size)
    if crop is None:
        return None
    phi = ellipsoid_phi(crop.rotated(center, rotation), axes) + deform.on_crop(crop)
    obj = MembraneObject(MembraneKind.VESICLE)
    outer = frame.bilayer(rng)
    obj.surfaces.append(Surface(crop, phi, outer))
    gap = 0.0
    if rng.random() < 0.15 and radius > 2 * c.sheet_lumen_range[0]:
        gap = float(rng.uniform(c.sheet_lumen_range[0], min(c.sheet_lumen_range[1], radius / 2)))
        obj.surfaces.append(Surface(crop, phi + np.float32(gap), frame.bilayer(rng)))
    lumen = draw_lumen(rng, crop, phi + np.float32(gap), outer, 0.5)
    obj.lumens.append(lumen)
    obj.summary = {
        "center": center.round(1).tolist(),
        "semi_axes": axes.round(1).tolist(),
        "double_gap": round(gap, 1),
        "lumen_density": round(lumen.density, 3),
    }
    return obj


def build_tube(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A membrane tube along a smooth random curve, open through the volume or with round caps."""
    c = frame.config
    radius = log_uniform(rng, *c.tube_diameter_range) / 2
    through = frame.random_point(rng)
    diagonal = float(np.linalg.norm(frame.extent))
    capped = rng.random() < 0.35
    if capped:
        before, after = rng.uniform(radius, max(1.5 * radius, 0.6 * diagonal), 2)
    else:
        before = after = diagonal + radius
    curve = random_curve(
        rng, through, before, after, persistence=radius * rng.uniform(8, 40), spacing=0.5 * frame.voxel_size
    )
    if not frame.is_clear(curve.points[:: max(1, int(radius / frame.voxel_size))], radius + _MIN_CLEARANCE):
        return None
    pad = radius + _PROFILE_MARGIN + 2 * frame.voxel_size
    crop = crop_between(curve.points.min(axis=0) - pad, curve.points.max(axis=0) + pad, frame.shape, frame.voxel_size)
    if crop is None:
        return None
    cf = curve_field(
        [curve], crop, frame.voxel_size, band=pad, inner=max(radius - _PROFILE_MARGIN - 2 * frame.voxel_size, 0.0)
    )
    if cf.band.size == 0:
        return None
    phi = cf.approx_distance - np.float32(radius)
    phi.ravel()[cf.band] = cf.radial - np.float32(radius)
    phi += frame.perturbation(rng, radius, radius * rng.uniform(3, 8)).on_crop(crop)
    bilayer = frame.bilayer(rng)
    obj = MembraneObject(MembraneKind.TUBE, [Surface(crop, phi, bilayer)])
    obj.lumens.append(draw_lumen(rng, crop, phi, bilayer, 0.4))
    obj.summary = {
        "through": through.round(1).tolist(),
        "radius": round(radius, 1),
        "capped": capped,
        "length": round(curve.length, 1),
    }
    return obj


def build_sheet(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A large membrane crossing the whole volume (a plane or a very large sphere), gently undulating,
    sometimes double (nuclear envelope); in a lamella it ends abruptly at the milled surfaces."""
    c = frame.config
    point = frame.random_point(rng)
    normal = random_unit_vector(rng)
    crop = frame.full_crop()
    if rng.random() < 0.6:
        dz, dy, dx = crop.relative(point)
        phi = np.float32(normal[0]) * dz + np.float32(normal[1]) * dy + np.float32(normal[2]) * dx
        shape_name, radius = "plane", float("inf")
    else:
        radius = log_uniform(rng, *c.organelle_diameter_range) / 2 * rng.uniform(1.0, 3.0)
        center = point - normal * radius
        dz, dy, dx = crop.relative(center)
        phi = np.sqrt(dz * dz + dy * dy + dx * dx) - np.float32(radius)
        shape_name = "sphere"
    amplitude = rng.uniform(0.0, 150.0)
    phi = phi + ModeField.random(rng, amplitude, rng.uniform(1500.0, 5000.0)).on_crop(crop)
    outer = frame.bilayer(rng)
    obj = MembraneObject(MembraneKind.SHEET, [Surface(crop, phi, outer)])
    gap = 0.0
    if rng.random() < 0.35:
        gap = float(rng.uniform(*c.sheet_lumen_range))
        obj.surfaces.append(Surface(crop, phi + np.float32(gap), frame.bilayer(rng)))
        region = np.maximum(phi, -phi - np.float32(gap))
    else:
        region = phi
    lumen = draw_lumen(rng, crop, region, outer, 0.5)
    lumen.crowding = max(lumen.crowding, 0.5)
    obj.lumens.append(lumen)
    obj.summary = {
        "shape": shape_name,
        "point": point.round(1).tolist(),
        "normal": normal.round(3).tolist(),
        "radius": round(radius, 1) if np.isfinite(radius) else None,
        "double_gap": round(gap, 1),
        "lumen_density": round(lumen.density, 3),
    }
    return obj
