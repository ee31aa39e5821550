"""The :class:`Volume`: a tomogram's voxels with the geometry that places them in space."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from bilayer.errors import ConfigError, VoxelSizeError

__all__ = ["PLAUSIBLE_VOXEL_SIZE", "Volume", "as_voxel_size", "check_plausible_voxel_size"]

Triple = tuple[float, float, float]
#: Voxel sizes (Å) that tomograms have: a header outside this range is taken as wrong (1 Å is what
#: many tools write when the size is unset) unless the size is given explicitly.
PLAUSIBLE_VOXEL_SIZE = (2.0, 100.0)


def as_voxel_size(value: float | Sequence[float], *, source: str = "voxel size") -> Triple:
    """Turn a voxel size (one number, or (z, y, x)) in Å into a checked (z, y, x) triple.

    Raises:
        VoxelSizeError: a value is zero, negative or not finite.
    """
    values = (value,) * 3 if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    if len(values) != 3:
        raise ConfigError(f"{source}: expected one value or three (z, y, x), got {len(values)}")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise VoxelSizeError(f"{source} {out} Å is not a positive number; give the voxel size in Å (--voxel-size)")
    return out  # type: ignore[return-value]


def check_plausible_voxel_size(volume: Volume, *, given: bool) -> None:
    """Refuse a header voxel size outside :data:`PLAUSIBLE_VOXEL_SIZE` (a ``given`` one is trusted).

    Raises:
        VoxelSizeError: naming the file and the fix (``--voxel-size``).
    """
    low, high = PLAUSIBLE_VOXEL_SIZE
    size = volume.isotropic_voxel_size
    if not given and not low <= size <= high:
        raise VoxelSizeError(f"{volume.path or 'the tomogram'}: header voxel size {size:g} Å is outside the "
                             f"{low:g}-{high:g} Å tomograms have (1 Å usually means unset); give the real one with "
                             "--voxel-size (Å)")


@dataclass(frozen=True)
class Volume:
    """A 3-D image in (z, y, x) order with its voxel size and origin.

    Attributes:
        data: the voxels, (z, y, x); for a file read with ``mmap=True`` a read-only
            memory map in the file's own dtype, so nothing is loaded until used.
        voxel_size: (z, y, x) in Å, all positive.
        origin: (z, y, x) in Å, as in the MRC header's origin field.
        path: the file the volume was read from, if any; writers refuse to overwrite it.
    """

    data: np.ndarray
    voxel_size: Triple
    origin: Triple = (0.0, 0.0, 0.0)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ConfigError(f"a Volume needs a 3-D (z, y, x) array, got shape {self.data.shape}")
        object.__setattr__(self, "voxel_size", as_voxel_size(self.voxel_size))
        origin = tuple(float(v) for v in self.origin)
        if len(origin) != 3:
            raise ConfigError(f"origin must be (z, y, x) in Å, got {self.origin}")
        object.__setattr__(self, "origin", origin)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) in voxels."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def isotropic_voxel_size(self) -> float:
        """The voxel size in Å when it is the same along z, y and x.

        Raises:
            VoxelSizeError: the voxels are not cubic.
        """
        z, y, x = self.voxel_size
        if not (math.isclose(z, y, rel_tol=1e-3) and math.isclose(y, x, rel_tol=1e-3)):
            where = f" of {self.path}" if self.path else ""
            raise VoxelSizeError(f"voxel size{where} is anisotropic {self.voxel_size} Å; resample to cubic voxels first")
        return x

    def with_data(self, data: np.ndarray) -> "Volume":
        """The same geometry holding other voxels (a mask, scores), not tied to a file."""
        if data.shape != self.data.shape:
            raise ConfigError(f"new data has shape {data.shape}, the volume has {self.data.shape}")
        return replace(self, data=data, path=None)
