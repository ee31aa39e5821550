"""Hand-written "foreign" membrane phantoms, made without ``bilayer.data.synthetic``.

They judge a membrane-segmentation model on data that its training generator did not make.
Pure numpy/scipy, deterministic from a seed. Arrays are (z, y, x), lengths in Å, the beam along z.

How a phantom is made
---------------------
Geometry. Every membrane is a mid-surface given by a signed distance ``d`` (Å, negative inside
closed surfaces) evaluated analytically at the voxel centres; the grid is centred on the volume,
voxel ``i`` at ``(i - (n - 1) / 2) * voxel_size``. Families (1 nm = 10 Å):

* ``sphere``: 2–3 spherical vesicles, radius 15–35 nm, centres anywhere in the volume extended by
  0.3 radius, mid-surfaces at least 10 nm apart (exact distance). Families with several objects try
  up to 200–400 placements and keep those that fit (``params["count"]`` against ``"wanted"``); in
  64 × 96 × 96 voxels two spheres always fit; a second ellipsoid fits in 1 of 5 of the 8 Å volumes
  that ask for one, a second tube in 5 of 6, a second virion at 20 Å always, at 14 Å in some.
* ``ellipsoid``: 1–2 ellipsoids, semi-axes 15–45 nm each, uniformly random rotation, centres in the
  middle 60 % of the volume, interiors kept 10 nm apart inside the volume (checked on every second
  voxel). Distance: the first-order estimate ``d ≈ g / |∇g|`` with
  ``g = |q/s| - 1``, i.e. ``d = k0 (k0 - 1) / k1``, ``k0 = |q/s|``, ``k1 = |q/s²|`` (``q`` body
  coordinates, ``s`` semi-axes). It is exact on the surface and for spheres; its error is second
  order in ``d`` over the local radius of curvature (down to ``b²/a`` = 5 nm at the tip of a
  15 × 45 nm ellipsoid). Measured against the exact distance (closest point by bisection on the
  Lagrange multiplier) at 1.2 M points of 300 random ellipsoids with semi-axes 15–45 nm: for
  ``|d| <= 20`` Å (the label band) median 0.007 Å, 99th percentile 0.3 Å, max 1.0 Å; for
  ``|d| <= 40`` Å (the drawn density) 99th percentile 1.3 Å, max 4.7 Å (only inside sharp tips);
  for ``|d| <= 60`` Å max 13 Å. Deep inside it is not a distance (only its sign is used there).
* ``sheet``: 1–2 sheets through points in the middle half of the volume. The first is tilted
  30–60° from the xy plane (normal 30–60° from z, random azimuth), the second has a uniformly
  random normal. Each is flat (probability 0.5) or gently curved: a sphere of radius 150–400 nm
  tangent to the plane there (exact distance). Sheets may cross; the crossing is ignore-labelled.
* ``tube``: 1–2 infinite cylinders, radius 10–25 nm, uniformly random axis direction through a
  point in the middle 80 % of the volume; axes at least ``R1 + R2 + 10 nm`` apart (exact).
* ``virion``: 1–2 envelopes (two only where they fit): a sphere (probability 0.5) of radius 35–50 nm
  or an ellipsoid with semi-axes 35–50 nm each, random rotation, centres in the middle 80 % of the
  volume; envelopes at least 40 nm apart (centre distance over the sum of largest semi-axes).
  Unlabelled hard negatives: 20–40 spikes per envelope (capsules along the outward normal: length
  8–15 nm and width 3.5–6 nm, both full widths at half maximum, the base's half-maximum 3 nm out
  from the mid-surface, peak density 0.7–1.0), a granular core (balls of FWHM 5–10 nm, peak
  0.5–1.0, centres uniform where ``d <= -(4 nm + FWHM/2)``, their summed volume 30–60 % of the
  envelope's interior), and 10–30 free balls (FWHM 5–15 nm, peak 0.6–1.0) outside, centres at
  ``d >= 20 nm + FWHM/2`` from every envelope. All hard-negative density ``h`` is softly saturated,
  ``h <- 1.2 (1 - exp(-h / 1.2))``.

Rendering (density is dark: the image is ``-(membrane + hard negatives)`` on a zero background).
Every Gaussian of standard deviation ``σ`` is widened to ``σe = sqrt(σ² + (0.5 voxel)²)`` (the
profile convolved with a 0.5-voxel Gaussian, mass kept, so the peak drops by ``σ/σe`` per axis):

* ``single``: one Gaussian band across the mid-surface, FWHM 35–45 Å, peak 1;
* ``double``: two Gaussian lines at ``±δ``, ``δ`` 18–22 Å, each FWHM 10–14 Å, peak 1.

Labels (uint8): 1 where ``|d| <= hw`` for some membrane, ``hw = max(20 Å, 0.75 voxel)``, so the label
thickness ``T = 2 hw`` is never under 1.5 voxels (20 Å is the ``label_half_width`` argument's
default; the labels of bilayer's own generator are about 25 Å, leaflet separation plus width, over 2);
2 (ignore) where a voxel lies within ``T`` of two different mid-surfaces (crossings, touching
membranes); 0 elsewhere. With ``double`` the label's edges fall on the two lines' peaks.

Noise. White Gaussian noise of variance ``σn² = Var_R(m) / SNR``, where ``m`` is the membrane
density alone (hard negatives excluded) and ``R = {voxels with min_k |d_k| <= 2 hw}`` (the label
band and a flank of equal width on each side); ``SNR`` is 4 (``low``), 1 (``mid``), 0.4 (``high``).
An optional Gaussian blur (``blur`` Å, default 0) acts on the clean image before noise, and ``m`` is
blurred alike for the SNR. Finally the image is standardised to mean 0, standard deviation 1.

Random streams. Geometry (and hard negatives) depends on ``(seed, family, voxel size, shape)``,
the rendering's widths on that plus the rendering, the noise on all of it plus the noise level: for
one seed the renderings and noise levels of a family and voxel size share their geometry, so their
scores are paired comparisons.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "FAMILIES",
    "NOISE_SNR",
    "RENDERINGS",
    "VOXEL_SIZES",
    "Phantom",
    "foreign_set",
    "default_label_half_width",
    "foreign_grid",
    "make_phantom",
]

FAMILIES: tuple[str, ...] = ("sphere", "ellipsoid", "sheet", "tube", "virion")
RENDERINGS: tuple[str, ...] = ("single", "double")
VOXEL_SIZES: tuple[float, ...] = (8.0, 14.0, 20.0)
#: Noise level name -> SNR (membrane-band signal variance over noise variance, see the module doc).
NOISE_SNR: dict[str, float] = {"low": 4.0, "mid": 1.0, "high": 0.4}
DEFAULT_SHAPE: tuple[int, int, int] = (64, 96, 96)

LABEL_HALF_WIDTH = 20.0  # Å
MIN_HALF_WIDTH_VOXELS = 0.75  # label at least 1.5 voxels thick
ANTIALIAS_VOXELS = 0.5  # σ of the anti-aliasing Gaussian, voxels
MIN_GAP = 100.0  # Å between closed mid-surfaces / tube axes beyond their radii
FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))  # FWHM / σ of a Gaussian
SATURATION = 1.2  # soft ceiling of hard-negative density

Field = np.ndarray
Grid = tuple[np.ndarray, np.ndarray, np.ndarray]  # open (z, y, x) grids, Å


@dataclass
class Phantom:
    """One phantom volume with its labels.

    Attributes:
        name: unique name, e.g. ``sphere_double_14A_mid_s0``.
        family: geometry family (one of :data:`FAMILIES`).
        rendering: ``single`` or ``double``.
        voxel_size: Å per voxel (cubic).
        noise: noise level name (a key of :data:`NOISE_SNR`).
        image: (z, y, x) float32, mean 0, s.d. 1, dense is dark.
        labels: (z, y, x) uint8, 0 background, 1 membrane, 2 ignore.
        params: the drawn parameters (numbers, lists, strings), for records.
        masks: extra boolean (z, y, x) masks for scoring and tests: ``face_on`` (membrane label
            voxels whose normal is within 30° of the beam) always; for ``virion`` also ``lumen``
            (inside an envelope deeper than 3 nm), ``spikes``, ``core``, ``blobs`` (where each
            hard negative's own density is at least half its peak).
    """

    name: str
    family: str
    rendering: str
    voxel_size: float
    noise: str
    image: np.ndarray
    labels: np.ndarray
    params: dict = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def default_label_half_width(voxel_size: float, half_width: float = LABEL_HALF_WIDTH) -> float:
    """Half-width (Å) of the membrane label band at this voxel size: at least 0.75 voxel."""
    return max(half_width, MIN_HALF_WIDTH_VOXELS * voxel_size)


# --------------------------------------------------------------------------- geometry helpers


def _grid(shape: Sequence[int], voxel_size: float) -> Grid:
    """Open grids of voxel-centre coordinates (Å), centred on the volume."""
    axes = [(np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * voxel_size for n in shape]
    return (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])


def _extent(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    """Half-extent (Å) of the volume along z, y, x."""
    return (np.asarray(shape, dtype=np.float64) - 1) / 2.0 * voxel_size


def _unit(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random unit vector (z, y, x)."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (Haar measure via QR)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _sphere(grid: Grid, centre: np.ndarray, radius: float) -> Field:
    z, y, x = grid
    return np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) - radius


def _ellipsoid_points(q: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Approximate signed distance of body-frame points ``q`` (..., 3) to the ellipsoid."""
    k0 = np.sqrt(np.sum((q / axes) ** 2, axis=-1))
    k1 = np.sqrt(np.sum((q / axes**2) ** 2, axis=-1))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _ellipsoid(grid: Grid, centre: np.ndarray, axes: np.ndarray, rot: np.ndarray) -> Field:
    """Approximate signed distance (Å) to an ellipsoid; ``rot`` columns are its body axes (z, y, x)."""
    rel = [g - c for g, c in zip(grid, centre)]
    q = [rel[0] * rot[0, k] + rel[1] * rot[1, k] + rel[2] * rot[2, k] for k in range(3)]
    k0 = np.sqrt((q[0] / axes[0]) ** 2 + (q[1] / axes[1]) ** 2 + (q[2] / axes[2]) ** 2)
    k1 = np.sqrt((q[0] / axes[0] ** 2) ** 2 + (q[1] / axes[1] ** 2) ** 2 + (q[2] / axes[2] ** 2) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _plane(grid: Grid, point: np.ndarray, normal: np.ndarray) -> Field:
    z, y, x = grid
    return (z - point[0]) * normal[0] + (y - point[1]) * normal[1] + (x - point[2]) * normal[2]


def _cylinder(grid: Grid, point: np.ndarray, axis: np.ndarray, radius: float) -> Field:
    rel = [g - p for g, p in zip(grid, point)]
    along = rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]
    sq = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2 - along**2
    return np.sqrt(np.maximum(sq, 0.0)) - radius


def _line_distance(p1: np.ndarray, u1: np.ndarray, p2: np.ndarray, u2: np.ndarray) -> float:
    """Shortest distance between two infinite lines."""
    cross = np.cross(u1, u2)
    norm = np.linalg.norm(cross)
    if norm < 1e-9:  # parallel
        rel = p2 - p1
        return float(np.linalg.norm(rel - np.dot(rel, u1) * u1))
    return float(abs(np.dot(p2 - p1, cross)) / norm)


def _coarse(grid: Grid, step: int = 2) -> Grid:
    return (grid[0][::step], grid[1][:, ::step], grid[2][:, :, ::step])


# --------------------------------------------------------------------------- families


@dataclass
class _Scene:
    """Membrane mid-surfaces (signed distances) and unlabelled density, before rendering."""

    distances: list[Field]
    params: dict
    negatives: Field | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)


