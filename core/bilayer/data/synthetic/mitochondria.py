"""Mitochondria: an outer membrane, an inner membrane 11–20 nm inside it, and cristae.

Lamellar cristae are what tomograms of most mitochondria show: flat sacs of inner membrane that
run roughly parallel to each other across the organelle, each reaching in from one side, gently
bent together. They share one normal and bend, and sit at least a lumen plus 15 nm apart, so
they never intersect. Some mitochondria have tubular cristae instead.
"""

from __future__ import annotations

import numpy as np

from bilayer.data.synthetic.fields import (
    Crop,
    ModeField,
    crop_around,
    crop_between,
    log_uniform,
    random_rotation,
    random_unit_vector,
    smooth_max,
)
from bilayer.data.synthetic.membranes import Frame, Lumen, MembraneKind, MembraneObject, Surface, ellipsoid_phi
from bilayer.data.synthetic.organelles import REACH, capsule_phi, merge_into, pancake_phi

__all__ = ["build_mitochondrion"]

_MARGIN = 80.0  # Å kept around the organelle (bilayer density and blur)
_FAR = 1e6  # Å, the cristae function where there is no crista
_LAMELLAR_PROBABILITY = 0.75
_MAX_TILT = 0.15  # rad, tilt of the cristae's common normal away from the long axis


def build_mitochondrion(rng: np.random.Generator, frame: Frame) -> MembraneObject | None:
    """A mitochondrion whose outer membrane passes through the volume, with its inner membrane
    and cristae carved out of the dense matrix."""
    radius = log_uniform(rng, *frame.config.organelle_diameter_range) / 2
    axes = radius * np.array([1.0, rng.uniform(0.45, 0.8), rng.uniform(0.45, 0.8)])
    rotation = random_rotation(rng)
    direction = random_unit_vector(rng)
    to_surface = 1.0 / np.linalg.norm((rotation @ direction) / axes)
    center = frame.random_point(rng) - direction * to_surface * rng.uniform(0.7, 1.05)
    crop = crop_around(center, axes.max() * 1.2 + _MARGIN, frame.shape, frame.voxel_size)
    if crop is None:
        return None
    outer = ellipsoid_phi(crop.rotated(center, rotation), axes)
    outer += frame.perturbation(rng, axes[1:].min(), axes[1:].min() * rng.uniform(1.5, 3.0)).on_crop(crop)
    spacing = float(rng.uniform(110.0, 200.0))
    lamellar = rng.random() < _LAMELLAR_PROBABILITY
    if lamellar:
        cristae, count = _lamellar_cristae(rng, frame, crop, center, rotation, axes, spacing)
    else:
        cristae, count = _tubular_cristae(rng, frame, crop, center, rotation, axes, spacing)
    matrix = smooth_max(outer + np.float32(spacing), -cristae, float(rng.uniform(30.0, 80.0)))
    b_outer, b_inner = frame.bilayer(rng), frame.bilayer(rng)
    obj = MembraneObject(MembraneKind.MITOCHONDRION, [Surface(crop, outer, b_outer), Surface(crop, matrix, b_inner)])
    inset = b_inner.separation / 2 + b_inner.width
    obj.lumens.append(Lumen(crop, matrix, float(rng.uniform(0.2, 0.7)), inset, 1.0))
    obj.lumens.append(Lumen(crop, np.maximum(outer, -matrix), float(rng.uniform(-0.1, 0.2)), inset, 0.2))
    obj.summary = {
        "center": center.round(1).tolist(),
        "semi_axes": axes.round(1).tolist(),
        "membrane_spacing": round(spacing, 1),
        "cristae": count,
        "cristae_shape": "lamellar" if lamellar else "tubular",
    }
    return obj


def _lamellar_cristae(
    rng: np.random.Generator,
    frame: Frame,
    crop: Crop,
    center: np.ndarray,
    rotation: np.ndarray,
    axes: np.ndarray,
    spacing: float,
) -> tuple[np.ndarray, int]:
    """Parallel, jointly bent flat cristae across the long axis; returns their implicit union."""
    normal = rotation[0] + _MAX_TILT * rng.uniform(-1, 1) * rotation[1] + _MAX_TILT * rng.uniform(-1, 1) * rotation[2]
    normal /= np.linalg.norm(normal)
    lumen = float(rng.uniform(80.0, 220.0))
    pitch = lumen + float(rng.uniform(150.0, 600.0))
    bend = ModeField.random(rng, axes[1] * rng.uniform(0.0, 0.08), axes[1] * rng.uniform(1.0, 2.5))
    dz, dy, dx = crop.relative(center)
    height = np.float32(normal[0]) * dz + np.float32(normal[1]) * dy + np.float32(normal[2]) * dx
    height -= bend.on_crop(crop)
    cristae = np.full(crop.shape, _FAR, np.float32)
    inner_long = axes[0] - spacing
    count = 0
    for t in np.arange(-inner_long + rng.uniform(0, pitch), inner_long, pitch):
        if rng.random() < 0.2:
            continue  # a gap in the array
        half_width = (axes[1] - spacing) * np.sqrt(max(1 - (t / inner_long) ** 2, 0.0))
        if half_width < 2 * lumen:
            continue
        side = np.cross(normal, random_unit_vector(rng))
        side /= np.linalg.norm(side)
        disk_radius = half_width * rng.uniform(0.4, 0.9)
        offset = half_width - disk_radius + disk_radius * rng.uniform(0.05, 0.3)
        disk_center = center + normal * t + side * offset
        sub = crop_around(disk_center, disk_radius + lumen + REACH, frame.shape, frame.voxel_size)
        if sub is None:
            continue
        sdz, sdy, sdx = sub.relative(disk_center)
        flat_h = np.float32(normal[0]) * sdz + np.float32(normal[1]) * sdy + np.float32(normal[2]) * sdx
        rho = np.sqrt(np.maximum(sdz * sdz + sdy * sdy + sdx * sdx - flat_h * flat_h, 0))
        h = height[sub.within(crop)] - np.float32(t)
        merge_into(crop, cristae, sub, pancake_phi(h, rho, disk_radius, lumen), np.minimum)
        count += 1
    return cristae, count


def _tubular_cristae(
    rng: np.random.Generator,
    frame: Frame,
    crop: Crop,
    center: np.ndarray,
    rotation: np.ndarray,
    axes: np.ndarray,
    spacing: float,
) -> tuple[np.ndarray, int]:
    """Tubes of inner membrane reaching into the matrix from random points of its boundary."""
    cristae = np.full(crop.shape, _FAR, np.float32)
    count = int(rng.integers(3, 12))
    for _ in range(count):
        u = random_unit_vector(rng)
        anchor = center + u * (1.0 / np.linalg.norm((rotation @ u) / axes) - spacing)
        inward = -u + 0.4 * random_unit_vector(rng)
        inward /= np.linalg.norm(inward)
        r = rng.uniform(60.0, 150.0)
        start, end = anchor - inward * 2 * r, anchor + inward * axes[1:].min() * rng.uniform(0.3, 0.9)
        sub = crop_between(
            np.minimum(start, end) - r - REACH, np.maximum(start, end) + r + REACH, frame.shape, frame.voxel_size
        )
        if sub is not None:
            merge_into(crop, cristae, sub, capsule_phi(sub, start, end, r), np.minimum)
    return cristae, count
