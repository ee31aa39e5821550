"""A mask made on a rescaled tomogram put back onto the original tomogram's grid: MemBrain-seg's
``match_seg_to_tomo`` (nearest neighbour, as ``scipy.ndimage.zoom(order=0)`` picks), slab by slab
over the rescale's plane reader, with the original's header (voxel size, origin) and the mask's dtype.

Output voxel ``o`` takes source ``round(o (n - 1) / (m - 1))`` (corner-aligned, scipy's rounding
kept). One difference: where scipy's float rounding puts the last output voxel a hair beyond the
source (about 2.7 % of size pairs), zoom writes 0 there (its ``constant`` mode); Bilayer takes the
last source voxel.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.ndimage

from bilayer.errors import BilayerWarning, InputFileError, VoxelSizeError
from bilayer.io import (
    PLAUSIBLE_VOXEL_SIZE,
    Volume,
    check_output_path,
    ensure_output_dir,
    open_volume_writer,
    output_name,
    read_volume,
)
from bilayer.preprocess.rescale import _destination, _planes, _read_geometry, _step

__all__ = ["match_mask_file", "nearest_indices"]


def nearest_indices(size: int, new_size: int) -> np.ndarray:
    """For each of ``new_size`` voxels, the nearest of ``size`` source voxels as
    ``scipy.ndimage.zoom(order=0)`` (MemBrain-seg's ``match_seg_to_tomo``) picks it: corner-aligned,
    ``round(o (size - 1) / (new_size - 1))`` with scipy's rounding; its out-of-range last voxel
    (which zoom sets to 0) takes the last source voxel."""
    if new_size < 2 or size < 2:
        return np.zeros(new_size, dtype=np.intp)
    picked = scipy.ndimage.zoom(np.arange(1, size + 1, dtype=float), new_size / size, order=0, prefilter=False)
    exact = (2 * np.arange(new_size) * (size - 1) + (new_size - 1)) // (2 * (new_size - 1))
    if picked.size != new_size:
        return exact.astype(np.intp)
    return np.where(picked >= 1, picked - 1, exact).astype(np.intp)


def match_mask_file(segmentation: str | os.PathLike, like: str | os.PathLike,
                    destination: str | os.PathLike | None = None, *, voxel_size: float | None = None,
                    overwrite: bool = False) -> Path:
    """Put a mask made on a rescaled tomogram back onto the original tomogram ``like``'s grid
    (MemBrain-seg's ``match_seg_to_tomo``: nearest neighbour), slab by slab; returns the path written.

    Args:
        segmentation: the mask (or labels, or scores) on the rescaled grid; its dtype is kept.
        like: the original tomogram; only its header is read (shape, voxel size, origin).
        destination: the file, a folder (``<like-stem>_seg.mrc`` in it), or ``None`` (that name beside
            ``segmentation``).
        voxel_size: Å, replacing ``like``'s header voxel size.
        overwrite: replace an existing ``destination`` (never an input).

    Raises:
        InputFileError: an unreadable file, or a mask that does not cover the tomogram's extent
            (within 3 of its voxels per axis).
        VoxelSizeError: ``like`` has no plausible voxel size and none was given.
        OutputError: the output is an input, or exists without ``overwrite``.
    """
    segmentation, like = Path(segmentation), Path(like)
    original = _read_geometry(like, voxel_size, check_finite=False)
    mask, known = _read_mask(segmentation)
    covers = np.multiply(original.shape, original.voxel_size)
    extent = np.multiply(mask.shape, mask.voxel_size)
    if known and np.any(np.abs(extent - covers) > 3 * np.asarray(mask.voxel_size)):
        raise InputFileError(f"{segmentation} covers {_triple(extent)} Å but {like} covers {_triple(covers)} Å "
                             f"(z, y, x); give the mask made on {like.name}'s rescaled copy, or fix a header's "
                             "voxel size")
    target = _destination(destination, segmentation.parent, output_name(like, "mask"))
    protect = [segmentation, like]
    ensure_output_dir(target.parent)
    check_output_path(target, overwrite=overwrite, protect=protect)
    index = [nearest_indices(n, m) for n, m in zip(mask.shape, original.shape)]
    dtype = mask.data.dtype.newbyteorder("=")
    step = _step(original.shape[0], (original.shape[1] * original.shape[2] + mask.shape[1] * mask.shape[2]) * 8)
    with _planes(mask.data, dtype) as read, open_volume_writer(
            target, original.shape, dtype, original.voxel_size, original.origin, overwrite=overwrite,
            protect=protect, labels=[f"bilayer preprocess match-mask {segmentation.name}"[:80]]) as writer:
        for z0 in range(0, original.shape[0], step):
            planes = index[0][z0:z0 + step]
            first = int(planes.min())
            source = read(first, int(planes.max()) + 1)
            writer.write(z0, source[planes - first][:, index[1]][:, :, index[2]])
    return target


def _read_mask(path: Path) -> tuple[Volume, bool]:
    """The mask memory-mapped, and whether its header's voxel size is plausible (else its extent
    cannot be checked: MemBrain-seg and others may leave it 0 or 1 Å)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*usually means 'unset'.*", category=BilayerWarning)
        try:
            mask = read_volume(path)
        except VoxelSizeError:
            return read_volume(path, voxel_size=1.0), False
    low, high = PLAUSIBLE_VOXEL_SIZE
    return mask, all(low <= v <= high for v in mask.voxel_size)


def _triple(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.0f}" for v in values)