def _spheres(rng: np.random.Generator, grid: Grid, ext: np.ndarray, vs: float) -> _Scene:
    wanted = int(rng.integers(2, 4))
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(400):
        if len(placed) == wanted:
            break
        radius = rng.uniform(150.0, 350.0)
        centre = rng.uniform(-ext - 0.3 * radius, ext + 0.3 * radius)
        if all(np.linalg.norm(centre - c) >= radius + r + MIN_GAP for c, r in placed):
            placed.append((centre, radius))
    return _Scene(
        distances=[_sphere(grid, c, r) for c, r in placed],
        params={"count": len(placed), "wanted": wanted, "centres_A": [c.round(1).tolist() for c, _ in placed],
                "radii_A": [round(r, 1) for _, r in placed]},
    )


def _fits(new: Field, existing: Sequence[Field], gap: float) -> bool:
    """Whether the interior of ``new`` stays ``gap`` Å clear of each existing interior (on this grid)."""
    return all(not np.any((new < gap / 2) & (old < gap / 2)) for old in existing)


def _ellipsoids(rng: np.random.Generator, grid: Grid, ext: np.ndarray, vs: float) -> _Scene:
    wanted = int(rng.integers(1, 3))
    coarse = _coarse(grid)
    placed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    coarse_fields: list[Field] = []
    for _ in range(200):
        if len(placed) == wanted:
            break
        axes = rng.uniform(150.0, 450.0, size=3)
        rot = _rotation(rng)
        centre = rng.uniform(-0.6 * ext, 0.6 * ext)
        cf = _ellipsoid(coarse, centre, axes, rot)
        if _fits(cf, coarse_fields, MIN_GAP):
            placed.append((centre, axes, rot))
            coarse_fields.append(cf)
    return _Scene(
        distances=[_ellipsoid(grid, c, a, r) for c, a, r in placed],
        params={"count": len(placed), "wanted": wanted, "centres_A": [c.round(1).tolist() for c, _, _ in placed],
                "semi_axes_A": [a.round(1).tolist() for _, a, _ in placed]},
    )


