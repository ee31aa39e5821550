"""Filling a scene: membranes placed without collisions, then proteins and the crowding texture.

Membranes are drawn largest first; a new membrane that comes closer than 7 nm to one already
drawn is redrawn a few times, and if it still collides it is kept only occasionally (then the
crossing becomes an ignore zone). Proteins are scattered by Poisson counts per µm³ and rejected
inside clear lumens, outside the slab and on top of membranes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bilayer.data.synthetic.distractors import DistractorKind
from bilayer.data.synthetic.environment import Slab
from bilayer.data.synthetic.fields import log_uniform, normalise_distance, random_unit_vector, solid_fraction
from bilayer.data.synthetic.membranes import Frame, MembraneKind, MembraneObject, build_sheet, build_tube, build_vesicle
from bilayer.data.synthetic.mitochondria import build_mitochondrion
from bilayer.data.synthetic.organelles import build_invagination, build_stack
from bilayer.data.synthetic.particles import (
    PointGroup,
    crowding_texture,
    lumpy,
    membrane_protein_groups,
    render_point_groups,
    ribosome_templates,
    splat_template,
)
from bilayer.data.synthetic.render import Canvas

__all__ = ["MEMBRANE_BUILDERS", "add_crowding", "add_proteins", "place_membrane"]

Builder = Callable[[np.random.Generator, Frame], "MembraneObject | None"]

#: Membrane kind -> builder; the order is the drawing order (largest first).
MEMBRANE_BUILDERS: dict[MembraneKind, Builder] = {
    MembraneKind.MITOCHONDRION: build_mitochondrion,
    MembraneKind.INVAGINATION: build_invagination,
    MembraneKind.SHEET: build_sheet,
    MembraneKind.STACK: build_stack,
    MembraneKind.TUBE: build_tube,
    MembraneKind.VESICLE: build_vesicle,
}

_ATTEMPTS = 4
_MIN_CLEARANCE = 70.0  # Å between membrane mid-surfaces, unless a crossing is kept (as in .membranes)
_KEEP_CROSSING = 0.1  # probability of keeping a membrane that still collides after all attempts
_PROTEIN_CLEARANCE = 35.0  # Å from a mid-surface to a soluble protein's surface
_RIBOSOME_RADIUS = 140.0  # Å
_N_RIBOSOME_TEMPLATES = 6
_UM3 = 1e12  # Å³ per µm³


def place_membrane(
    rng: np.random.Generator, frame: Frame, canvas: Canvas, inside: np.ndarray, builder: Builder
) -> dict[str, Any] | None:
    """Draw a membrane object with ``builder``, redrawing on collisions, and render it.

    Args:
        rng: Random generator.
        frame: Where objects go.
        canvas: The scene being drawn.
        inside: Fraction of each voxel inside the specimen slab (a membrane must show there).
        builder: Draws one object.

    Returns:
        The object's summary (with its kind and whether it crosses another), or None if none fit.
    """
    for attempt in range(_ATTEMPTS):
        obj = builder(rng, frame)
        if obj is None:
            continue
        geometry = [normalise_distance(s.phi, frame.voxel_size) for s in obj.surfaces]
        visible = any(
            np.any((np.abs(d) <= canvas.label_half(s.bilayer)) & (inside[s.crop.slices] > 0.5))
            for s, (d, _) in zip(obj.surfaces, geometry, strict=True)
        )
        if not visible:
            continue
        clearance = min(canvas.clearance(s.crop, d) for s, (d, _) in zip(obj.surfaces, geometry, strict=True))
        crossing = clearance < _MIN_CLEARANCE
        if crossing and (attempt < _ATTEMPTS - 1 or rng.random() >= _KEEP_CROSSING):
            continue
        _render(rng, frame, canvas, obj, geometry)
        return {"kind": obj.kind.value, "crossing": bool(crossing), **obj.summary}
    return None


def _render(rng: np.random.Generator, frame: Frame, canvas: Canvas, obj: MembraneObject, geometry: list) -> None:
    vs = frame.voxel_size
    for lumen in obj.lumens:
        occupancy = solid_fraction(lumen.phi + np.float32(lumen.inset), vs)
        s = lumen.crop.slices
        if lumen.density:
            canvas.density[s] += np.float32(lumen.density) * occupancy
        canvas.crowding[s] *= 1 - occupancy * np.float32(1 - lumen.crowding)
    for surface, (d, normals) in zip(obj.surfaces, geometry, strict=True):
        canvas.add_membrane(rng, surface.crop, d, normals, surface.bilayer)


def _scatter(
    rng: np.random.Generator, frame: Frame, canvas: Canvas, slab: Slab, per_um3: float, radius: float
) -> np.ndarray:
    """Centres (n, 3) of proteins at ``per_um3``, kept where the slab, lumens and membranes allow."""
    volume = float(np.prod(frame.extent)) / _UM3
    n = int(rng.poisson(per_um3 * volume))
    points = rng.uniform(0, 1, (n, 3)) * frame.extent
    if n == 0:
        return points
    idx = np.minimum((points / frame.voxel_size).astype(int), np.array(frame.shape) - 1)
    at = tuple(idx.T)
    keep = slab.contains(points) & (canvas.crowding[at] > rng.random(n))
    keep &= canvas.membrane_distance[at] > radius + _PROTEIN_CLEARANCE
    return points[keep]


def add_proteins(
    rng: np.random.Generator, frame: Frame, canvas: Canvas, slab: Slab, ribosome_scale: float, protein_scale: float
) -> list[dict[str, Any]]:
    """Soluble proteins, ribosomes (single and in polysome chains) and membrane-bound proteins.

    Args:
        ribosome_scale: Factor on the configured ribosome density (0 for none).
        protein_scale: Factor on the configured soluble protein density.

    Returns:
        Summaries of the protein populations.
    """
    c = frame.config
    vs = frame.voxel_size
    summary: list[dict[str, Any]] = []
    groups: list[PointGroup] = []
    total = rng.uniform(*c.protein_density_range_per_um3) * protein_scale
    weights = rng.dirichlet(np.ones(3))
    for w in weights:
        radius = log_uniform(rng, 20.0, 90.0)
        points = _scatter(rng, frame, canvas, slab, total * w, radius)
        groups.append(lumpy(rng, points, rng.uniform(0.6, 1.3, len(points)), radius, DistractorKind.PROTEIN.value))
        summary.append({"kind": DistractorKind.PROTEIN.value, "radius": round(radius, 1), "count": len(points)})
    bound, bound_ribosomes = membrane_protein_groups(rng, canvas.samples)
    groups.extend(bound)
    for g in bound:
        summary.append({"kind": DistractorKind.MEMBRANE_PROTEIN.value, "class": g.kind, "count": len(g.points)})
    canvas.density += render_point_groups(groups, frame.shape, vs)

    density = rng.uniform(*c.ribosome_density_range_per_um3) * ribosome_scale
    ribosomes = _scatter(rng, frame, canvas, slab, density, _RIBOSOME_RADIUS)
    if len(ribosomes) and rng.random() < 0.3:
        ribosomes = np.concatenate([ribosomes, _polysomes(rng, ribosomes[: max(1, len(ribosomes) // 4)])])
    ribosomes = np.concatenate([ribosomes, bound_ribosomes])
    if len(ribosomes):
        templates = ribosome_templates(rng, vs, _N_RIBOSOME_TEMPLATES)
        for p in ribosomes:
            splat_template(canvas.density, templates[int(rng.integers(len(templates)))], p, vs)
        summary.append(
            {"kind": DistractorKind.RIBOSOME.value, "count": len(ribosomes), "membrane_bound": len(bound_ribosomes)}
        )
    return summary


def _polysomes(rng: np.random.Generator, starts: np.ndarray) -> np.ndarray:
    """Chains of 2–7 further ribosomes following each start, 25–32 nm apart, gently turning."""
    out = []
    for p in starts:
        direction = random_unit_vector(rng)
        for _ in range(int(rng.integers(2, 8))):
            direction = direction + 0.5 * random_unit_vector(rng)
            direction /= np.linalg.norm(direction)
            p = p + direction * rng.uniform(250.0, 320.0)
            out.append(p)
    return np.array(out).reshape(-1, 3)


def add_crowding(rng: np.random.Generator, frame: Frame, canvas: Canvas, amplitude: float) -> dict[str, Any]:
    """The fine crowding texture, thinned in clear lumens and kept off the bilayers."""
    texture = crowding_texture(rng, frame.shape, frame.voxel_size, amplitude)
    off = np.clip((canvas.membrane_distance - np.float32(30.0)) / np.float32(30.0), 0, 1)
    canvas.density += texture * canvas.crowding * off
    return {"kind": DistractorKind.CROWDING.value, "amplitude": round(float(amplitude), 3)}
