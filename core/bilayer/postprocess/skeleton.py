"""MemBrain-seg's surface skeleton: a one-voxel-thick sheet through each membrane.

The method is that of Martinez-Sanchez, Garcia, Asano, Lucic and Fernandez (2014), "Robust
membrane detection based on tensor voting for electron tomography", J. Struct. Biol.
186(1):49-61, doi:10.1016/j.jsb.2014.02.015, as MemBrain-seg 0.0.10 adapted it to binary
masks. The mid-surface is the ridge of the distance transform, found with its curvature:

1. the negative Euclidean distance transform of the mask (voxels);
2. its Hessian by repeated central differences (half one-sided differences at the volume
   border), each component smoothed by a normalised 9-voxel Gaussian (sigma 1 voxel)
   with zero padding;
3. at every mask voxel the eigenvalue of largest magnitude (the curvature across the
   membrane) and its unit eigenvector v (the membrane normal);
4. that eigenvalue (0 outside the mask) smoothed by a Gaussian (sigma 1 voxel, radius 4,
   mirrored border);
5. non-maximum suppression: a mask voxel off the outermost layer is kept when its smoothed
   eigenvalue exceeds both trilinear interpolations at +-0.71 * |v| voxels. As in
   MemBrain-seg the steps use |v|, so the samples lie in the (+, +, +) and (-, -, -)
   octants whatever the signs of the normal.

The result equals MemBrain-seg's ``skeletonization`` after transposing its (x, y, z) array
to (z, y, x), except at near-ties of step 5. The way there differs: z slabs with halos wide
enough to make each exact (memory follows the slab, not ~16 full volumes), an exact
distance transform per slab (its halo grows until it is), work cropped to the mask's
bounding box, ``torch.linalg.eigh`` in batches, and float64 sums rounded to float32 where
MemBrain-seg stores float32, so a transposed input gives exactly the transposed skeleton.

Length: just over 300 lines; the slab loop and the Hessian maths it feeds stay together.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from scipy import ndimage

from bilayer.device import resolve_device
from bilayer.errors import ConfigError

__all__ = ["skeletonize"]

_log = logging.getLogger(__name__)

_SIGMA = 1.0  # voxels, both Gaussian smoothings
_RADIUS = 4  # voxels: MemBrain-seg's 9-voxel Hessian kernel, and scipy's truncate=4
_STEP = np.float32(0.71)  # voxels along |eigenvector| to the interpolated neighbours
_HESSIAN_HALO = 2 + _RADIUS  # planes spoiled by a cut: 2 by the differences, 4 by smoothing
_EDT_HALO = 8  # first guess of the planes the distance transform needs around a box
_SLAB_VOXELS = 1 << 23  # voxels per slab: bounds the float64 temporaries (~50 B/voxel)
_TIE = 2.0**-20  # relative: closer than this to an interpolation is a tie (float32 noise)
_BATCH = 1 << 20  # default number of voxels per eigen-solve and suppression batch
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # Hessian components kept
_SYMMETRIC = np.array([[0, 1, 2], [1, 3, 4], [2, 4, 5]])  # _PAIRS index of H[a, b]
_KERNEL = np.exp(-0.5 * (np.arange(-_RADIUS, _RADIUS + 1) / _SIGMA) ** 2)
_KERNEL /= _KERNEL.sum()  # separable factor of MemBrain-seg's normalised 9^3 kernel


def skeletonize(mask: np.ndarray, *, device: str | torch.device = "cpu", batch_size: int | None = None) -> np.ndarray:
    """Reduce a membrane mask to its one-voxel-thick mid-surface, as MemBrain-seg does.

    A skeleton measures membranes independently of how thick the network drew them, and
    can be grown back to any thickness by dilation. See the module docstring for the
    steps and for how this relates to MemBrain-seg's ``skeletonization``.

    Args:
        mask: 3-D (z, y, x) array; voxels > 0 are membrane.
        device: Torch device for the eigen decompositions (float64), e.g. ``"cuda"``.
        batch_size: Voxels per eigen-solve and suppression batch; lower it to save
            memory. ``None`` uses 2**20.

    Returns:
        Boolean (z, y, x) skeleton, a subset of the mask that never touches the
        outermost voxel layer of the volume.

    Raises:
        ConfigError: ``mask`` is not 3-D, ``device`` is unknown or unavailable, or
            ``batch_size`` is not a positive integer.
    """
    mask = _as_mask(mask)
    device = resolve_device(device)
    batch = _as_batch(batch_size)
    skeleton = np.zeros(mask.shape, dtype=bool)
    if min(mask.shape) < 3 or not mask.any():
        return skeleton
    planes = max(1, _SLAB_VOXELS // (mask.shape[1] * mask.shape[2]))
    slabs = [(z0, min(z0 + planes, mask.shape[0])) for z0 in range(0, mask.shape[0], planes)]
    eigenvalue = np.zeros(mask.shape, dtype=np.float32)
    steps = [_eigen_slab(mask, z0, z1, eigenvalue, device, batch) for z0, z1 in slabs]
    for (z0, z1), step in zip(slabs, steps, strict=True):
        _suppress_slab(mask, z0, z1, eigenvalue, step, skeleton, batch)
    _log.debug("skeleton of %d mask voxels has %d voxels", mask.sum(), skeleton.sum())
    return skeleton


def _eigen_slab(
    mask: np.ndarray, z0: int, z1: int, eigenvalue: np.ndarray, device: torch.device, batch: int
) -> np.ndarray:
    """Run steps 1-3 for the mask voxels of planes z0..z1, filling ``eigenvalue`` there.

    Returns:
        (n, 3) float32 interpolation steps 0.71 * |v| (z, y, x) of those n voxels, in
        C order.
    """
    lo, hi = _bounding_box(mask, z0, z1)
    if lo is None:
        return np.zeros((0, 3), dtype=np.float32)
    lo, hi = _grow(lo, hi, _HESSIAN_HALO, mask.shape)
    box = _box(lo, hi)
    selected = mask[box].copy()
    selected[: max(z0 - lo[0], 0)] = False
    selected[z1 - lo[0] :] = False
    distance = _distance(mask, lo, hi)
    hessian = _smoothed_hessian(-distance, selected)
    del distance
    values, steps = _first_eigen(hessian, device, batch)
    eigenvalue[box][selected] = values
    return steps


def _distance(mask: np.ndarray, lo: list[int], hi: list[int]) -> np.ndarray:
    """Euclidean distance transform of the whole mask, evaluated on a box (float32).

    The transform is computed on the box plus a halo; it is exact when every distance
    found is no longer than the way out of the halo, else the halo doubles.
    """
    halo = _EDT_HALO
    while True:
        e_lo, e_hi = _grow(lo, hi, halo, mask.shape)
        region = mask[_box(e_lo, e_hi)]
        whole = e_lo == [0, 0, 0] and e_hi == list(mask.shape)
        if whole or not region.all():  # without background, scipy's distances are meaningless
            inner = tuple(slice(a - e, b - e) for a, b, e in zip(lo, hi, e_lo, strict=True))
            distance = ndimage.distance_transform_edt(region)[inner]
            if whole or bool(np.all(distance <= _way_out(lo, hi, e_lo, e_hi, mask.shape))):
                return distance.astype(np.float32)
        _log.debug("distance transform halo %d too small, doubling", halo)
        halo *= 2


def _way_out(lo: list[int], hi: list[int], e_lo: list[int], e_hi: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Distance from each voxel of box [lo, hi) to the nearest voxel outside box [e_lo, e_hi).

    Faces of the outer box that are faces of the volume do not count: nothing lies beyond.
    """
    limit = np.full((1, 1, 1), np.inf)
    for axis in range(3):
        coord = np.arange(lo[axis], hi[axis], dtype=np.float64)
        bound = np.full(coord.shape, np.inf)
        if e_lo[axis] > 0:
            bound = np.minimum(bound, coord - e_lo[axis] + 1)
        if e_hi[axis] < shape[axis]:
            bound = np.minimum(bound, e_hi[axis] - coord)
        limit = np.minimum(limit, bound.reshape([-1 if a == axis else 1 for a in range(3)]))
    return limit