def _sheets(rng: np.random.Generator, grid: Grid, ext: np.ndarray, vs: float) -> _Scene:
    count = int(rng.integers(1, 3))
    distances, tilts, curvatures = [], [], []
    for i in range(count):
        if i == 0:
            tilt = np.deg2rad(rng.uniform(30.0, 60.0))
            phi = rng.uniform(0.0, 2.0 * np.pi)
            normal = np.array([np.cos(tilt), np.sin(tilt) * np.sin(phi), np.sin(tilt) * np.cos(phi)])
        else:
            normal = _unit(rng)
        point = rng.uniform(-0.5 * ext, 0.5 * ext)
        if rng.random() < 0.5:
            distances.append(_plane(grid, point, normal))
            curvatures.append(None)
        else:
            radius = rng.uniform(1500.0, 4000.0)
            distances.append(_sphere(grid, point - radius * normal, radius))
            curvatures.append(round(radius, 1))
        tilts.append(round(float(np.rad2deg(np.arccos(abs(normal[0])))), 1))
    return _Scene(distances=distances,
                  params={"count": count, "tilt_from_xy_deg": tilts, "curvature_radius_A": curvatures})


def _tubes(rng: np.random.Generator, grid: Grid, ext: np.ndarray, vs: float) -> _Scene:
    wanted = int(rng.integers(1, 3))
    placed: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(200):
        if len(placed) == wanted:
            break
        radius = rng.uniform(100.0, 250.0)
        point, axis = rng.uniform(-0.8 * ext, 0.8 * ext), _unit(rng)
        if all(_line_distance(point, axis, p, a) >= radius + r + MIN_GAP for p, a, r in placed):
            placed.append((point, axis, radius))
    return _Scene(
        distances=[_cylinder(grid, p, a, r) for p, a, r in placed],
        params={"count": len(placed), "wanted": wanted, "radii_A": [round(r, 1) for _, _, r in placed],
                "axes": [a.round(3).tolist() for _, a, _ in placed]},
    )


