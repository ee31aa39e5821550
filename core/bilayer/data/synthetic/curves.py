"""Smooth random space curves and sub-voxel distances to them (membrane tubes, filaments).

A curve is a dense list of exact points with unit tangents, a rotation-minimising normal and
the arc length. Distances come from a Euclidean distance transform on a (coarse) grid that only
finds, for each voxel, the nearest stored curve point; the exact distance is then the distance
to that point's tangent line, which is accurate far below a voxel for smooth curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.interpolate
import scipy.ndimage

from bilayer.data.synthetic.fields import Crop

__all__ = ["Curve", "CurveField", "curve_field", "random_curve"]

_COARSE_MIN_SIDE = 40  # crops at least this large run the distance transform on a 2x coarser grid
_FOOT_ITERATIONS = 3
_DESCENT_STEPS = (4, 2, 1)  # point offsets of the final descent along the curve


@dataclass(frozen=True)
class Curve:
    """A smooth space curve sampled densely.

    Attributes:
        points: Exact points (n, 3), Å, (z, y, x).
        tangents: Unit tangents (n, 3).
        normals: Unit normals (n, 3) of a rotation-minimising frame (for angles around the curve).
        arclength: Arc length (n,) from the first point, Å.

    Distances clamp at the ends, so a curve that ends inside the volume gets a round cap.
    """

    points: np.ndarray
    tangents: np.ndarray
    normals: np.ndarray
    arclength: np.ndarray

    @property
    def length(self) -> float:
        return float(self.arclength[-1])


def _walk(
    rng: np.random.Generator, start: np.ndarray, direction: np.ndarray, n: int, step: float, persistence: float
) -> np.ndarray:
    """Control points of a worm-like chain: each step turns by a Gaussian kick of variance 2 step/persistence."""
    points = [start]
    t = direction.copy()
    sigma = np.sqrt(2.0 * step / persistence)
    for _ in range(n):
        t = t + sigma * rng.standard_normal(3)
        t /= np.linalg.norm(t)
        points.append(points[-1] + step * t)
    return np.array(points[1:])


def random_curve(
    rng: np.random.Generator,
    through: np.ndarray,
    length_before: float,
    length_after: float,
    persistence: float,
    spacing: float,
) -> Curve:
    """A worm-like curve passing through ``through``, smoothed by a cubic spline.

    Args:
        rng: Random generator.
        through: A point (z, y, x) the curve passes through, Å.
        length_before: Approximate length before that point, Å.
        length_after: Approximate length after it, Å.
        persistence: Persistence length, Å (large = straight).
        spacing: Spacing of the stored points, Å (use about half a voxel).
    """
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    step = max(min(persistence / 4.0, (length_before + length_after) / 6.0), spacing)
    n_before = max(int(np.ceil(length_before / step)), 1)
    n_after = max(int(np.ceil(length_after / step)), 1)
    before = _walk(rng, through, -direction, n_before, step, persistence)[::-1]
    after = _walk(rng, through, direction, n_after, step, persistence)
    control = np.concatenate([before, through[None], after])
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(control, axis=0), axis=1))])
    spline = scipy.interpolate.CubicSpline(chord, control, axis=0)
    s = np.linspace(0.0, chord[-1], max(int(np.ceil(chord[-1] / spacing)) + 1, 2))
    points = spline(s)
    tangents = spline(s, 1)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    arclength = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    return Curve(points, tangents, _frame(tangents, rng), arclength)


def _frame(tangents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation-minimising normals along the tangents (projection of the previous normal)."""
    normals = np.empty_like(tangents)
    n = np.cross(tangents[0], rng.standard_normal(3))
    for i, t in enumerate(tangents):
        n = n - np.dot(n, t) * t
        n /= np.linalg.norm(n)
        normals[i] = n
    return normals


@dataclass(frozen=True)
class CurveField:
    """Distances from the voxels of a crop to a set of curves.

    Attributes:
        approx_distance: Distance to the nearest curve at every crop voxel, Å, accurate to about
            a coarse voxel (float32, crop shape); use it far from the curves only.
        band: Flat indices (into the crop) of the voxels within the requested band.
        radial: Exact distance of each band voxel to its nearest curve, Å.
        axial: Arc-length coordinate of each band voxel along its curve, Å.
        angle: Angle of each band voxel around its curve, radians.
        curve_id: Index of the nearest curve for each band voxel.
    """

    approx_distance: np.ndarray
    band: np.ndarray
    radial: np.ndarray
    axial: np.ndarray
    angle: np.ndarray
    curve_id: np.ndarray


