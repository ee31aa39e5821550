"""Read MRC-family volumes (``.mrc .rec .map .st .ccp4 .mrcs``) as :class:`Volume`.

The header is read with mrcfile, strictly first; a legacy or slightly invalid header that
mrcfile can still open permissively is accepted with one :class:`BilayerWarning` naming the
file. The voxels are memory-mapped, so a 10 GB tomogram costs no RAM until it is used, and
every check that needs the data (size, NaN/Inf) reads the file in chunks without the map.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import mrcfile
import mrcfile.utils
import numpy as np

from bilayer.errors import BilayerWarning, InputFileError, VoxelSizeError
from bilayer.io.volume import Volume, as_voxel_size, check_plausible_voxel_size

__all__ = ["MRC_SUFFIXES", "read_header", "read_tomogram", "read_volume"]

#: File name endings read as MRC volumes (case-insensitive).
MRC_SUFFIXES: tuple[str, ...] = (".mrc", ".rec", ".map", ".st", ".ccp4", ".mrcs", ".ali")

HEADER_BYTES = 1024
IMOD_STAMP = 1146047817  # "IMOD" as a little-endian int32 at byte 152
_IMOD_STAMP_OFFSET, _IMOD_FLAGS_OFFSET = 152, 156
_CHUNK_BYTES = 64 * 1024**2
_PLACEHOLDER_VOXEL_SIZE = 1.0  # what many programs write when they know no voxel size


def read_header(path: str | os.PathLike) -> np.recarray:
    """The MRC header of ``path`` (strict, else permissive with a :class:`BilayerWarning`).

    Raises:
        InputFileError: the file is missing, not an MRC file, or its header is unusable.
    """
    path = _check_path(Path(path))
    try:
        with mrcfile.open(path, mode="r", header_only=True) as mrc:
            return mrc.header.copy()
    except ValueError as strict_error:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                    header = mrc.header.copy()
            except (ValueError, OSError) as e:
                raise _not_mrc(path, e) from e
        problems = "; ".join(dict.fromkeys(str(w.message) for w in caught)) or str(strict_error)
        if not _header_is_plausible(header, path):
            raise _not_mrc(path, problems)
        warnings.warn(f"{path}: legacy or invalid MRC header read permissively ({problems})", BilayerWarning, stacklevel=3)
        return header
    except OSError as e:
        raise InputFileError(f"cannot read {path}: {e.strerror or e}; check the file's permissions") from e


def read_volume(
    path: str | os.PathLike,
    *,
    voxel_size: float | Sequence[float] | None = None,
    mmap: bool = True,
    check_finite: bool = True,
) -> Volume:
    """Read a tomogram as a :class:`Volume` in (z, y, x) order.

    Args:
        path: an MRC-family file.
        voxel_size: Å, one value or (z, y, x); replaces the header's, which is then
            not needed (use it for files whose header has 0 or a wrong value).
        mmap: map the voxels instead of loading them (read-only).
        check_finite: scan float data for NaN/Inf (chunked reads, no memory growth).

    Returns:
        The volume; ``data`` keeps the file's dtype (int8, uint8, int16, uint16,
        float16 or float32). Mode-0 files are uint8 when their header says so
        (IMOD's flag, or header statistics above 127 without it), else int8.

    Raises:
        InputFileError: missing file, not an MRC file, truncated data, a 2-D image or an
            image-stack-of-volumes, an unsupported mode, or NaN/Inf values.
        VoxelSizeError: the header has no usable voxel size and none was given.

    Warns:
        BilayerWarning: a legacy header read permissively; a 1 Å header voxel size.
    """
    path = Path(path)
    header = read_header(path)
    dtype, shape = _data_layout(header, path)
    offset = HEADER_BYTES + int(header.nsymbt)
    _check_size(path, offset, dtype, shape)
    if check_finite and dtype.kind == "f":
        _check_finite(path, offset, dtype, shape)
    if mmap:
        data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    else:
        data = np.fromfile(path, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
    if voxel_size is None:
        vs = _header_voxel_size(header, path)
    else:
        vs = as_voxel_size(voxel_size, source=f"voxel size given for {path}")
    origin = (float(header.origin.z), float(header.origin.y), float(header.origin.x))
    return Volume(data=data, voxel_size=vs, origin=origin, path=path)


def read_tomogram(path: str | os.PathLike, *, voxel_size: float | Sequence[float] | None = None,
                  **options: bool) -> Volume:
    """:func:`read_volume` for tools whose work depends on the voxel size: a header voxel size outside
    :data:`~bilayer.io.volume.PLAUSIBLE_VOXEL_SIZE` is refused unless ``voxel_size`` is given (the
    error says what the 1 Å warning would, and more).

    Raises:
        VoxelSizeError: an implausible header voxel size; and everything :func:`read_volume` raises.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*usually means 'unset'.*", category=BilayerWarning)
        volume = read_volume(path, voxel_size=voxel_size, **options)
    check_plausible_voxel_size(volume, given=voxel_size is not None)
    return volume


def _check_path(path: Path) -> Path:
    if not path.exists():
        raise InputFileError(f"{path} does not exist; check the path and the working folder")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder; give a tomogram file ({', '.join(MRC_SUFFIXES)})")
    if path.suffix.lower() not in MRC_SUFFIXES:
        raise InputFileError(
            f"{path} is not an MRC file by its name; convert it to MRC or give one of {', '.join(MRC_SUFFIXES)}"
        )
    return path


def _not_mrc(path: Path, why: object) -> InputFileError:
    return InputFileError(f"{path} is not a readable MRC file ({why}); check that it is a tomogram in MRC format")


def _header_is_plausible(header: np.recarray, path: Path) -> bool:
    """True when a permissively read header still describes a readable volume."""
    try:
        mrcfile.utils.data_dtype_from_header(header)
    except ValueError:
        return False
    dims = (int(header.nx), int(header.ny), int(header.nz))
    size = path.stat().st_size
    return all(0 < d < 2**20 for d in dims) and 0 <= int(header.nsymbt) < size


def _data_layout(header: np.recarray, path: Path) -> tuple[np.dtype, tuple[int, int, int]]:
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError as e:
        raise InputFileError(
            f"{path} has MRC mode {int(header.mode)}, which Bilayer does not read; "
            "convert it to mode 0, 1, 2, 6 or 12 (e.g. IMOD newstack -mode 2)"
        ) from e
    if dtype.kind == "c":
        raise InputFileError(f"{path} holds complex (Fourier) data; give a real-space tomogram")
    if dtype.itemsize == 1 and _bytes_are_unsigned(header):
        dtype = np.dtype(np.uint8)
    shape = mrcfile.utils.data_shape_from_header(header)
    if len(shape) == 4:
        raise InputFileError(f"{path} is a stack of {shape[0]} volumes; split it into one tomogram per file")
    if len(shape) == 2 or shape[0] == 1:
        raise InputFileError(
            f"{path} is a 2-D image ({shape[-2]}×{shape[-1]}), not a tomogram; give a 3-D reconstructed volume"
        )
    if min(shape) < 1:
        raise InputFileError(f"{path} has an empty data block (shape {shape}); the file is damaged")
    return dtype, tuple(int(n) for n in shape)  # type: ignore[return-value]


def _bytes_are_unsigned(header: np.recarray) -> bool:
    """Mode 0 is unsigned when IMOD's header flag says so or, without IMOD's stamp,
    when the header's own min/max only fit unsigned bytes (old IMOD/SerialEM files)."""
    raw = header.tobytes()
    order = header.mode.dtype.byteorder.replace("=", "<").replace("|", "<")
    stamp = int(np.frombuffer(raw[_IMOD_STAMP_OFFSET : _IMOD_STAMP_OFFSET + 4], dtype=order + "i4")[0])
    flags = int(np.frombuffer(raw[_IMOD_FLAGS_OFFSET : _IMOD_FLAGS_OFFSET + 4], dtype=order + "i4")[0])
    if stamp == IMOD_STAMP:
        return not flags & 1
    dmin, dmax = float(header.dmin), float(header.dmax)
    return 0.0 <= dmin <= dmax and dmax > 127.0 and dmax <= 255.0


def _check_size(path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    expected = offset + math.prod(shape) * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputFileError(
            f"{path} is truncated: the header promises {expected} bytes, the file has {actual}; "
            "copy or export the tomogram again"
        )


def _check_finite(path: Path, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Scan the data for NaN/Inf with plain reads, so RSS does not grow with the file."""
    count = math.prod(shape)
    per_chunk = max(1, _CHUNK_BYTES // dtype.itemsize)
    buffer = np.empty(per_chunk, dtype=dtype)
    with open(path, "rb") as f:
        f.seek(offset)
        done = 0
        while done < count:
            n = min(per_chunk, count - done)
            chunk = buffer[:n]
            f.readinto(memoryview(chunk).cast("B"))
            if not np.isfinite(chunk).all():
                bad = int(np.count_nonzero(~np.isfinite(chunk)))
                z = (done + int(np.flatnonzero(~np.isfinite(chunk))[0])) // (shape[1] * shape[2])
                raise InputFileError(
                    f"{path} contains NaN or Inf values (at least {bad}, first in section z={z}); "
                    "fix the reconstruction or replace them (e.g. IMOD clip) before segmenting"
                )
            done += n


def _header_voxel_size(header: np.recarray, path: Path) -> tuple[float, float, float]:
    sampling = (int(header.mz), int(header.my), int(header.mx))
    cell = (float(header.cella.z), float(header.cella.y), float(header.cella.x))
    vs = tuple(c / m if m > 0 else 0.0 for c, m in zip(cell, sampling))
    if not all(math.isfinite(v) and v > 0 for v in vs):
        raise VoxelSizeError(
            f"{path} has no usable voxel size in its header ({vs[2]:g}, {vs[1]:g}, {vs[0]:g} Å for x, y, z); "
            "give it with --voxel-size (Å) or fix the header (e.g. IMOD alterheader -del)"
        )
    if all(math.isclose(v, _PLACEHOLDER_VOXEL_SIZE) for v in vs):
        warnings.warn(
            f"{path}: header voxel size is 1 Å, which usually means 'unset'; give the real one with --voxel-size",
            BilayerWarning,
            stacklevel=3,
        )
    return vs  # type: ignore[return-value]