def _add_capsule(vol: np.ndarray, grid: Grid, p0: np.ndarray, p1: np.ndarray, sigma: float,
                 amplitude: float, vs: float, dims: int, mask: np.ndarray | None = None) -> None:
    """Add a Gaussian capsule (a ball when ``p0 == p1``) of peak ``amplitude`` in place.

    The cross-section σ is anti-aliased (widened by 0.5 voxel, mass kept over ``dims`` axes); where
    the capsule's own density is at least half its peak, ``mask`` is set.
    """
    se = np.sqrt(sigma**2 + (ANTIALIAS_VOXELS * vs) ** 2)
    peak = amplitude * (sigma / se) ** dims
    reach = 3.5 * se
    lo = np.minimum(p0, p1) - reach
    hi = np.maximum(p0, p1) + reach
    sl = []
    for ax, g in enumerate(grid):
        coords = g.reshape(-1)
        i0 = int(np.searchsorted(coords, lo[ax]))
        i1 = int(np.searchsorted(coords, hi[ax], side="right"))
        if i1 <= i0:
            return
        sl.append(slice(i0, i1))
    sub = (grid[0][sl[0]], grid[1][:, sl[1]], grid[2][:, :, sl[2]])
    seg = p1 - p0
    length2 = float(np.dot(seg, seg))
    rel = [g - p for g, p in zip(sub, p0)]
    if length2 > 0:
        t = np.clip((rel[0] * seg[0] + rel[1] * seg[1] + rel[2] * seg[2]) / length2, 0.0, 1.0)
        dist2 = sum((r - t * s) ** 2 for r, s in zip(rel, seg))
    else:
        dist2 = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    blob = peak * np.exp(-dist2 / (2.0 * se**2))
    region = tuple(sl)
    vol[region] += blob
    if mask is not None:
        mask[region] |= blob >= 0.5 * peak