def curve_field(curves: list[Curve], crop: Crop, voxel_size: float, band: float, inner: float = 0.0) -> CurveField:
    """Distances, arc-length and angle coordinates of the crop's voxels with respect to ``curves``.

    Args:
        curves: The curves (at least one).
        crop: The crop of the volume to evaluate.
        voxel_size: Voxel size, Å.
        band: Exact coordinates are computed for voxels within this distance of a curve, Å.
        inner: ... and at least this far from it (a tube's wall needs no exact values near its
            axis), Å.
    """
    shape = crop.shape
    f = 2 if min(shape) >= _COARSE_MIN_SIDE else 1
    pad = int(np.ceil(band / (f * voxel_size))) + 1
    coarse_shape = tuple(-(-n // f) + 2 * pad for n in shape)
    origin = np.array([crop.z.ravel()[0], crop.y.ravel()[0], crop.x.ravel()[0]])
    points = np.concatenate([c.points for c in curves])

    cidx = np.rint(((points - origin) / voxel_size - (f - 1) / 2.0) / f).astype(np.int64) + pad
    order = np.flatnonzero(np.all((cidx >= 0) & (cidx < np.array(coarse_shape)), axis=1))
    if order.size == 0:
        empty = np.zeros(0, np.float32)
        return CurveField(
            np.full(shape, np.inf, np.float32), np.zeros(0, np.int64), empty, empty, empty, np.zeros(0, np.int32)
        )
    seeds = np.full(coarse_shape, -1, np.int64)
    seeds[cidx[order, 0], cidx[order, 1], cidx[order, 2]] = order
    dist, idx = scipy.ndimage.distance_transform_edt(seeds < 0, sampling=f * voxel_size, return_indices=True)
    nearest = seeds[idx[0], idx[1], idx[2]]
    gz = (np.arange(shape[0]) // f + pad)[:, None, None]
    gy = (np.arange(shape[1]) // f + pad)[None, :, None]
    gx = (np.arange(shape[2]) // f + pad)[None, None, :]
    approx = dist.astype(np.float32)[gz, gy, gx]
    slack = f * voxel_size * np.sqrt(3.0)
    a = approx.ravel()
    flat = np.flatnonzero((a <= band + slack) & (a >= inner - slack))
    iz, iy, ix = np.unravel_index(flat, shape)
    sid = nearest[gz.ravel()[iz], gy.ravel()[iy], gx.ravel()[ix]]
    p = [(i * voxel_size + o).astype(np.float32) for i, o in zip((iz, iy, ix), origin, strict=True)]
    radial, axial, angle, cid = _foot(curves, p, sid, 2 * f * voxel_size)
    return CurveField(approx_distance=approx, band=flat, radial=radial, axial=axial, angle=angle, curve_id=cid)


def _foot(
    curves: list[Curve], p: list[np.ndarray], sid: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact cylindrical coordinates of points ``p`` (z, y, x arrays) starting from seed points ``sid``.

    Newton steps slide along the curve by the projection onto the tangent (a step is kept only
    if it brings the point closer, so it never jumps across a tight bend), then a descent on the
    distance in halving steps finishes near bends, where the projection says little. The result
    is the distance to the tangent line at the nearest point, clamped at the curve's ends.
    """
    pts = np.concatenate([c.points for c in curves]).astype(np.float32).T
    tan = np.concatenate([c.tangents for c in curves]).astype(np.float32).T
    nor = np.concatenate([c.normals for c in curves]).astype(np.float32).T
    binormal = np.cross(tan.T, nor.T).astype(np.float32).T
    arclength = np.concatenate([c.arclength for c in curves]).astype(np.float32)
    counts = np.array([len(c.points) for c in curves])
    lengths = np.array([c.length for c in curves], np.float32)
    last = np.cumsum(counts) - 1
    first = last - counts + 1
    spacing = lengths / np.maximum(counts - 1, 1)
    cid = np.concatenate([np.full(n, i, np.int32) for i, n in enumerate(counts)])[sid]
    lo, hi = first[cid], last[cid]

    def dist2(j: np.ndarray) -> np.ndarray:
        return (p[0] - pts[0][j]) ** 2 + (p[1] - pts[1][j]) ** 2 + (p[2] - pts[2][j]) ** 2

    def along(j: np.ndarray) -> np.ndarray:
        return sum((p[i] - pts[i][j]) * tan[i][j] for i in range(3))

    def try_move(sid: np.ndarray, best: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        candidate = np.clip(candidate, lo, hi)
        d2 = dist2(candidate)
        better = d2 < best
        return np.where(better, candidate, sid), np.where(better, d2, best)

    best = dist2(sid)
    step_cap = np.ceil(reach / spacing[cid]).astype(np.int64)
    inv_spacing = (1.0 / spacing[cid]).astype(np.float32)
    for _ in range(_FOOT_ITERATIONS):
        step = np.clip(np.rint(along(sid) * inv_spacing).astype(np.int64), -step_cap, step_cap)
        sid, best = try_move(sid, best, sid + step)
    for h in _DESCENT_STEPS:
        for direction in (-h, h):
            sid, best = try_move(sid, best, sid + direction)
    diff = [p[i] - pts[i][sid] for i in range(3)]
    t = [tan[i][sid] for i in range(3)]
    a = diff[0] * t[0] + diff[1] * t[1] + diff[2] * t[2]
    raw = arclength[sid] + a
    s = np.clip(raw, 0.0, lengths[cid])
    a = s - arclength[sid]
    perp = [diff[i] - a * t[i] for i in range(3)]
    # Beyond an end, the nearest point is the end point itself (a round cap).
    end = np.where(raw <= 0, lo, hi)
    beyond = (raw <= 0) | (raw >= lengths[cid])
    if beyond.any():
        for i in range(3):
            perp[i] = np.where(beyond, p[i] - pts[i][end], perp[i])
    radial = np.sqrt(perp[0] ** 2 + perp[1] ** 2 + perp[2] ** 2)
    u = sum(perp[i] * nor[i][sid] for i in range(3))
    v = sum(perp[i] * binormal[i][sid] for i in range(3))
    return radial.astype(np.float32), s.astype(np.float32), np.arctan2(v, u).astype(np.float32), cid
