"""Whole-tomogram intensity normalisation, computed out of core.

MemBrain-seg standardises the whole tomogram to mean 0 and standard deviation 1 before its
sliding windows (``load_tomogram(normalize_data=True)``); its earlier conversion to float
(``img_as_float32``) is affine and cancels out. Bilayer computes the same two numbers in one
chunked pass over the (memory-mapped) file and applies them window by window, so the
tomogram is never converted or copied as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bilayer.errors import InputFileError

__all__ = ["IntensityScaling", "standardisation"]

_CHUNK_VOXELS = 16 * 1024**2


@dataclass(frozen=True)
class IntensityScaling:
    """An affine map ``(x - offset) * scale`` applied to raw voxel values."""

    offset: float = 0.0
    scale: float = 1.0

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The normalised values as float32 (a new array)."""
        out = np.asarray(values, dtype=np.float32) - np.float32(self.offset)
        out *= np.float32(self.scale)
        return out


def standardisation(data: np.ndarray, *, name: str = "the tomogram") -> IntensityScaling:
    """Mean and standard deviation of ``data`` (z, y, x) as a :class:`IntensityScaling`.

    Reads ``data`` once, in z-slabs of about 16 M voxels with float64 moments, so a
    memory-mapped tomogram of any size costs one slab of memory and one read.

    Raises:
        InputFileError: the tomogram is constant (standard deviation 0), so it holds no image.
    """
    n = data.size
    per_slab = max(1, _CHUNK_VOXELS // max(1, data.shape[1] * data.shape[2]))
    count, mean, squares = 0, 0.0, 0.0
    for z in range(0, data.shape[0], per_slab):  # one pass; slab moments merged (Chan et al.)
        slab = np.asarray(data[z : z + per_slab], dtype=np.float64).ravel()
        slab_mean = float(slab.mean())
        deviations = slab - slab_mean
        slab_squares = float(np.dot(deviations, deviations))
        delta, total = slab_mean - mean, count + slab.size
        mean += delta * slab.size / total
        squares += slab_squares + delta * delta * count * slab.size / total
        count = total
    std = math.sqrt(squares / n)
    if not std > 0:
        raise InputFileError(f"{name} has the same value everywhere; give a reconstructed tomogram")
    return IntensityScaling(offset=mean, scale=1.0 / std)
