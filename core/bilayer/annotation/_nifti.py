"""NIfTI bytes of a (z, y, x) array, for patches an annotator opens in MITK (MemBrain-seg's format).

The file holds the array as (x, y, z), as MemBrain-seg's SimpleITK writes its (z, y, x) patches
and as :func:`bilayer.data.folder.read_array` reads them back. The bytes are written through
:func:`bilayer.io.atomic_open` by the caller, so a file appears complete or not at all.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["nifti_bytes", "nifti_description"]

_DESCRIPTION_BYTES = 80


def nifti_bytes(data: np.ndarray, *, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), description: str = "",
                compress: bool = True, like: str | os.PathLike | None = None) -> bytes:
    """The NIfTI-1 file of ``data`` ((z, y, x)), gzip-compressed for ``.nii.gz``.

    Args:
        voxel_size: (z, y, x) in Å, stored as the voxel spacing (NIfTI units left unknown).
        description: up to 80 ASCII characters for the header's ``descrip``.
        like: a NIfTI file whose geometry (affine, header) the new file keeps, for a file
            rewritten in place; ``voxel_size`` is then not used.
    """
    import nibabel

    xyz = np.asarray(data).transpose(2, 1, 0)
    if like is not None:
        source = nibabel.load(Path(like))
        image = nibabel.Nifti1Image(xyz, source.affine, source.header.copy())
        image.header.set_data_dtype(xyz.dtype)
    else:
        image = nibabel.Nifti1Image(xyz, np.diag([*(float(v) for v in voxel_size[::-1]), 1.0]))
    image.header["descrip"] = description.encode("ascii", "replace")[:_DESCRIPTION_BYTES]
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def nifti_description(path: str | os.PathLike) -> str:
    """The ``descrip`` text of a NIfTI file's header ("" when unreadable)."""
    import nibabel

    try:
        return bytes(nibabel.load(Path(path)).header["descrip"]).decode("ascii", "replace").rstrip("\0 ")
    except Exception:  # noqa: BLE001  (nibabel raises many kinds; no description then)
        return ""
