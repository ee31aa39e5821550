"""Bilayer thickness from the tomogram's density profile across a membrane surface.

In a cryo-ET tomogram (dense is dark, as Bilayer's synthetic generator and most reconstructions
show it) a resolved bilayer is two dark bands, the lipid head groups, with a lighter hydrocarbon
core between them; the thickness is the distance between the two minima of the density profile
along the membrane's normal. Most membranes at 15–20 Å or after strong low-pass show one dark
band instead; there is no thickness to read then, and this module says so (NaN, ``resolved``
False) rather than invent one.

The method, for one membrane's :class:`~bilayer.surfaces.mesh.Mesh`:

1. the tomogram is sampled (trilinear, :func:`scipy.ndimage.map_coordinates`) along every
   vertex normal from ``-half_width`` to ``+half_width`` Å, in units of the tomogram's standard
   deviation around its mean near the membrane;
2. profiles are averaged over patches: one centre per cell of 0.7 ``neighbourhood``, each the
   mean of the profiles of the vertices within ``neighbourhood`` Å whose normals agree with its
   own (a KD-tree); a vertex takes its nearest centre's result;
3. every patch profile (and the whole membrane's mean profile) is fitted, all at once, with two
   models over a linear baseline: two dark Gaussians of one width at ``c ± d/2`` and a single
   dark Gaussian; a coarse grid over the positions and width (variable projection: the baseline
   and depths are linear) starts a batched Levenberg–Marquardt refinement;
4. each patch's noise is measured, not assumed: its profile's standard error from the scatter of
   the block means it pools (blocks of surface wider than the noise is correlated). The bilayer
   counts as resolved where the two-minima model beats one minimum in a likelihood-ratio test
   with that noise (one independent sample per voxel), both minima are dips at least 3 voxels
   apart, and the model's central maximum stands ``min_contrast`` standard errors above the
   shallower minimum (that ratio is the ``quality``).

Measured on the synthetic generator at 10 Å (64³, defocus 1.5–3 µm, SNR 0.3–3): every membrane is
resolved, within +0.6 Å of leaflets 40–50 Å apart, +1.4 Å at 35 Å and +3.3 Å at 30 Å (the
generator's bright core and the CTF push thin bilayers' minima apart); its single-band look and
pure noise come out unresolved, and so does every membrane at 20 Å.

Above 350 lines: the batched profile fitter (two dark Gaussians against one, grid start,
Levenberg-Marquardt) is about 170 of them and should become its own module with its own tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats
from scipy.sparse import csr_matrix
from scipy.spatial import cKDTree

from bilayer import checks
from bilayer.io.volume import Volume
from bilayer.surfaces.mesh import Mesh, world_to_voxel

__all__ = ["HALF_WIDTH", "ThicknessResult", "membrane_thickness", "tomogram_box"]

HALF_WIDTH = 80.0  # Å: how far a profile reaches on each side of the surface, by default
_CHUNK = 20000  # vertices sampled at a time (bounds the coordinate arrays to tens of MB)
_NORMAL_AGREEMENT = 0.5  # cos 60°: profiles of a patch come from one side of a fold
_NEAREST = 4  # centres considered for a vertex (the nearest with an agreeing normal wins)
_BLOCK_VOXELS = 2.5  # smallest block of surface pooled before patches: wider than the noise is correlated
_BLOCKS_ACROSS = 4  # a patch's radius is at least this many blocks
_NEIGHBOURHOOD = 100.0  # Å: the default patch radius (10 nm), or 5 voxels where those are larger
_CENTRE_CELL = 0.7  # patch centres one per cell of this many neighbourhoods: every vertex within a radius of one
_MIN_BLOCKS = 4  # a patch needs this many (effective) blocks to measure its noise
_STATS_VOXELS = 2_000_000  # voxels read to estimate the tomogram's mean and deviation


@dataclass(frozen=True)
class ThicknessResult:
    """Bilayer thickness of one membrane.

    Attributes:
        thickness: ``(n,)`` per vertex, Å, distance between the two leaflet minima of its patch's
            profile; NaN where unresolved.
        quality: ``(n,)`` height of the central maximum over the shallower minimum, in standard
            errors of the patch's mean profile (0 where the fit has no central maximum; NaN: no
            profile).
        resolved: ``(n,)`` bool, whether the two leaflets were resolved there.
        membrane_thickness: from the membrane's mean profile, Å (NaN if unresolved).
        membrane_quality: that fit's quality.
        membrane_resolved: whether the mean profile resolves the two leaflets.
        profile_positions: ``(s,)`` positions along the normal, Å (positive: the normals' side).
        profile: ``(s,)`` the membrane's mean profile in the tomogram's standard deviations
            around its mean (dense is low unless ``dense_dark=False`` was given), NaN if no vertex
            had a whole profile inside the tomogram.
    """

    thickness: np.ndarray
    quality: np.ndarray
    resolved: np.ndarray
    membrane_thickness: float
    membrane_quality: float
    membrane_resolved: bool
    profile_positions: np.ndarray
    profile: np.ndarray

    def vertex_values(self) -> dict[str, np.ndarray]:
        """The per-vertex results as :attr:`Mesh.values` (``resolved`` as 0/1)."""
        return {"thickness": self.thickness, "thickness_quality": self.quality,
                "thickness_resolved": self.resolved.astype(np.float64)}


def membrane_thickness(mesh: Mesh, tomogram: Volume, *, half_width: float = HALF_WIDTH, step: float | None = None,
                       neighbourhood: float | None = None, dense_dark: bool = True, significance: float = 0.01,
                       min_contrast: float = 4.0) -> ThicknessResult:
    """The bilayer thickness of ``mesh`` (a membrane's midsurface) read from ``tomogram``.

    Args:
        mesh: The membrane's surface, in Å in the tomogram's frame, consistently oriented.
        tomogram: The tomogram the membrane was segmented from (memory-mapped is fine: only the
            box around the mesh is read).
        half_width: How far the profile reaches on each side of the surface, Å; it must hold
            both leaflets and some background (a bilayer is 30–60 Å thick).
        step: Distance between profile samples, Å; ``None``: half the smallest voxel size.
        neighbourhood: Radius over which vertex profiles are averaged, Å (None: 100 Å, or 5 voxels where
            that is more); at least 5 voxels, so
            that a patch holds enough blocks to measure its own noise.
        dense_dark: Dense matter is dark (low values), as in most reconstructions; False for
            inverted contrast.
        significance: Largest p-value at which two minima beat one (likelihood-ratio test).
        min_contrast: Smallest contrast of the central maximum over the shallower minimum, in
            standard errors of the patch's mean profile, of a resolved bilayer.

    Raises:
        ConfigError: an option is out of range.
    """
    voxel = float(min(tomogram.voxel_size))
    positions = _positions(half_width, step, voxel)
    step = float(positions[1] - positions[0])
    if neighbourhood is None:
        neighbourhood = max(_NEIGHBOURHOOD, 5 * voxel)
    neighbourhood = checks.number("neighbourhood", neighbourhood, 5 * voxel)
    dense_dark = checks.flag("dense_dark", dense_dark)
    significance = checks.number("significance", significance, 0.0, 1.0, open_low=True)
    min_contrast = checks.number("min_contrast", min_contrast, 0.0)

    normals = mesh.vertex_normals()
    profiles = _sample_profiles(mesh.vertices, normals, positions, tomogram)
    if not dense_dark:
        profiles = -profiles
    blocks = _blocks(mesh.vertices, normals, profiles, max(_BLOCK_VOXELS * voxel, neighbourhood / _BLOCKS_ACROSS))
    centres = _centres(blocks, neighbourhood)
    means, errors = _patch_profiles(blocks, centres, neighbourhood)
    fits = _fit_profiles(positions, means, _Limits.for_profile(positions, voxel))
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = np.where(fits.central_maximum > 0, fits.central_maximum / errors, fits.central_maximum)
    verdict = _verdict(fits, contrast, errors, step / voxel, significance, min_contrast)
    thickness = np.where(verdict, fits.separation, np.nan)
    owner = _nearest_centre(mesh.vertices, normals, blocks, centres)
    sign = 1.0 if dense_dark else -1.0
    return ThicknessResult(
        thickness=thickness[owner], quality=contrast[owner], resolved=verdict[owner],
        membrane_thickness=float(thickness[-1]), membrane_quality=float(contrast[-1]),
        membrane_resolved=bool(verdict[-1]), profile_positions=positions, profile=sign * means[-1],
    )


def tomogram_box(mesh: Mesh, tomogram: Volume, *, half_width: float = HALF_WIDTH,
                 step: float | None = None) -> Volume:
    """The part of ``tomogram`` that :func:`membrane_thickness` reads for ``mesh`` (same options), as
    a Volume in the same frame: what to hand a worker process instead of the whole tomogram. The
    thickness measured in it is the thickness measured in the whole tomogram."""
    positions = _positions(half_width, step, float(min(tomogram.voxel_size)))
    start, stop = _box(mesh.vertices, float(np.abs(positions).max()), tomogram)
    box = np.asarray(tomogram.data[tuple(slice(a, b) for a, b in zip(start, stop))])
    origin = tuple(np.asarray(tomogram.origin) + start * np.asarray(tomogram.voxel_size))
    return Volume(box, tomogram.voxel_size, origin, tomogram.path)


def _positions(half_width: float, step: float | None, voxel: float) -> np.ndarray:
    """Sample positions along the normal, Å: ``step`` apart (``None``: half a voxel) within ±``half_width``."""
    half_width = checks.number("half_width", half_width, 2 * voxel, open_low=True)
    step = voxel / 2 if step is None else checks.number("step", step, 0.0, half_width / 4, open_low=True)
    return np.arange(-round(half_width / step), round(half_width / step) + 1) * step


def _box(vertices: np.ndarray, reach: float, tomogram: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop voxel (z, y, x) of the box holding every sample within ``reach`` Å of ``vertices``."""
    if not len(vertices):
        return np.zeros(3, dtype=int), np.zeros(3, dtype=int)
    low = world_to_voxel(vertices.min(axis=0) - reach, tomogram.voxel_size, tomogram.origin)
    high = world_to_voxel(vertices.max(axis=0) + reach, tomogram.voxel_size, tomogram.origin)
    start = np.clip(np.floor(np.minimum(low, high)).astype(int) - 1, 0, tomogram.shape)
    stop = np.clip(np.ceil(np.maximum(low, high)).astype(int) + 2, 0, tomogram.shape)
    return start, np.maximum(stop, start)


def _sample_profiles(vertices: np.ndarray, normals: np.ndarray, positions: np.ndarray,
                     tomogram: Volume) -> np.ndarray:
    """``(n, s)`` float32 tomogram values along each normal, standardised; NaN outside the volume."""
    n, s = len(vertices), len(positions)
    out = np.full((n, s), np.nan, dtype=np.float32)
    if n == 0:
        return out
    start, stop = _box(vertices, float(np.abs(positions).max()), tomogram)
    if np.any(stop - start < 2):
        return out
    box = np.asarray(tomogram.data[tuple(slice(a, b) for a, b in zip(start, stop))])
    if box.dtype not in (np.float32, np.float64) or not box.dtype.isnative:
        box = box.astype(np.float32)
    centre, scale = _standardisation(box)
    top = np.array(box.shape) - 1
    for first in range(0, n, _CHUNK):
        v, u = vertices[first:first + _CHUNK], normals[first:first + _CHUNK]
        points = v[:, None, :] + positions[None, :, None] * u[:, None, :]
        zyx = world_to_voxel(points, tomogram.voxel_size, tomogram.origin) - start
        values = ndimage.map_coordinates(box, zyx.reshape(-1, 3).T, order=1, mode="nearest")
        inside = np.all((zyx >= 0) & (zyx <= top), axis=-1).reshape(-1)
        values = np.where(inside, (values - centre) / scale, np.nan)
        out[first:first + _CHUNK] = values.reshape(len(v), s)
    return out


def _standardisation(box: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the box (from a strided subsample of a large one)."""
    stride = max(1, int(np.ceil((box.size / _STATS_VOXELS) ** (1 / 3))))
    sample = np.asarray(box[::stride, ::stride, ::stride], dtype=np.float64)
    scale = float(sample.std())
    return float(sample.mean()), scale if scale > 0 else 1.0


@dataclass(frozen=True)
class _Blocks:
    """Vertex profiles pooled in small blocks of surface (one side of a fold each): their mean
    profiles, vertex counts, mean positions and normals. Blocks are wider than the tomogram's
    noise is correlated, so their means scatter by the noise and give a patch its standard error."""

    profiles: np.ndarray
    counts: np.ndarray
    positions: np.ndarray
    normals: np.ndarray


def _blocks(vertices: np.ndarray, normals: np.ndarray, profiles: np.ndarray, size: float) -> _Blocks:
    valid = np.isfinite(profiles).all(axis=1)
    facing = np.abs(normals).argmax(axis=1) * 2 + (normals[np.arange(len(normals)), np.abs(normals).argmax(axis=1)] > 0)
    key = np.concatenate([np.floor(vertices / size).astype(np.int64), facing[:, None]], axis=1)[valid]
    if not len(key):
        return _Blocks(np.zeros((0, profiles.shape[1])), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
    _, block = np.unique(key, axis=0, return_inverse=True)
    block = block.ravel()
    member = csr_matrix((np.ones(len(block)), (block, np.arange(len(block)))), shape=(block.max() + 1, len(block)))
    counts = np.asarray(member.sum(axis=1)).ravel()
    mean = [member @ a / counts[:, None] for a in (profiles[valid].astype(np.float64), vertices[valid], normals[valid])]
    mean[2] /= np.maximum(np.linalg.norm(mean[2], axis=1, keepdims=True), 1e-12)
    return _Blocks(mean[0], counts, mean[1], mean[2])


def _centres(blocks: _Blocks, neighbourhood: float) -> np.ndarray:
    """Indices of the blocks that centre a patch: one per cell of ``neighbourhood`` × ``_CENTRE_CELL``."""
    cell = np.floor(blocks.positions / (neighbourhood * _CENTRE_CELL)).astype(np.int64)
    return np.unique(cell, axis=0, return_index=True)[1] if len(cell) else np.zeros(0, dtype=np.int64)


def _patch_profiles(blocks: _Blocks, centres: np.ndarray, neighbourhood: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean profile and its standard error (root mean square over the samples) of every patch,
    then of the whole membrane (last row), from the scatter of block means; NaN with too few blocks."""
    tree = cKDTree(blocks.positions)
    pairs = cKDTree(blocks.positions[centres]).sparse_distance_matrix(tree, neighbourhood, output_type="ndarray")
    rows, cols = pairs["i"], pairs["j"]
    keep = np.einsum("ij,ij->i", blocks.normals[centres][rows], blocks.normals[cols]) > _NORMAL_AGREEMENT
    rows = np.append(rows[keep], np.full(len(blocks.counts), len(centres)))  # the membrane: every block
    cols = np.append(cols[keep], np.arange(len(blocks.counts)))
    weights = csr_matrix((blocks.counts[cols], (rows, cols)), shape=(len(centres) + 1, len(blocks.counts)))
    total = np.asarray(weights.sum(axis=1)).ravel()
    squared = np.asarray(weights.multiply(weights).sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = weights @ blocks.profiles / total[:, None]
        spread = weights @ np.square(blocks.profiles) / total[:, None] - np.square(mean)
        effective = total**2 / squared  # Kish's effective number of blocks
        error = np.sqrt(np.maximum(spread, 0).mean(axis=1) / np.maximum(effective - 1, 1))
    few = ~(effective >= _MIN_BLOCKS)
    mean[few], error[few] = np.nan, np.nan
    return mean, error


def _nearest_centre(vertices: np.ndarray, normals: np.ndarray, blocks: _Blocks, centres: np.ndarray) -> np.ndarray:
    """For every vertex, the index (into ``centres``) of the nearest centre whose normal agrees;
    the membrane's own row (``len(centres)``) where there is no centre."""
    if not len(centres):
        return np.full(len(vertices), len(centres), dtype=np.int64)
    k = min(_NEAREST, len(centres))
    _, nearest = cKDTree(blocks.positions[centres]).query(vertices, k=k)
    nearest = nearest.reshape(len(vertices), k)
    agree = np.einsum("nkj,nj->nk", blocks.normals[centres][nearest], normals) > _NORMAL_AGREEMENT
    first = np.where(agree.any(axis=1), agree.argmax(axis=1), 0)
    return nearest[np.arange(len(vertices)), first]


def _verdict(fits: _Fits, contrast: np.ndarray, errors: np.ndarray, thinning: float, significance: float,
             min_contrast: float) -> np.ndarray:
    """Where two leaflet minima are clearly resolved (see the module's docstring): a likelihood-ratio
    test of two minima against one with the patch's own noise (``errors``, one independent sample
    per ``1 / thinning`` samples), and the central maximum's contrast."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = (fits.rss_one - fits.rss_two) * thinning / np.square(errors)
        p = stats.chi2.sf(gain, _TWO_PARAMETERS - _ONE_PARAMETERS)
    return fits.ok & (p < significance) & (contrast >= min_contrast)


# Profile fitting: a linear baseline minus k dark Gaussians of one width σ at positions m_i,
#   f(t) = b0 + b1 t / w − Σ a_i exp(−(t − m_i)² / 2σ²),  parameters (b0, b1, a_1..a_k, m_1..m_k, σ),
# k = 2 (two leaflets) or k = 1 (one dark band), fitted to many profiles at once.

_TWO_PARAMETERS, _ONE_PARAMETERS = 7, 5
_ITERATIONS = 40  # Levenberg–Marquardt steps at most
_CONVERGED = 1e-6  # a step gaining less than this share of the residual ends a profile's fit
_GIVE_UP = 1e6  # damping at which no step is found
_MIN_SEPARATION_VOXELS = 3.0  # leaflets closer are not sampled well enough to place both minima (biased, aliased)
_CONTRAST_SAMPLES = 41  # points between the two minima where the central maximum is looked for


@dataclass(frozen=True)
class _Limits:
    """Where the fit may put the membrane: centre within ±``centre`` of the surface, leaflet
    separation in [``separation_min``, ``separation_max``], width σ in [``width_min``, ``width_max``], Å."""

    centre: float
    separation_min: float
    separation_max: float
    width_min: float
    width_max: float
    step: float

    @classmethod
    def for_profile(cls, positions: np.ndarray, voxel: float) -> _Limits:
        half_width = float(positions[-1])
        return cls(centre=min(1.5 * voxel, half_width / 4), separation_min=_MIN_SEPARATION_VOXELS * voxel, separation_max=half_width,
                   width_min=0.3 * voxel, width_max=half_width / 2, step=float(positions[1] - positions[0]))


@dataclass(frozen=True)
class _Fits:
    """Per profile: whether the two-minima fit is a physical bilayer (``ok``), its leaflet
    separation and contrast, and the residual sums of squares of both models."""

    ok: np.ndarray
    separation: np.ndarray
    central_maximum: np.ndarray
    rss_two: np.ndarray
    rss_one: np.ndarray


def _fit_profiles(positions: np.ndarray, profiles: np.ndarray, limits: _Limits) -> _Fits:
    """Fit both models to every finite row of ``profiles`` ``(n, s)``."""
    n = len(profiles)
    finite = np.isfinite(profiles).all(axis=1)
    y = profiles[finite].astype(np.float64)
    two = _refine(positions, y, _grid_start(positions, y, limits, 2), limits)
    one = _refine(positions, y, _grid_start(positions, y, limits, 1), limits)
    rss_two, rss_one = _rss(positions, y, two), _rss(positions, y, one)
    amplitudes, (m1, m2), width = two[:, 2:4], (two[:, 4], two[:, 5]), two[:, 6]
    separation, centre = np.abs(m1 - m2), 0.5 * (m1 + m2)
    ok = ((amplitudes > 0).all(axis=1) & (separation >= limits.separation_min)
          & (separation <= limits.separation_max) & (np.abs(centre) <= limits.centre + limits.step)
          & (width >= limits.width_min) & (width <= limits.width_max))
    central = np.where(ok, _central_maximum(two), 0.0)
    out = {name: np.full(n, fill, dtype=float) for name, fill in
           (("separation", np.nan), ("central_maximum", np.nan), ("rss_two", np.nan), ("rss_one", np.nan))}
    for name, value in (("separation", separation), ("central_maximum", central), ("rss_two", rss_two), ("rss_one", rss_one)):
        out[name][finite] = value
    ok_all = np.zeros(n, dtype=bool)
    ok_all[finite] = ok
    return _Fits(ok=ok_all, **out)


def _dips(positions: np.ndarray, params: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of dips k, the Gaussians ``(n, k, s)`` and ``t − m_i`` ``(n, k, s)``."""
    k = (params.shape[1] - 3) // 2
    offset = positions[None, None, :] - params[:, 2 + k:2 + 2 * k, None]
    width = params[:, -1, None, None]
    return k, np.exp(-0.5 * (offset / width) ** 2), offset


def _model(positions: np.ndarray, params: np.ndarray) -> np.ndarray:
    k, gauss, _ = _dips(positions, params)
    tau = positions / positions[-1]
    return params[:, :1] + params[:, 1:2] * tau - np.einsum("nk,nks->ns", params[:, 2:2 + k], gauss)


def _rss(positions: np.ndarray, y: np.ndarray, params: np.ndarray) -> np.ndarray:
    return np.square(y - _model(positions, params)).sum(axis=1)


def _jacobian(positions: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``(n, s, p)`` derivatives of the model by each parameter."""
    k, gauss, offset = _dips(positions, params)
    amplitude, width = params[:, 2:2 + k, None], params[:, -1, None, None]
    weighted = amplitude * gauss
    columns = [np.ones_like(positions)[None].repeat(len(params), 0), np.broadcast_to(positions / positions[-1],
                                                                                      (len(params), len(positions)))]
    columns += [-gauss[:, i] for i in range(k)]
    columns += [-(weighted * offset)[:, i] / width[:, 0] ** 2 for i in range(k)]
    columns.append(-(weighted * offset**2).sum(axis=1) / width[:, 0] ** 3)
    return np.stack(columns, axis=-1)


def _grid_start(positions: np.ndarray, y: np.ndarray, limits: _Limits, k: int) -> np.ndarray:
    """Best parameters on a grid of centres, separations (k = 2) and widths, the baseline and
    depths solved linearly for each (variable projection); dips (positive depths) preferred."""
    centres = np.arange(-limits.centre, limits.centre + 1e-9, limits.step)
    widths = np.geomspace(limits.width_min, limits.width_max, 10)
    if k == 2:
        separations = np.arange(limits.separation_min, limits.separation_max + 1e-9, limits.step / 2)
        c, d, w = (a.ravel() for a in np.meshgrid(centres, separations, widths, indexing="ij"))
        where = np.stack([c + d / 2, c - d / 2], axis=1)
    else:
        c, w = (a.ravel() for a in np.meshgrid(centres, widths, indexing="ij"))
        where = c[:, None]
    tau = positions / positions[-1]
    gauss = np.exp(-0.5 * ((positions[None, None, :] - where[:, :, None]) / w[:, None, None]) ** 2)
    basis = np.concatenate([np.ones((len(w), 1, len(positions))), tau[None, None].repeat(len(w), 0), -gauss], axis=1)
    q, r = np.linalg.qr(basis.transpose(0, 2, 1))  # (g, s, 2 + k), (g, 2 + k, 2 + k)
    r_inverse = np.linalg.pinv(r)
    best = np.zeros((len(y), 2 + k), dtype=np.float64)
    choice = np.zeros(len(y), dtype=np.int64)
    flat_q = q.transpose(1, 0, 2).reshape(len(positions), -1)
    for first in range(0, len(y), 256):
        rows = y[first:first + 256]
        projected = (rows @ flat_q).reshape(len(rows), len(w), 2 + k)
        depths = np.einsum("gij,ngj->ngi", r_inverse[:, 2:], projected)
        rss = np.square(rows).sum(axis=1, keepdims=True) - np.square(projected).sum(axis=2)
        dips = (depths > 0).all(axis=2)
        rss = np.where(dips | ~dips.any(axis=1, keepdims=True), rss, np.inf)
        pick = rss.argmin(axis=1)
        choice[first:first + 256] = pick
        best[first:first + 256] = np.einsum("nij,nj->ni", r_inverse[pick], projected[np.arange(len(rows)), pick])
    return np.concatenate([best, where[choice], w[choice, None]], axis=1)


def _refine(positions: np.ndarray, y: np.ndarray, params: np.ndarray, limits: _Limits) -> np.ndarray:
    """Batched Levenberg–Marquardt from ``params``; each profile keeps its best step and stops
    once a step gains less than a millionth of its residual (or none is found)."""
    params = params.copy()
    rss = _rss(positions, y, params)
    damping = np.full(len(y), 1e-3)
    active = np.arange(len(y))
    eye = np.eye(params.shape[1])
    for _ in range(_ITERATIONS):
        if not len(active):
            break
        current = params[active]
        jacobian = _jacobian(positions, current)
        residual = y[active] - _model(positions, current)
        normal = np.matmul(jacobian.transpose(0, 2, 1), jacobian)
        gradient = np.matmul(jacobian.transpose(0, 2, 1), residual[..., None])
        scaled = normal + damping[active, None, None] * (normal * eye + 1e-12 * eye)
        try:
            delta = np.linalg.solve(scaled, gradient)[..., 0]
        except np.linalg.LinAlgError:
            delta = np.matmul(np.linalg.pinv(scaled), gradient)[..., 0]
        trial = current + delta
        trial[:, -1] = np.clip(trial[:, -1], limits.width_min / 2, 2 * limits.width_max)
        trial_rss = _rss(positions, y[active], trial)
        better = trial_rss < rss[active]
        gain = np.where(better, rss[active] - trial_rss, 0.0)
        params[active[better]], rss[active[better]] = trial[better], trial_rss[better]
        damping[active] = np.where(better, damping[active] / 3, damping[active] * 4)
        done = (better & (gain <= _CONVERGED * rss[active])) | (damping[active] > _GIVE_UP)
        active = active[~done]
    return params


def _central_maximum(params: np.ndarray) -> np.ndarray:
    """Height of the model's central maximum over its shallower leaflet minimum (0: no maximum)."""
    amplitude, where, width = params[:, 2:4], params[:, 4:6], params[:, 6]
    low, high = where.min(axis=1), where.max(axis=1)
    t = low[:, None] + (high - low)[:, None] * np.linspace(0, 1, _CONTRAST_SAMPLES)[None]
    depth = (amplitude[:, :, None] * np.exp(-0.5 * ((t[:, None] - where[:, :, None]) / width[:, None, None]) ** 2)
             ).sum(axis=1)  # how far below the baseline the model is, (n, samples)
    half = _CONTRAST_SAMPLES // 2
    left, right = depth[:, :half + 1].argmax(axis=1), half + depth[:, half:].argmax(axis=1)
    between = np.arange(_CONTRAST_SAMPLES)[None]
    valley = np.where((between >= left[:, None]) & (between <= right[:, None]), depth, np.inf).min(axis=1)
    rows = np.arange(len(params))
    return np.minimum(depth[rows, left], depth[rows, right]) - valley
