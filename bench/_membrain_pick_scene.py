"""The membrane scene meshed by ``surfaces_vs_membrain_pick.py``: analytic membranes with two leaflets.

Each membrane is a shape with a signed distance d (voxels) to its midsurface: vesicles (spheres,
some cut by the volume's faces), wavy sheets spanning the volume (every one cut by four faces),
cristae-like lamellar sacs (a flat disc's offset surface: two parallel sheets joined by a rounded
rim, tilted at random) and tubes running through the volume. Its mask is the band |d| ≤
``HALF_BAND`` (5 voxels thick); its density two dark Gaussian leaflets at d = ±``LEAFLETS`` / 2 over
noise, as in tests/core/test_surfaces_api.py's scene. Membranes are placed at random and kept only
where their band stays ``GAP`` voxels clear of every other band, so each is one connected component.

Pure functions over numpy arrays; nothing is written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import trapezoid

__all__ = ["GAP", "HALF_BAND", "LEAFLETS", "Shape", "draw_scene", "expected_area", "plan_shapes", "signed_distance"]

HALF_BAND = 2.0  # voxels: the mask is |d| <= HALF_BAND (5 voxels across)
LEAFLETS = 4.0  # voxels between the two leaflets' minima (40 Å at 10 Å)
LEAFLET_SIGMA = 0.6  # voxels
NOISE = 0.25  # standard deviation of the Gaussian noise, leaflet depth 1
GAP = 3.0  # voxels of empty space kept between two bands
_REACH = 6.0  # voxels: how far from the midsurface the leaflets' density is drawn


@dataclass(frozen=True)
class Shape:
    """One membrane: its kind and parameters (voxels, (z, y, x))."""

    kind: str  # "vesicle", "sheet", "sac" or "tube"
    centre: tuple[float, float, float]
    size: float  # vesicle radius; sheet wave amplitude; sac disc radius; tube radius
    params: dict = field(default_factory=dict)

    def box(self, shape: tuple[int, int, int], pad: float) -> tuple[slice, slice, slice] | None:
        """The voxels within ``pad`` of its band, clipped to the volume (``None``: outside it)."""
        c, s = np.asarray(self.centre), self.size
        if self.kind == "vesicle":
            lo, hi = c - s - pad, c + s + pad
        elif self.kind == "sac":
            reach = s + self.params["half_thickness"] + pad
            lo, hi = c - reach, c + reach
        elif self.kind == "sheet":
            lo = np.array([c[0] - s - pad - 1, 0, 0])
            hi = np.array([c[0] + s + pad + 1, shape[1], shape[2]])
        else:  # tube along x through the whole volume
            lo = np.array([c[0] - s - pad, c[1] - s - pad, 0])
            hi = np.array([c[0] + s + pad, c[1] + s + pad, shape[2]])
        lo = np.clip(np.floor(lo).astype(int), 0, shape)
        hi = np.clip(np.ceil(hi).astype(int) + 1, 0, shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def signed_distance(shape: Shape, box: tuple[slice, slice, slice]) -> np.ndarray:
    """Signed distance (voxels, float32) from each voxel of ``box`` to ``shape``'s midsurface.

    Exact for vesicles, sacs and tubes; for sheets the first-order distance (z − h) / √(1 + |∇h|²) of
    the height field h(x) = z0 + A sin(2π x / λ + φ), within a few per cent of it near the sheet.
    """
    z, y, x = np.ogrid[box[0], box[1], box[2]]
    z, y, x = (a.astype(np.float32) for a in (z, y, x))
    cz, cy, cx = (np.float32(v) for v in shape.centre)
    if shape.kind == "vesicle":
        return np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) - np.float32(shape.size)
    if shape.kind == "tube":
        return np.sqrt((z - cz) ** 2 + (y - cy) ** 2) + 0 * x - np.float32(shape.size)
    if shape.kind == "sheet":
        k, phase = np.float32(2 * np.pi / shape.params["wavelength"]), np.float32(shape.params["phase"])
        amplitude = np.float32(shape.size)
        height = cz + amplitude * np.sin(k * x + phase)
        slope = amplitude * k * np.cos(k * x + phase)
        return (z - height) / np.sqrt(1 + slope**2) + 0 * y
    # sac: distance to a disc of radius a (normal n) less the half thickness
    n = np.asarray(shape.params["normal"], dtype=np.float32)
    dz, dy, dx = z - cz, y - cy, x - cx
    along = dz * n[0] + dy * n[1] + dx * n[2]
    radial = np.sqrt(np.maximum(dz**2 + dy**2 + dx**2 - along**2, 0))
    outside = np.maximum(radial - np.float32(shape.size), 0)
    return np.sqrt(outside**2 + along**2) - np.float32(shape.params["half_thickness"])


def plan_shapes(volume: tuple[int, int, int], seed: int, *, vesicles: int, sheets: int, sacs: int,
                tubes: int) -> list[Shape]:
    """Random membranes for a volume of ``volume`` voxels (sizes scale with its smallest side).

    Sheets are spread over z from 12 % to 88 % of its depth, tubes and sacs between them; vesicle radii run from 1/16 to 1/6 of the smallest side, some
    centres near a face so that the volume cuts them. Candidates are returned in drawing order;
    :func:`draw_scene` drops those that would touch another.
    """
    rng = np.random.default_rng(seed)
    side = min(volume)
    shapes: list[Shape] = []
    for i in range(sheets):  # near the top and bottom (z), leaving the middle to the others
        z0 = volume[0] * (0.12 + 0.76 * i / max(sheets - 1, 1))
        shapes.append(Shape("sheet", (z0, volume[1] / 2, volume[2] / 2), side * rng.uniform(0.02, 0.05),
                            {"wavelength": volume[2] * rng.uniform(0.5, 1.0), "phase": rng.uniform(0, 2 * np.pi)}))
    for _ in range(tubes):
        shapes.append(Shape("tube", (rng.uniform(0.35, 0.65) * volume[0], rng.uniform(0.1, 0.9) * volume[1],
                                     volume[2] / 2), side * rng.uniform(0.04, 0.07)))
    for _ in range(sacs * 8):  # candidates, stacked roughly like cristae (normal near z); draw_scene keeps those that fit
        normal = np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.3, size=3)
        shapes.append(Shape("sac", tuple(rng.uniform(0.2, 0.8) * np.array(volume)), side * rng.uniform(0.1, 0.2),
                            {"half_thickness": rng.uniform(5, 8), "normal": tuple(normal / np.linalg.norm(normal))}))
    for i in range(vesicles * 6):
        radius = side * rng.uniform(1 / 16, 1 / 6)
        centre = rng.uniform(0, 1, 3) * np.array(volume)
        if i % 5 == 0:  # near a face: cut by the volume
            axis = rng.integers(3)
            centre[axis] = rng.choice([0.3, volume[axis] - 0.3]) + rng.uniform(-0.5, 0.5) * radius
        shapes.append(Shape("vesicle", tuple(centre), radius))
    return shapes


def draw_scene(volume: tuple[int, int, int], shapes: list[Shape], seed: int, *,
               limits: dict[str, int]) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """The labels (uint8: i on the band of ``kept[i - 1]``, 0 elsewhere) and tomogram (float32) of the
    shapes that fit; the mask is ``labels > 0``.

    A shape is kept if fewer than ``limits[kind]`` of its kind are kept yet, its band has voxels in
    the volume and none of them lies within ``GAP`` voxels of an already kept band (so every kept
    membrane is its own connected component).

    Returns:
        ``(labels, density, kept)``.
    """
    if sum(limits.values()) > 255:
        raise ValueError(f"at most 255 membranes fit in uint8 labels, not {sum(limits.values())}")
    mask = np.zeros(volume, dtype=np.uint8)
    density = np.zeros(volume, dtype=np.float32)
    kept: list[Shape] = []
    counts = dict.fromkeys(limits, 0)
    for shape in shapes:
        if counts.get(shape.kind, 0) >= limits.get(shape.kind, 0):
            continue
        box = shape.box(volume, _REACH + GAP)
        if box is None:
            continue
        d = signed_distance(shape, box)
        band = np.abs(d) <= HALF_BAND
        if not band.any() or (mask[box][np.abs(d) <= HALF_BAND + GAP]).any():
            continue
        mask[box][band] = len(kept) + 1
        near = np.abs(d) <= _REACH
        leaflets = (np.exp(-((d[near] - LEAFLETS / 2) ** 2) / (2 * LEAFLET_SIGMA**2))
                    + np.exp(-((d[near] + LEAFLETS / 2) ** 2) / (2 * LEAFLET_SIGMA**2)))
        density[box][near] -= leaflets
        kept.append(shape)
        counts[shape.kind] += 1
    rng = np.random.default_rng(seed + 1)
    for z in range(volume[0]):  # a section at a time: no second full-size array
        density[z] += rng.standard_normal(volume[1:], dtype=np.float32) * np.float32(NOISE)
    return mask, density, kept


def expected_area(shape: Shape, volume: tuple[int, int, int]) -> float | None:
    """The exact area of ``shape``'s midsurface inside the volume, voxels², where geometry gives it.

    Vesicles and sacs whose band lies wholly inside the volume (4πR²; a sac: its two disc faces
    2πa² plus the outer half of a torus of radius h round them, 2πh(πa + 2h)); sheets and tubes over
    the grid's extent, 0 to n − 1 along each axis they cross (a sheet ∫∫ √(1 + h'(x)²) dx dy,
    numerically); ``None`` for a vesicle, sac or tube cut by the volume where it should not be.
    """
    if shape.kind in ("vesicle", "sac"):
        reach = shape.size + (shape.params.get("half_thickness", 0.0) if shape.kind == "sac" else 0.0) + HALF_BAND
        c = np.asarray(shape.centre)
        if np.any(c - reach < 0) or np.any(c + reach > np.asarray(volume) - 1):
            return None
        if shape.kind == "vesicle":
            return float(4 * np.pi * shape.size**2)
        a, h = shape.size, shape.params["half_thickness"]
        return float(2 * np.pi * a**2 + 2 * np.pi * h * (np.pi * a + 2 * h))
    if shape.kind == "tube":
        c, reach = shape.centre, shape.size + HALF_BAND
        if min(c[0], c[1]) - reach < 0 or c[0] + reach > volume[0] - 1 or c[1] + reach > volume[1] - 1:
            return None
        return float(2 * np.pi * shape.size * (volume[2] - 1))
    k = 2 * np.pi / shape.params["wavelength"]
    x = np.linspace(0, volume[2] - 1, 20001)
    slope = shape.size * k * np.cos(k * x + shape.params["phase"])
    return float(trapezoid(np.sqrt(1 + slope**2), x) * (volume[1] - 1))
