"""Compound membrane geometries: stacked flattened sheets and invaginated membranes.

These are made of several implicit primitives joined by smooth unions and subtractions, so
their necks and junctions are smooth, and their distances are refined by φ/|∇φ| afterwards.
Primitives that only touch a part of the volume (pits, cristae) are evaluated on their own
sub-crop and merged into the parent's φ there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bilayer.data.synthetic.fields import (
    DISTANCE_CLIP,
    Crop,
    ModeField,
    crop_around,
    crop_between,
    log_uniform,
    random_rotation,
    random_unit_vector,
    smooth_max,
    smooth_min,
)
from bilayer.data.synthetic.membranes import (
    Frame,
    Lumen,
    MembraneKind,
    MembraneObject,
    Surface,
    draw_lumen,
)

__all__ = ["REACH", "build_invagination", "build_stack", "capsule_phi", "merge_into", "pancake_phi"]

_MARGIN = 80.0  # Å kept around a primitive (bilayer density and blur)
# Å kept around a primitive merged on a sub-crop: beyond it the merge changes nothing nearer
# than DISTANCE_CLIP to any surface, so no jump is visible after clipping.
REACH = DISTANCE_CLIP + 50.0
_MAX_BLEND = 200.0  # Å, largest blend radius of a pit's neck
_MIN_STACK_GAP = 75.0  # Å between the mid-surfaces of neighbouring sheets of a stack


def pancake_phi(h: np.ndarray, rho: np.ndarray, radius: float, lumen: float) -> np.ndarray:
    """Signed distance (Å) to a flattened sheet: two membranes ``lumen`` Å apart, closed at a rim.

    Args:
        h: Height above the sheet's mid-plane, Å.
        rho: In-plane distance from the sheet's axis, Å.
        radius: Radius of the flat part, Å (the rim's curvature radius is lumen/2).
        lumen: Distance between the two membranes' mid-surfaces, Å.
    """
    e = np.maximum(rho - np.float32(radius), 0)
    return np.sqrt(e * e + h * h) - np.float32(lumen / 2)


def capsule_phi(crop: Crop, start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """Exact signed distance (Å) to a capsule (a segment thickened by ``radius``) on a crop."""
    dz, dy, dx = crop.relative(start)
    axis = (end - start).astype(np.float32)
    length2 = max(float(axis @ axis), 1e-6)
    t = np.clip((dz * axis[0] + dy * axis[1] + dx * axis[2]) / np.float32(length2), 0, 1)
    ez, ey, ex = dz - t * axis[0], dy - t * axis[1], dx - t * axis[2]
    return np.sqrt(ez * ez + ey * ey + ex * ex) - np.float32(radius)


def merge_into(
    parent: Crop,
    phi: np.ndarray,
    sub: Crop | None,
    other: np.ndarray | None,
    op: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> None:
    """Combine ``other`` (on ``sub``, inside ``parent``) into ``phi`` with ``op`` (min, smooth max...)."""
    if sub is None or other is None:
        return
    s = sub.within(parent)
    phi[s] = op(phi[s], other)


def build_stack(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A stack of flattened sheets (thylakoid grana, ER or Golgi cisternae): each sheet is two
    parallel membranes closed at a rounded rim; the stack bends gently as a whole."""
    c = frame.config
    n = int(rng.integers(c.stack_count_range[0], c.stack_count_range[1] + 1))
    lumen = log_uniform(rng, *c.sheet_lumen_range)
    gap = log_uniform(rng, _MIN_STACK_GAP, 400.0)
    pitch = lumen + gap
    radius = log_uniform(rng, 300.0, 4000.0)
    rotation = random_rotation(rng)
    center = frame.random_point(rng)
    bend = ModeField.random(rng, radius * rng.uniform(0.0, 0.15), radius * rng.uniform(2.0, 5.0))
    half_height = pitch * n / 2 + lumen
    crop = crop_around(center, 1.3 * radius + half_height + _MARGIN, frame.shape, frame.voxel_size)
    if crop is None:
        return None
    qn, qu, qv = crop.rotated(center, rotation)
    h0 = qn - bend.on_crop(crop)
    obj = MembraneObject(MembraneKind.STACK)
    crowding = float(rng.uniform(0.0, 0.5))
    density = float(rng.uniform(-0.2, 0.6)) if rng.random() < 0.6 else 0.0
    for i in range(n):
        offset = np.float32((i - (n - 1) / 2) * pitch)
        r_i = radius * rng.uniform(0.7, 1.2)
        du, dv = rng.uniform(-0.2, 0.2, 2) * radius
        rho = np.sqrt((qu - np.float32(du)) ** 2 + (qv - np.float32(dv)) ** 2)
        rho -= ModeField.random(rng, r_i * rng.uniform(0.0, 0.15), r_i * rng.uniform(0.8, 2.0)).on_crop(crop)
        phi = pancake_phi(h0 - offset, rho, r_i, lumen)
        bilayer = frame.bilayer(rng)
        obj.surfaces.append(Surface(crop, phi, bilayer))
        obj.lumens.append(Lumen(crop, phi, density, bilayer.separation / 2 + bilayer.width, crowding))
    obj.summary = {
        "center": center.round(1).tolist(),
        "sheets": n,
        "lumen": round(lumen, 1),
        "gap": round(gap, 1),
        "radius": round(radius, 1),
    }
    return obj


def _base_surface(rng: np.random.Generator, frame: Frame, crop: Crop) -> tuple[np.ndarray, dict, object]:
    """A plasma membrane (plane) or large organelle (sphere) through the volume; φ < 0 inside the cell."""
    point = frame.random_point(rng)
    normal = random_unit_vector(rng)
    if rng.random() < 0.5:
        dz, dy, dx = crop.relative(point)
        phi = np.float32(normal[0]) * dz + np.float32(normal[1]) * dy + np.float32(normal[2]) * dx

        def project(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return a - np.dot(a - point, normal) * normal, normal

        info = {"shape": "plane", "point": point.round(1).tolist(), "normal": normal.round(3).tolist()}
    else:
        radius = log_uniform(rng, *frame.config.organelle_diameter_range) / 2
        center = point - normal * radius
        dz, dy, dx = crop.relative(center)
        phi = np.sqrt(dz * dz + dy * dy + dx * dx) - np.float32(radius)

        def project(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            u = (a - center) / max(np.linalg.norm(a - center), 1e-6)
            return center + radius * u, u

        info = {"shape": "sphere", "center": center.round(1).tolist(), "radius": round(radius, 1)}
    phi = phi + ModeField.random(rng, rng.uniform(0.0, 100.0), rng.uniform(1500.0, 4000.0)).on_crop(crop)
    return phi, info, project


def build_invagination(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A large membrane (plasma membrane or big organelle) with pits, buds and fingers pushed in
    (smooth subtraction) or pulled out (smooth union)."""
    crop = frame.full_crop()
    phi, info, project = _base_surface(rng, frame, crop)
    pits = []
    for _ in range(int(rng.integers(1, 5))):
        anchor, normal = project(frame.random_point(rng))
        inward = rng.random() < 0.7
        radius = log_uniform(rng, 100.0, 500.0)
        depth = min(radius * rng.uniform(2.0, 8.0), 3000.0)
        axis = (-normal if inward else normal) + 0.5 * rng.uniform(0, 1) * random_unit_vector(rng)
        axis /= np.linalg.norm(axis)
        start, end = anchor - axis * radius, anchor + axis * depth
        blend = min(radius * rng.uniform(0.3, 1.0), _MAX_BLEND)
        bulb = radius * rng.uniform(1.2, 2.5) if inward and rng.random() < 0.5 else 0.0
        reach = max(radius, bulb) + blend + REACH + 2 * frame.voxel_size
        sub = crop_between(
            np.minimum(start, end) - reach, np.maximum(start, end) + reach, frame.shape, frame.voxel_size
        )
        if sub is None:
            continue
        pit = capsule_phi(sub, start, end, radius)
        if bulb:
            dz, dy, dx = sub.relative(end)
            pit = smooth_min(pit, np.sqrt(dz * dz + dy * dy + dx * dx) - np.float32(bulb), radius)
        if inward:
            merge_into(crop, phi, sub, -pit, lambda a, b, k=blend: smooth_max(a, b, k))
        else:
            merge_into(crop, phi, sub, pit, lambda a, b, k=blend: smooth_min(a, b, k))
        pits.append(
            {
                "anchor": anchor.round(1).tolist(),
                "radius": round(radius, 1),
                "depth": round(depth, 1),
                "bulb": round(bulb, 1),
                "inward": inward,
            }
        )
    bilayer = frame.bilayer(rng)
    obj = MembraneObject(MembraneKind.INVAGINATION, [Surface(crop, phi, bilayer)])
    outside = draw_lumen(rng, crop, -phi, bilayer, 0.3)
    outside.crowding = float(rng.uniform(0.0, 0.3))
    obj.lumens.append(outside)
    obj.summary = {**info, "pits": pits}
    return obj
