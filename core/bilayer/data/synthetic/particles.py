"""Proteins: soluble complexes, ribosomes, membrane-bound proteins and the crowding texture.

Most proteins are placed as weighted points and convolved with a soft-sphere kernel in Fourier
space (one FFT per size class, whatever the number of proteins); irregular shapes come from
splitting each protein into a few overlapping lumps. Ribosomes are larger and two-lobed, so a
few randomly oriented templates are rendered once and added at each position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage

from bilayer.data.synthetic.fields import (
    k_squared,
    random_rotation,
    smooth_random_field,
)
from bilayer.data.synthetic.render import SurfaceSamples

__all__ = [
    "PointGroup",
    "crowding_texture",
    "lumpy",
    "membrane_protein_groups",
    "render_point_groups",
    "ribosome_templates",
    "splat_template",
]

_BLUR = 0.4  # σ of the kernels' soft edge, in voxels (anti-aliasing)
_SOFTNESS = 0.3  # σ of a protein's soft edge relative to its radius (proteins are not hard spheres)


@dataclass(frozen=True)
class PointGroup:
    """Proteins of one size class: centres, peak densities and the kernel radius.

    Attributes:
        points: Centres (n, 3), Å, (z, y, x).
        amplitudes: Peak density of each (n,).
        radius: Radius of the soft-sphere kernel, Å.
        kind: Name of the class, for the scene summary.
    """

    points: np.ndarray
    amplitudes: np.ndarray
    radius: float
    kind: str


def lumpy(rng: np.random.Generator, points: np.ndarray, amplitudes: np.ndarray, radius: float, kind: str) -> PointGroup:
    """Split each protein of radius ``radius`` into 1–3 overlapping lumps of 0.65× the radius."""
    n = len(points)
    if n == 0:
        return PointGroup(np.zeros((0, 3)), np.zeros(0), 0.65 * radius, kind)
    lumps = rng.integers(1, 4, n)
    centres = np.repeat(points, lumps, axis=0)
    offsets = rng.standard_normal((len(centres), 3))
    offsets *= (0.45 * radius / np.maximum(np.linalg.norm(offsets, axis=1), 1e-6))[:, None]
    offsets[np.r_[0, np.cumsum(lumps)[:-1]]] = 0.0
    return PointGroup(centres + offsets, np.repeat(amplitudes, lumps), 0.65 * radius, kind)


def _sphere_spectrum(k: np.ndarray, radius: float, voxel_size: float) -> np.ndarray:
    """DFT of a unit-density sphere of ``radius`` Å with a Gaussian soft edge, on |k| (1/Å)."""
    x = np.float32(2 * np.pi * radius) * k
    x = np.maximum(x, np.float32(1e-4))
    shape = 3 * (np.sin(x) - x * np.cos(x)) / x**3
    shape[x < 1e-2] = 1.0
    volume = 4.0 / 3.0 * np.pi * radius**3 / voxel_size**3
    sigma = max(_BLUR * voxel_size, _SOFTNESS * radius)
    return (np.float32(volume) * shape * np.exp(np.float32(-2 * np.pi**2 * sigma**2) * k * k)).astype(np.float32)


def render_point_groups(groups: list[PointGroup], shape: tuple[int, int, int], voxel_size: float) -> np.ndarray:
    """Density of all point groups: points splatted to the nearest voxel and convolved with their
    kernel in Fourier space (periodic; callers keep proteins away from the faces they matter at)."""
    k = np.sqrt(k_squared(shape, voxel_size))
    total = None
    size = int(np.prod(shape))
    for g in groups:
        if len(g.points) == 0:
            continue
        idx = np.rint(g.points / voxel_size).astype(np.int64)
        keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
        flat = np.ravel_multi_index(tuple(idx[keep].T), shape)
        points = np.bincount(flat, weights=g.amplitudes[keep], minlength=size).astype(np.float32).reshape(shape)
        spectrum = scipy.fft.rfftn(points, workers=-1) * _sphere_spectrum(k, g.radius, voxel_size)
        total = spectrum if total is None else total + spectrum
    if total is None:
        return np.zeros(shape, np.float32)
    return scipy.fft.irfftn(total, s=shape, workers=-1).astype(np.float32, copy=False)


def _points_in_ellipsoid(rng: np.random.Generator, n: int, center: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """``n`` points uniform inside an axis-aligned ellipsoid (rejection sampling), (n, 3)."""
    out = np.zeros((0, 3))
    while len(out) < n:
        u = rng.uniform(-1, 1, (2 * n, 3))
        out = np.concatenate([out, u[np.sum(u * u, axis=1) <= 1]])
    return center + out[:n] * axes


def ribosome_templates(rng: np.random.Generator, voxel_size: float, count: int) -> list[np.ndarray]:
    """``count`` randomly oriented two-lobed ribosome-like densities (~28 nm), each a small cube.

    Each subunit is filled with overlapping Gaussian blobs (RNA helices and proteins, σ ≈ 2 nm):
    the large one in an ellipsoid of about 25 nm, the small one of about 18 nm on its side. The
    density is lumpy and highest inside, so imaged ribosomes are dark blobs, not rings.
    """
    half = int(np.ceil(190.0 / voxel_size))
    size = 2 * half + 1
    sigma = max(18.0, _BLUR * 1.5 * voxel_size)
    templates = []
    for _ in range(count):
        rotation = random_rotation(rng)
        scale = rng.uniform(0.9, 1.1)
        lsu = _points_in_ellipsoid(rng, 70, np.array([-30.0, 0.0, 0.0]), np.array([95.0, 115.0, 105.0]) * scale)
        ssu = _points_in_ellipsoid(rng, 30, np.array([95.0, 10.0, 0.0]), np.array([50.0, 90.0, 65.0]) * scale)
        world = np.concatenate([lsu, ssu]) @ rotation  # object frame -> volume frame
        idx = np.clip(np.rint(world / voxel_size).astype(np.int64) + half, 0, size - 1)
        flat = np.ravel_multi_index(tuple(idx.T), (size, size, size))
        weights = rng.uniform(0.5, 1.0, len(flat))
        points = np.bincount(flat, weights=weights, minlength=size**3).reshape(size, size, size)
        density = scipy.ndimage.gaussian_filter(points, sigma / voxel_size, mode="constant").astype(np.float32)
        density *= np.float32(rng.uniform(1.3, 1.8) / max(float(np.percentile(density[density > 0], 99)), 1e-12))
        templates.append(density)
    return templates


def splat_template(
    density: np.ndarray, template: np.ndarray, center: np.ndarray, voxel_size: float, weight: float = 1.0
) -> None:
    """Add ``template`` (odd cube) centred at ``center`` Å into ``density``, clipped at the faces."""
    half = template.shape[0] // 2
    c = np.rint(np.asarray(center) / voxel_size).astype(int)
    dst, src = [], []
    for ci, n in zip(c, density.shape, strict=True):
        lo, hi = ci - half, ci + half + 1
        a, b = max(lo, 0), min(hi, n)
        if b <= a:
            return
        dst.append(slice(a, b))
        src.append(slice(a - lo, b - lo))
    density[tuple(dst)] += np.float32(weight) * template[tuple(src)]


def membrane_protein_groups(
    rng: np.random.Generator, samples: list[SurfaceSamples]
) -> tuple[list[PointGroup], list[np.ndarray]]:
    """Proteins on and in the membranes: peripheral ones sitting on a leaflet, transmembrane ones
    filling the bilayer, and large heads on some membranes. Hard negatives right next to the
    labels.

    Returns:
        The point groups, and the points (n, 3) where membrane-bound ribosomes should go.
    """
    r_peripheral = rng.uniform(25.0, 60.0)
    r_transmembrane = rng.uniform(20.0, 40.0)
    r_head = rng.uniform(45.0, 65.0)
    peripheral, transmembrane, heads, ribosomes = [], [], [], []
    for s in samples:
        if len(s.points) == 0:
            continue
        b = s.bilayer
        for density, target, offset in (
            (rng.uniform(0, 1.5e-4), peripheral, b.separation / 2 + b.width / 2 + 0.9 * r_peripheral),
            (rng.uniform(0, 2e-4), transmembrane, 0.0),
            (rng.uniform(0, 1e-4) * (rng.random() < 0.3), heads, b.separation / 2 + 50.0 + r_head),
            (rng.uniform(0, 3e-5) * (rng.random() < 0.2), ribosomes, b.separation / 2 + 140.0),
        ):
            n = int(rng.poisson(density * s.area))
            if n == 0:
                continue
            pick = rng.integers(0, len(s.points), n)
            side = np.where(rng.random(n) < rng.uniform(0, 1), 1.0, -1.0)
            target.append(s.points[pick] + (side * offset)[:, None] * s.normals[pick])
    groups = []
    for pts, radius, kind, lo, hi in (
        (peripheral, r_peripheral, "peripheral_protein", 0.5, 1.1),
        (transmembrane, r_transmembrane, "transmembrane_protein", 0.2, 0.7),
        (heads, r_head, "membrane_head_protein", 0.8, 1.3),
    ):
        if pts:
            p = np.concatenate(pts)
            groups.append(lumpy(rng, p, rng.uniform(lo, hi, len(p)), radius, kind))
    return groups, (np.concatenate(ribosomes) if ribosomes else np.zeros((0, 3)))


def crowding_texture(
    rng: np.random.Generator, shape: tuple[int, int, int], voxel_size: float, amplitude: float
) -> np.ndarray:
    """Fine macromolecular crowding: rectified band-limited noise (small blobs), mean ≈ amplitude/4.

    The blobs are 1–3 nm; at coarse voxels the texture is widened to 0.6 voxel and its amplitude
    reduced as voxel averaging would.
    """
    corr = rng.uniform(6.0, 15.0)
    eff = max(corr, 0.6 * voxel_size)
    g = smooth_random_field(rng, shape, voxel_size, eff)
    t = np.maximum(g - np.float32(0.5), 0)
    mean = float(t.mean())
    if mean <= 0:
        return t
    scale = amplitude * 0.25 / mean * (corr / eff) ** 1.5
    return t * np.float32(scale)