def _virions(rng: np.random.Generator, grid: Grid, ext: np.ndarray, vs: float) -> _Scene:
    shape = tuple(len(g.reshape(-1)) for g in grid)
    wanted = int(rng.integers(1, 3))
    envelopes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for _ in range(200):
        if len(envelopes) == wanted:
            break
        if rng.random() < 0.5:
            axes = np.full(3, rng.uniform(350.0, 500.0))
        else:
            axes = rng.uniform(350.0, 500.0, size=3)
        rot = _rotation(rng)
        centre = rng.uniform(-0.8 * ext, 0.8 * ext)
        if all(np.linalg.norm(centre - c) >= axes.max() + a.max() + 400.0 for c, a, _ in envelopes):
            envelopes.append((centre, axes, rot))
    distances = [_ellipsoid(grid, c, a, r) for c, a, r in envelopes]
    dmin_env = np.min(distances, axis=0)

    negatives = np.zeros(shape, dtype=np.float64)
    masks = {k: np.zeros(shape, dtype=bool) for k in ("spikes", "core", "blobs")}
    n_spikes, n_core, fills = [], [], []
    for centre, axes, rot in envelopes:
        # Spikes: capsules along the outward normal, base half-maximum 30 Å out from the mid-surface.
        count = int(rng.integers(20, 41))
        n_spikes.append(count)
        for _ in range(count):
            u = _unit(rng)
            q = u / np.linalg.norm(u / axes)  # body-frame surface point
            normal_body = q / axes**2
            normal = rot @ (normal_body / np.linalg.norm(normal_body))
            surface = centre + rot @ q
            length = rng.uniform(80.0, 150.0)
            width = min(rng.uniform(35.0, 60.0), length)
            p0 = surface + normal * (30.0 + width / 2.0)
            p1 = surface + normal * (30.0 + length - width / 2.0)
            _add_capsule(negatives, grid, p0, p1, width / FWHM, rng.uniform(0.7, 1.0), vs, 2, masks["spikes"])
        # Granular core: balls inside, summed volume a fraction of the envelope interior.
        fill = rng.uniform(0.3, 0.6)
        fills.append(round(fill, 3))
        target = fill * 4.0 / 3.0 * np.pi * np.prod(axes)
        volume, placed, tries = 0.0, 0, 0
        while volume < target and tries < 20000:
            tries += 1
            diameter = rng.uniform(50.0, 100.0)
            q = rng.uniform(-axes, axes)
            if _ellipsoid_points(q, axes) > -(40.0 + diameter / 2.0):
                continue
            _add_capsule(negatives, grid, centre + rot @ q, centre + rot @ q, diameter / FWHM,
                         rng.uniform(0.5, 1.0), vs, 3, masks["core"])
            volume += np.pi / 6.0 * diameter**3
            placed += 1
        n_core.append(placed)
    # Free blobs outside every envelope.
    n_free = int(rng.integers(10, 31))
    free = 0
    for _ in range(50 * n_free):
        if free == n_free:
            break
        diameter = rng.uniform(50.0, 150.0)
        p = rng.uniform(-ext, ext)
        d = min(_ellipsoid_points(rot.T @ (p - c), a) for c, a, rot in envelopes)
        if d < 200.0 + diameter / 2.0:
            continue
        _add_capsule(negatives, grid, p, p, diameter / FWHM, rng.uniform(0.6, 1.0), vs, 3, masks["blobs"])
        free += 1
    negatives = SATURATION * (1.0 - np.exp(-negatives / SATURATION))
    masks["lumen"] = dmin_env < -30.0
    return _Scene(
        distances=distances,
        negatives=negatives,
        masks=masks,
        params={"count": len(envelopes), "wanted": wanted, "centres_A": [c.round(1).tolist() for c, _, _ in envelopes],
                "semi_axes_A": [a.round(1).tolist() for _, a, _ in envelopes], "spikes": n_spikes,
                "core_blobs": n_core, "core_fill": fills, "free_blobs": free},
    )


