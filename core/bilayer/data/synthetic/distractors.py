"""Non-membrane objects a segmenter must not call membrane: filaments, dense granules, carbon
film edges, ice contamination and gold fiducials.

Microtubules are the classic confounder (a hollow 25 nm tube whose wall looks like a membrane
in cross-section); carbon edges, crystals and granules give sharp, dense boundaries whose CTF
fringes look like lines. All of them get label 0.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import scipy.ndimage

from bilayer.data.synthetic.curves import Curve, curve_field, random_curve
from bilayer.data.synthetic.environment import Slab
from bilayer.data.synthetic.fields import (
    ModeField,
    crop_around,
    log_uniform,
    random_rotation,
    random_unit_vector,
    solid_fraction,
)
from bilayer.data.synthetic.membranes import Frame, ellipsoid_phi
from bilayer.data.synthetic.render import Canvas

__all__ = ["DistractorKind", "add_carbon", "add_contamination", "add_filaments", "add_gold", "add_granules"]

_MT_WALL_RADIUS = 100.0  # Å, centre of the microtubule wall (outer diameter 25 nm)
_MT_WALL_HALF = 25.0  # Å, half the wall thickness
_MT_PROTOFILAMENTS = 13
_TUBULIN_REPEAT = 40.0  # Å, monomer spacing along a protofilament
_ACTIN_RADIUS = 35.0  # Å
_ACTIN_HALF_PITCH = 360.0  # Å, crossover repeat of the two-start helix
_GRANULE_CANDIDATES = 16
_GRAIN_SIZE = 15.0  # Å, σ of the texture inside granules and carbon
_MEMBRANE_CLEARANCE = 35.0  # Å from a membrane mid-surface where filaments are cut away


class DistractorKind(str, enum.Enum):
    """The non-membrane objects the generator draws."""

    RIBOSOME = "ribosome"
    PROTEIN = "protein"
    CROWDING = "crowding"
    MEMBRANE_PROTEIN = "membrane_protein"
    MICROTUBULE = "microtubule"
    ACTIN = "actin"
    GRANULE = "granule"
    CARBON = "carbon"
    ICE_CONTAMINATION = "ice_contamination"
    GOLD = "gold"


def _modulation(period: float, voxel_size: float, depth: float) -> float:
    """Depth of a periodic texture, dropped when the period is under three voxels (it would alias)."""
    return depth if period >= 3 * voxel_size else 0.0


def _grain(rng: np.random.Generator, shape: tuple[int, ...], voxel_size: float, depth: float) -> np.ndarray:
    """A multiplicative texture 1 ± ``depth`` with ~2 nm grains (not voxel-level speckle)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    smooth = scipy.ndimage.gaussian_filter(noise, max(_GRAIN_SIZE / voxel_size, 0.7))
    return 1 + np.float32(depth) * smooth / np.float32(max(float(smooth.std()), 1e-6))


