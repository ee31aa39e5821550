"""Uncertainty: how much the test-time-augmentation copies of a tomogram's scores disagree.

Definition. With mirror TTA each tomogram is predicted ``n`` times (8 mirrorings); copy ``k``
gives blended scores (logits) ``s_k`` for every voxel. Bilayer's raw uncertainty is the sample
variance of the membrane probability over the copies,
``var_k sigmoid(s_k) = sum_k (p_k - mean p)² / (n - 1)``, in probability² (0 where all copies
agree; at most 2/7 ≈ 0.29 for 8 copies split evenly between 0 and 1). This is MemBrain-seg's
``--store-uncertainty-map`` variance (``torch.var`` over its 8 mirrored whole-tomogram passes,
same ``n - 1``); with ``tta_grid=membrain`` the copies are its passes, window for window, so the
raw map is MemBrain-seg's up to float32 rounding. With ``tta_grid=window`` copy ``k`` is every
window mirrored in place by mirroring ``k``. Each copy streams through a temporary file as a
running mean and sum of squared deviations (Welford's update, :func:`running_variance`), so no
copy is held whole and memory stays that of one pass.

Smoothing (on by default, as MemBrain-seg writes only this map): voxels of the mask take the
value of the nearest voxel of its core (the mask eroded once with the 6-connected cross), so the
map says how sure the membrane is rather than where its edge falls, then a 5×5 median runs in
each z section (:func:`smooth_uncertainty`). Two deliberate differences from MemBrain-seg: the
nearest core voxel is looked for within :data:`FILL_RADIUS` voxels (MemBrain-seg searches the whole
tomogram, which needs 20 bytes per voxel at once and takes a far membrane's value for a thin one;
a voxel with no core that near keeps its own value), and the work streams slab by slab
(:class:`UncertaintySmoother`), giving exactly the whole-volume answer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage, special

from bilayer.errors import ConfigError
from bilayer.infer.blend import EmitFn

__all__ = ["FILL_RADIUS", "UncertaintySmoother", "membrane_probability", "running_variance", "smooth_uncertainty",
           "smoothing_bytes", "variance_of"]

#: How far (voxels) a mask voxel looks for the nearest voxel of the mask's core when smoothing.
FILL_RADIUS = 4
#: MemBrain-seg's median window: 1 section × 5 × 5 voxels.
MEDIAN_SIZE = (1, 5, 5)
_BLOCK_BYTES = 256 * 1024**2  # smoothing work per block: ~26 bytes per voxel (feature transform, copies)
_BYTES_PER_VOXEL = 26


def membrane_probability(scores: np.ndarray) -> np.ndarray:
    """The network's logits as membrane probabilities, ``sigmoid(scores)``, float32."""
    return special.expit(np.asarray(scores, dtype=np.float32))


def running_variance(mean: np.ndarray | None, squares: np.ndarray | None, value: np.ndarray,
                     count: int) -> tuple[np.ndarray, np.ndarray]:
    """Welford's update of a running mean and sum of squared deviations with the ``count``-th value.

    Args:
        mean, squares: the state after ``count - 1`` values (``None`` before the first).
        value: the new value (any shape, float32).
        count: how many values including this one (1 for the first).

    Returns:
        New ``(mean, squares)`` arrays; the sample variance is ``squares / (count - 1)``.
    """
    value = np.asarray(value, dtype=np.float32)
    if mean is None or count == 1:
        return value.copy(), np.zeros_like(value)
    delta = value - mean
    mean = mean + delta / np.float32(count)
    return mean, squares + delta * (value - mean)


def variance_of(squares: np.ndarray, count: int) -> np.ndarray:
    """The sample variance (denominator ``count - 1``, as ``torch.var``) from :func:`running_variance`."""
    if count < 2:
        raise ConfigError(f"a variance needs at least 2 copies, not {count}; use test-time augmentation")
    return squares / np.float32(count - 1)