def _smoothed_hessian(field: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Step 2: the 6 smoothed Hessian components of ``field`` at the selected voxels.

    Differences and smoothing run in float64 (the differences are then exact, so mixed
    derivatives do not depend on the axis order); results are rounded to float32.

    Returns:
        (n, 6) float32 components in ``_PAIRS`` order over (z, y, x).
    """
    field = field.astype(np.float64)
    hessian = np.empty((int(selected.sum()), len(_PAIRS)), dtype=np.float32)
    buffer = np.empty_like(field)
    for first in range(3):
        gradient = _central_difference(field, first)
        for second in range(first, 3):
            component = _central_difference(gradient, second)
            for axis in range(3):
                ndimage.correlate1d(component, _KERNEL, axis=axis, output=buffer, mode="constant")
                component, buffer = buffer, component
            hessian[:, _PAIRS.index((first, second))] = component[selected]
    return hessian


def _central_difference(values: np.ndarray, axis: int) -> np.ndarray:
    """(v[i+1] - v[i-1]) / 2 inside, (v[1] - v[0]) / 2 and (v[-1] - v[-2]) / 2 at the ends."""

    def cut(part: slice) -> tuple[slice, ...]:
        return tuple(part if a == axis else slice(None) for a in range(values.ndim))

    out = np.empty_like(values)
    np.subtract(values[cut(slice(2, None))], values[cut(slice(None, -2))], out=out[cut(slice(1, -1))])
    np.subtract(values[cut(slice(1, 2))], values[cut(slice(0, 1))], out=out[cut(slice(0, 1))])
    np.subtract(values[cut(slice(-1, None))], values[cut(slice(-2, -1))], out=out[cut(slice(-1, None))])
    out *= 0.5
    return out


def _first_eigen(hessian: np.ndarray, device: torch.device, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: the eigenvalue of largest magnitude and 0.71 * |its unit eigenvector|.

    Returns:
        (n,) float32 eigenvalues and (n, 3) float32 interpolation steps (z, y, x).
    """
    values = np.empty(hessian.shape[0], dtype=np.float32)
    steps = np.empty((hessian.shape[0], 3), dtype=np.float32)
    for start in range(0, hessian.shape[0], batch):
        stop = min(start + batch, hessian.shape[0])
        matrices = torch.from_numpy(hessian[start:stop][:, _SYMMETRIC].astype(np.float64))
        eigenvalues, eigenvectors = torch.linalg.eigh(matrices.to(device))
        pick = eigenvalues.abs().argmax(dim=1)
        rows = torch.arange(stop - start, device=eigenvalues.device)
        values[start:stop] = eigenvalues[rows, pick].float().cpu().numpy()
        steps[start:stop] = eigenvectors[rows, :, pick].abs().float().cpu().numpy()
    steps *= _STEP
    return values, steps


def _suppress_slab(
    mask: np.ndarray, z0: int, z1: int, eigenvalue: np.ndarray, steps: np.ndarray, skeleton: np.ndarray, batch: int
) -> None:
    """Run steps 4-5 for the mask voxels of planes z0..z1, marking the maxima in ``skeleton``."""
    lo, hi = _bounding_box(mask, z0, z1)
    if lo is None:
        return
    lo, hi = _grow(*_grow(lo, hi, 1, mask.shape), _RADIUS, mask.shape)
    smooth = ndimage.gaussian_filter(
        eigenvalue[_box(lo, hi)], _SIGMA, mode="reflect", truncate=_RADIUS / _SIGMA, output=np.float64
    ).astype(np.float32)
    coords = np.argwhere(mask[z0:z1])
    coords[:, 0] += z0
    inside = np.all((coords >= 1) & (coords < np.array(mask.shape) - 1), axis=1)
    coords, steps = coords[inside], steps[inside]
    strides = np.array([smooth.shape[1] * smooth.shape[2], smooth.shape[2], 1])
    centre = (coords - np.array(lo)) @ strides
    flat = smooth.ravel()
    for start in range(0, coords.shape[0], batch):
        part = slice(start, start + batch)
        keep = _is_maximum(flat, centre[part], steps[part], strides)
        skeleton[tuple(coords[part][keep].T)] = True


def _is_maximum(flat: np.ndarray, centre: np.ndarray, steps: np.ndarray, strides: np.ndarray) -> np.ndarray:
    """Step 5: tell whether each centre is above both trilinear interpolations at +-steps.

    Each weight is a float64 product of three float32 factors (exact after the first
    product) and the 8 terms are summed in sorted order, so the test does not depend on
    the axis order of the volume. A value within ``_TIE`` of an interpolation is a tie,
    which MemBrain-seg leaves to float32 rounding: the forward side accepts it and the
    backward side rejects it, so of two equal maxima (the two middle planes of a slab
    of even thickness) exactly the backward one is kept.
    """
    offsets = (steps > 0) * strides
    complement = np.float32(1) - steps
    forward = np.empty((centre.shape[0], 8))
    backward = np.empty((centre.shape[0], 8))
    for corner, far in enumerate(itertools.product((False, True), repeat=3)):
        weight = np.ones(centre.shape[0])
        offset = np.zeros(centre.shape[0], dtype=np.int64)
        for axis in range(3):
            weight = weight * (steps[:, axis] if far[axis] else complement[:, axis])
            if far[axis]:
                offset += offsets[:, axis]
        forward[:, corner] = flat[centre + offset] * weight
        backward[:, corner] = flat[centre - offset] * weight
    forward.sort(axis=1)
    backward.sort(axis=1)
    local = flat[centre].astype(np.float64)
    tolerance = _TIE * np.abs(local)
    return (local >= forward.sum(axis=1) - tolerance) & (local > backward.sum(axis=1) + tolerance)


def _bounding_box(mask: np.ndarray, z0: int, z1: int) -> tuple[list[int] | None, list[int] | None]:
    """Bounding box [lo, hi) of the mask voxels of planes z0..z1, or (None, None)."""
    slab = mask[z0:z1]
    lo, hi = [], []
    for axis in range(3):
        hits = np.flatnonzero(slab.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            return None, None
        lo.append(int(hits[0]) + (z0 if axis == 0 else 0))
        hi.append(int(hits[-1]) + 1 + (z0 if axis == 0 else 0))
    return lo, hi


def _grow(lo: list[int], hi: list[int], margin: int, shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Grow the box [lo, hi) by ``margin`` voxels on every side, clipped to ``shape``."""
    return [max(a - margin, 0) for a in lo], [min(b + margin, s) for b, s in zip(hi, shape, strict=True)]


def _box(lo: list[int], hi: list[int]) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ConfigError(f"skeletonize needs a 3-D (z, y, x) mask, got shape {mask.shape}")
    return mask > 0


def _as_batch(batch_size: int | None) -> int:
    if batch_size is None:
        return _BATCH
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive whole number of voxels, got {batch_size!r}")
    return int(batch_size)