def add_filaments(rng: np.random.Generator, frame: Frame, canvas: Canvas, count: int) -> list[dict[str, Any]]:
    """Microtubules (hollow, 13 protofilaments) and actin filaments or bundles through the volume."""
    vs = frame.voxel_size
    diagonal = float(np.linalg.norm(frame.extent))
    curves: list[Curve] = []
    kinds: list[DistractorKind] = []
    amplitudes: list[float] = []
    summaries = []
    for _ in range(count):
        microtubule = rng.random() < 0.4
        kind = DistractorKind.MICROTUBULE if microtubule else DistractorKind.ACTIN
        persistence = log_uniform(rng, 2e4, 2e5) if microtubule else log_uniform(rng, 3e3, 5e4)
        curve = random_curve(rng, frame.random_point(rng), diagonal, diagonal, persistence, 0.5 * vs)
        copies = [curve]
        if not microtubule and rng.random() < 0.3:
            for _ in range(int(rng.integers(2, 8))):
                shift = rng.uniform(-1, 1, 2) * rng.uniform(80.0, 250.0)
                binormals = np.cross(curve.tangents, curve.normals)
                points = curve.points + shift[0] * curve.normals + shift[1] * binormals
                copies.append(Curve(points, curve.tangents, curve.normals, curve.arclength))
        for c in copies:
            curves.append(c)
            kinds.append(kind)
            amplitudes.append(float(rng.uniform(0.8, 1.3)))
        summaries.append(
            {
                "kind": kind.value,
                "through": curve.points[len(curve.points) // 2].round(1).tolist(),
                "copies": len(copies),
            }
        )
    if not curves:
        return summaries
    crop = frame.full_crop()
    cf = curve_field(curves, crop, vs, band=_MT_WALL_RADIUS + _MT_WALL_HALF + 3 * vs)
    is_mt = np.array([k is DistractorKind.MICROTUBULE for k in kinds])[cf.curve_id]
    amp = np.array(amplitudes, np.float32)[cf.curve_id]
    r, s, a = cf.radial, cf.axial, cf.angle
    pf = _modulation(2 * np.pi * _MT_WALL_RADIUS / _MT_PROTOFILAMENTS, vs, 0.35)
    ax = _modulation(_TUBULIN_REPEAT, vs, 0.2)
    wall = solid_fraction(np.abs(r - np.float32(_MT_WALL_RADIUS)) - np.float32(_MT_WALL_HALF), vs)
    wall *= (
        1
        + np.float32(pf) * np.cos(_MT_PROTOFILAMENTS * a)
        + np.float32(ax) * np.cos(np.float32(2 * np.pi / _TUBULIN_REPEAT) * s)
    )
    twist = np.cos(2 * (a - np.float32(np.pi / _ACTIN_HALF_PITCH) * s))
    actin = solid_fraction(r - np.float32(_ACTIN_RADIUS) * (1 + np.float32(0.15) * twist), vs)
    values = amp * np.where(is_mt, wall, actin)
    clearance = canvas.membrane_distance.ravel()[cf.band]
    values *= np.clip((clearance - _MEMBRANE_CLEARANCE) / np.float32(_MEMBRANE_CLEARANCE), 0, 1)
    canvas.density.ravel()[cf.band] += values
    return summaries


def add_granules(rng: np.random.Generator, frame: Frame, canvas: Canvas, count: int) -> list[dict[str, Any]]:
    """Dense granules (glycogen, calcium phosphate, lipid droplets): smooth dense blobs that stay
    clear of the membranes."""
    out = []
    for _ in range(count):
        # Go where there is most room among a few candidates, and shrink to fit.
        candidates = np.array([frame.random_point(rng) for _ in range(_GRANULE_CANDIDATES)])
        idx = np.minimum((candidates / frame.voxel_size).astype(int), np.array(frame.shape) - 1)
        room = canvas.membrane_distance[tuple(np.maximum(idx, 0).T)]
        center = candidates[int(np.argmax(room))]
        radius = min(log_uniform(rng, 80.0, 500.0), (float(room.max()) - 60.0) / 1.3)
        if radius < 50.0:
            continue
        axes = radius * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)])
        crop = crop_around(center, radius * 1.3 + 2 * frame.voxel_size, frame.shape, frame.voxel_size)
        if crop is None:
            continue
        phi = ellipsoid_phi(crop.rotated(center, random_rotation(rng)), axes)
        phi += ModeField.random(rng, 0.1 * radius, radius).on_crop(crop)
        near = canvas.membrane_distance[crop.slices]
        if np.any(near[phi < 50.0] < 50.0):
            continue
        density = float(rng.uniform(1.2, 3.0))
        grain = _grain(rng, phi.shape, frame.voxel_size, 0.25)
        canvas.add_solid(crop, solid_fraction(phi, frame.voxel_size) * grain, density)
        out.append(
            {
                "kind": DistractorKind.GRANULE.value,
                "center": center.round(1).tolist(),
                "radius": round(radius, 1),
                "density": round(density, 2),
            }
        )
    return out