def smoothing_bytes(shape: Sequence[int], slab_depth: int, *, radius: int = FILL_RADIUS,
                    block_bytes: int = _BLOCK_BYTES) -> int:
    """Peak bytes :class:`UncertaintySmoother` holds for a volume of ``shape`` fed slabs of at most
    ``slab_depth`` sections: the sections held (twice while a slab is appended) and one block of work."""
    section = int(shape[1]) * int(shape[2])
    halo = 2 * (radius + 1)
    chunk = max(halo, block_bytes // (_BYTES_PER_VOXEL * max(section, 1)) - halo)
    held = 2 * 5 * min(int(shape[0]), slab_depth + halo) * section  # float32 variance and bool mask
    return held + _BYTES_PER_VOXEL * min(int(shape[0]), chunk + halo) * section


def smooth_uncertainty(variance: np.ndarray, mask: np.ndarray, *, radius: int = FILL_RADIUS) -> np.ndarray:
    """MemBrain-seg's processing of a raw uncertainty map, over whole (z, y, x) arrays.

    Mask voxels take the variance of the nearest voxel of the mask's core (the mask eroded once,
    6-connected; ties broken as ``scipy.ndimage.distance_transform_edt`` breaks them, as in
    MemBrain-seg) within ``radius`` voxels, else keep their own; then a (1, 5, 5) median (mirrored
    at the edges). Use :class:`UncertaintySmoother` to do the same slab by slab.

    Returns:
        A new float32 array of ``variance``'s shape.
    """
    variance = np.asarray(variance, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if variance.shape != mask.shape or variance.ndim != 3:
        raise ConfigError(f"variance {variance.shape} and mask {mask.shape} must be (z, y, x) arrays of one shape")
    return _smooth(variance, mask, 0, len(variance), _check_radius(radius))


class UncertaintySmoother:
    """Streams :func:`smooth_uncertainty`: an ``emit``-like target for (variance, mask) slabs.

    Call it with ``(z_start, variance, mask)`` slabs in z order, in any depths; each finished
    section range goes to ``emit`` once ``radius + 1`` sections beyond it have arrived (or the
    last one has), in order. Memory: the sections not yet finished plus ``radius + 1`` behind
    them, and one block of at most about 256 MB of work. The result equals
    :func:`smooth_uncertainty` of the whole volume.
    """

    def __init__(self, shape: Sequence[int], emit: EmitFn, *, radius: int = FILL_RADIUS,
                 block_bytes: int = _BLOCK_BYTES) -> None:
        self.shape = tuple(int(n) for n in shape)
        self._emit, self._radius = emit, _check_radius(radius)
        halo = 2 * (self._radius + 1)
        section = self.shape[1] * self.shape[2]
        self._chunk = max(halo, block_bytes // (_BYTES_PER_VOXEL * max(section, 1)) - halo)
        self._variance = np.empty((0, *self.shape[1:]), np.float32)
        self._mask = np.empty((0, *self.shape[1:]), bool)
        self._base = self._received = self._done = 0

    @property
    def complete(self) -> bool:
        """True once every section has been emitted."""
        return self._done == self.shape[0]

    def __call__(self, z_start: int, variance: np.ndarray, mask: np.ndarray) -> None:
        depth = variance.shape[0]
        if z_start != self._received or variance.shape[1:] != self.shape[1:] or mask.shape != variance.shape:
            raise ConfigError(f"slabs of shape {variance.shape}/{mask.shape} at z={z_start} do not continue a volume "
                              f"of shape {self.shape} received up to z={self._received}; give them in z order")
        self._variance = np.concatenate([self._variance, np.asarray(variance, np.float32)])
        self._mask = np.concatenate([self._mask, np.asarray(mask, bool)])
        self._received += depth
        last = self.shape[0]
        ready = last if self._received >= last else self._received - self._radius - 1
        while self._done < ready:
            a, b = self._done, min(self._done + self._chunk, ready)
            lo, hi = max(0, a - self._radius - 1), min(last, b + self._radius + 1)
            block = slice(lo - self._base, hi - self._base)
            self._emit(a, _smooth(self._variance[block], self._mask[block], a - lo, b - lo, self._radius))
            self._done = b
        drop = max(0, self._done - self._radius - 1) - self._base
        if drop > 0:
            self._variance, self._mask = self._variance[drop:].copy(), self._mask[drop:].copy()
            self._base += drop


def _smooth(variance: np.ndarray, mask: np.ndarray, a: int, b: int, radius: int) -> np.ndarray:
    """Smoothed sections ``a:b`` of a block that holds ``radius + 1`` sections beyond them on each
    side, or up to the volume's face (the erosion counts beyond a face as background)."""
    out = variance[a:b].copy()
    c0, c1 = max(0, a - radius), min(len(mask), b + radius)
    core = ndimage.binary_erosion(mask)[c0:c1]
    fg = mask[a:b]
    if core.any() and fg.any():
        nearest = ndimage.distance_transform_edt(~core, return_distances=False, return_indices=True)
        z, y, x = np.nonzero(fg)
        zc = z + (a - c0)
        nz, ny, nx = nearest[0][zc, y, x], nearest[1][zc, y, x], nearest[2][zc, y, x]
        near = (nz - zc) ** 2 + (ny - y) ** 2 + (nx - x) ** 2 <= radius**2
        out[z[near], y[near], x[near]] = variance[c0:c1][nz[near], ny[near], nx[near]]
    return ndimage.median_filter(out, size=MEDIAN_SIZE)


def _check_radius(radius: int) -> int:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ConfigError(f"radius={radius!r} must be a whole number of voxels >= 0")
    return int(radius)