_FAMILY_FN: dict[str, Callable[[np.random.Generator, Grid, np.ndarray, float], _Scene]] = {
    "sphere": _spheres,
    "ellipsoid": _ellipsoids,
    "sheet": _sheets,
    "tube": _tubes,
    "virion": _virions,
}


# --------------------------------------------------------------------------- rendering


def _gaussian_profile(d: Field, centre: float, sigma: float, vs: float) -> Field:
    se = np.sqrt(sigma**2 + (ANTIALIAS_VOXELS * vs) ** 2)
    return (sigma / se) * np.exp(-((d - centre) ** 2) / (2.0 * se**2))


def _render_membranes(distances: Sequence[Field], rendering: str, rng: np.random.Generator,
                      vs: float) -> tuple[Field, dict]:
    """Membrane density (peak 1 per Gaussian before anti-aliasing) and the drawn widths."""
    if rendering == "single":
        fwhm = rng.uniform(35.0, 45.0)
        params = {"band_fwhm_A": round(fwhm, 2)}
        profiles = [(0.0, fwhm / FWHM)]
    elif rendering == "double":
        delta, fwhm = rng.uniform(18.0, 22.0), rng.uniform(10.0, 14.0)
        params = {"line_offset_A": round(delta, 2), "line_fwhm_A": round(fwhm, 2)}
        profiles = [(-delta, fwhm / FWHM), (delta, fwhm / FWHM)]
    else:
        raise ValueError(f"rendering {rendering!r} is not one of {RENDERINGS}")
    density = np.zeros(distances[0].shape if distances else (), dtype=np.float64)
    for d in distances:
        for centre, sigma in profiles:
            density = density + _gaussian_profile(d, centre, sigma, vs)
    return density, params


def _labels(distances: Sequence[Field], shape: Sequence[int], hw: float) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    if not distances:
        return labels
    absd = np.abs(np.stack(distances)) if len(distances) > 1 else np.abs(distances[0])[None]
    absd.sort(axis=0)
    labels[absd[0] <= hw] = 1
    if len(distances) > 1:
        labels[absd[1] <= 2.0 * hw] = 2  # within one label thickness of two mid-surfaces
    return labels


def _face_on(distances: Sequence[Field], labels: np.ndarray, vs: float) -> np.ndarray:
    """Membrane label voxels whose nearest mid-surface's normal is within 30° of z."""
    if not distances:
        return np.zeros(labels.shape, dtype=bool)
    nearest = np.argmin(np.abs(np.stack(distances)), axis=0)
    nz = np.zeros(labels.shape, dtype=np.float64)
    for k, d in enumerate(distances):
        gz, gy, gx = np.gradient(d, vs)
        cos = np.abs(gz) / np.maximum(np.sqrt(gz**2 + gy**2 + gx**2), 1e-12)
        nz = np.where(nearest == k, cos, nz)
    return (labels == 1) & (nz >= np.cos(np.deg2rad(30.0)))


def _streams(seed: int, family: str, rendering: str, voxel_size: float, noise: str,
             shape: Sequence[int]) -> tuple[np.random.Generator, ...]:
    base = [int(seed), FAMILIES.index(family), int(round(voxel_size * 1000)), *map(int, shape)]
    geometry = np.random.default_rng(np.random.SeedSequence(base))
    render = np.random.default_rng(np.random.SeedSequence(base + [1 + RENDERINGS.index(rendering)]))
    noise_rng = np.random.default_rng(np.random.SeedSequence(
        base + [1 + RENDERINGS.index(rendering), 1 + list(NOISE_SNR).index(noise)]))
    return geometry, render, noise_rng