def add_carbon(rng: np.random.Generator, frame: Frame, canvas: Canvas, slab: Slab) -> dict[str, Any]:
    """A carbon film ending at the straight, slightly wavy edge of a hole, along one ice face."""
    crop = frame.full_crop()
    theta = rng.uniform(0, 2 * np.pi)
    ext = frame.extent
    offset = rng.uniform(0.15, 0.6) * min(ext[1], ext[2])
    _, dy, dx = crop.relative(np.array([0.0, ext[1] / 2, ext[2] / 2]))
    edge = (np.float32(np.cos(theta)) * dy + np.float32(np.sin(theta)) * dx) + np.float32(
        offset - 0.5 * min(ext[1], ext[2])
    )
    edge = edge + ModeField.random(rng, rng.uniform(10.0, 80.0), rng.uniform(500.0, 3000.0)).on_crop(crop)
    thickness = rng.uniform(100.0, 400.0)
    side = 1 if rng.random() < 0.5 else -1
    face = slab.face_point(rng, ext, side)
    zc = face[0] - side * thickness * rng.uniform(0.0, 0.5)
    phi = np.maximum(-edge, np.abs(crop.z - np.float32(zc)) - np.float32(thickness / 2))
    occupancy = solid_fraction(phi, frame.voxel_size)
    density = float(rng.uniform(1.5, 3.0))
    grain = _grain(rng, phi.shape, frame.voxel_size, 0.15)
    canvas.add_solid(crop, occupancy * grain, density)
    return {
        "kind": DistractorKind.CARBON.value,
        "thickness": round(thickness, 1),
        "z": round(float(zc), 1),
        "density": round(density, 2),
    }


def add_contamination(
    rng: np.random.Generator, frame: Frame, canvas: Canvas, slab: Slab, count: int
) -> list[dict[str, Any]]:
    """Ice crystals on the slab faces: faceted dense blobs with sharp edges."""
    out = []
    for _ in range(count):
        size = log_uniform(rng, 150.0, 800.0)
        side = 1 if rng.random() < 0.5 else -1
        center = slab.face_point(rng, frame.extent, side) + side * slab.normal * size * rng.uniform(0.2, 0.9)
        crop = crop_around(center, 1.8 * size, frame.shape, frame.voxel_size)
        if crop is None:
            continue
        dz, dy, dx = crop.relative(center)
        phi = None
        for _ in range(int(rng.integers(5, 10))):
            n = random_unit_vector(rng).astype(np.float32)
            plane = n[0] * dz + n[1] * dy + n[2] * dx - np.float32(size * rng.uniform(0.5, 1.0))
            phi = plane if phi is None else np.maximum(phi, plane)
        occupancy = solid_fraction(phi, frame.voxel_size)
        density = -slab.vacuum * float(rng.uniform(0.3, 0.8))
        canvas.add_solid(crop, occupancy, density, scatterer=True)
        out.append(
            {"kind": DistractorKind.ICE_CONTAMINATION.value, "center": center.round(1).tolist(), "size": round(size, 1)}
        )
    return out


def add_gold(rng: np.random.Generator, frame: Frame, canvas: Canvas, slab: Slab, count: int) -> list[dict[str, Any]]:
    """Gold fiducials: small, extremely dense spheres, mostly on the faces of the ice."""
    c = frame.config
    out = []
    for _ in range(count):
        radius = rng.uniform(*c.gold_diameter_range) / 2
        if rng.random() < 0.75:
            side = 1 if rng.random() < 0.5 else -1
            center = slab.face_point(rng, frame.extent, side) + side * slab.normal * radius * rng.uniform(-1.0, 1.0)
        else:
            center = frame.random_point(rng)
        crop = crop_around(center, radius + 3 * frame.voxel_size, frame.shape, frame.voxel_size)
        if crop is None:
            continue
        dz, dy, dx = crop.relative(center)
        occupancy = solid_fraction(np.sqrt(dz * dz + dy * dy + dx * dx) - np.float32(radius), frame.voxel_size)
        density = float(rng.uniform(3.0, 8.0))
        canvas.add_solid(crop, occupancy, density, scatterer=True)
        out.append({"kind": DistractorKind.GOLD.value, "center": center.round(1).tolist(), "radius": round(radius, 1)})
    return out