def make_phantom(family: str, rendering: str, voxel_size: float, noise: str, seed: int,
                 shape: Sequence[int] = DEFAULT_SHAPE, blur: float = 0.0,
                 label_half_width: float = LABEL_HALF_WIDTH) -> Phantom:
    """Make one phantom (see the module docstring for every number).

    Args:
        family: one of :data:`FAMILIES`.
        rendering: ``single`` (one dark band) or ``double`` (two dark lines).
        voxel_size: Å per voxel.
        noise: ``low``, ``mid`` or ``high`` (SNR 4, 1, 0.4).
        seed: random seed; the same arguments give a bit-identical phantom.
        shape: (z, y, x) voxels.
        blur: σ (Å) of an optional Gaussian blur of the clean image before noise; 0: none.
        label_half_width: membrane label half-width (Å), raised to 0.75 voxel where smaller; it
            also sets the ignore rule and the SNR region.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {FAMILIES}")
    if rendering not in RENDERINGS:
        raise ValueError(f"rendering {rendering!r} is not one of {RENDERINGS}")
    if noise not in NOISE_SNR:
        raise ValueError(f"noise {noise!r} is not one of {tuple(NOISE_SNR)}")
    shape = tuple(int(n) for n in shape)
    vs = float(voxel_size)
    geo_rng, render_rng, noise_rng = _streams(seed, family, rendering, vs, noise, shape)
    grid = _grid(shape, vs)
    scene = _FAMILY_FN[family](geo_rng, grid, _extent(shape, vs), vs)
    distances = [np.broadcast_to(d, shape) for d in scene.distances]

    membrane, render_params = _render_membranes(distances, rendering, render_rng, vs)
    membrane = np.broadcast_to(membrane, shape)
    clean = -(membrane + (scene.negatives if scene.negatives is not None else 0.0))
    if blur > 0:
        clean = ndimage.gaussian_filter(clean, blur / vs)
        membrane = ndimage.gaussian_filter(membrane, blur / vs)
    hw = default_label_half_width(vs, label_half_width)
    labels = _labels(distances, shape, hw)
    region = np.min(np.abs(np.stack(distances)), axis=0) <= 2.0 * hw
    snr = NOISE_SNR[noise]
    signal_var = float(np.var(membrane[region])) if region.any() else 1.0
    sigma_n = np.sqrt(signal_var / snr)
    image = clean + noise_rng.normal(0.0, sigma_n, size=shape)
    image = ((image - image.mean()) / image.std()).astype(np.float32)

    masks = {"face_on": _face_on(distances, labels, vs)}
    masks.update(scene.masks)
    params = {"seed": int(seed), "shape": list(shape), "snr": snr, "noise_sigma": float(sigma_n),
              "signal_var": signal_var, "label_half_width_A": hw, "blur_A": float(blur)}
    params.update(scene.params)
    params.update(render_params)
    name = f"{family}_{rendering}_{vs:g}A_{noise}_s{seed}"
    return Phantom(name, family, rendering, vs, noise, image, labels, params, masks)


def foreign_grid(families: Sequence[str] = FAMILIES, renderings: Sequence[str] = RENDERINGS,
                 voxel_sizes: Sequence[float] = VOXEL_SIZES,
                 noises: Sequence[str] = tuple(NOISE_SNR)) -> list[tuple[str, str, float, str]]:
    """The (family, rendering, voxel size, noise) combinations of a set, in its order."""
    return [(f, r, float(v), n) for f, r, v, n in itertools.product(families, renderings, voxel_sizes, noises)]


def foreign_set(seed: int = 0, families: Sequence[str] = FAMILIES, renderings: Sequence[str] = RENDERINGS,
                voxel_sizes: Sequence[float] = VOXEL_SIZES, noises: Sequence[str] = tuple(NOISE_SNR),
                shape: Sequence[int] = DEFAULT_SHAPE, blur: float = 0.0,
                label_half_width: float = LABEL_HALF_WIDTH) -> list[Phantom]:
    """The grid of phantoms, family × rendering × voxel size × noise (90 with the defaults)."""
    return [make_phantom(f, r, v, n, seed, shape, blur, label_half_width)
            for f, r, v, n in foreign_grid(families, renderings, voxel_sizes, noises)]
