"""Write MRC2014 volumes atomically, whole or slab by slab, with voxel size and origin kept.

:func:`open_volume_writer` streams (z, y, x) slabs into an anonymous file and names it only
when complete (see :mod:`bilayer.io.atomic`), so a killed writer leaves nothing behind and
peak memory is one slab. :func:`write_volume` writes a whole array or :class:`Volume` and
picks the mode: int8 for masks and labels, float32 (or float16 when asked) for scores.
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Sequence

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from bilayer._version import __version__
from bilayer.errors import ConfigError, OutputError
from bilayer.io.atomic import OutputGroup, atomic_open
from bilayer.io.volume import Volume, as_voxel_size

__all__ = ["VolumeWriter", "open_volume_writer", "write_volume", "output_dtype"]

HEADER_BYTES = 1024
_IMOD_STAMP = 1146047817
_MODES = {np.dtype(np.int8): 0, np.dtype(np.uint8): 0, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
          np.dtype(np.uint16): 6, np.dtype(np.float16): 12}
_STACK_SUFFIXES = (".mrcs", ".st", ".ali")
_SLAB_BYTES = 64 * 1024**2


def output_dtype(data: np.ndarray, dtype: np.dtype | type | str | None = None) -> np.dtype:
    """The MRC dtype to store ``data`` in: ``dtype`` if given, else a sensible choice.

    bool and small integers (labels, masks) → int8; other integers → the smallest of
    int8/int16/uint16 that holds their range; float64 → float32; supported dtypes kept.

    Raises:
        ConfigError: ``dtype`` is not an MRC mode, or integers do not fit any integer mode.
    """
    if dtype is not None:
        chosen = np.dtype(dtype)
        if chosen not in _MODES:
            names = ", ".join(sorted(str(d) for d in _MODES))
            raise ConfigError(f"MRC files cannot hold {chosen}; use one of {names}")
        return chosen
    if data.dtype == np.bool_:
        return np.dtype(np.int8)
    if data.dtype in _MODES:
        return data.dtype
    if data.dtype.kind == "f":
        return np.dtype(np.float32)
    if data.dtype.kind in "iu":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for candidate in (np.int8, np.int16, np.uint16):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        raise ConfigError(f"integer values {lo}..{hi} do not fit an MRC integer mode; store them as float32")
    raise ConfigError(f"cannot store {data.dtype} data in an MRC file; give real-valued data")


class VolumeWriter:
    """Receives (z, y, x) slabs for one MRC file; made by :func:`open_volume_writer`."""

    def __init__(self, file: BinaryIO, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self._file = file
        self.shape = shape
        self.dtype = dtype
        self._written = np.zeros(shape[0], dtype=bool)
        self._min, self._max = math.inf, -math.inf
        self._sum = self._sum_sq = 0.0

    def write(self, z_start: int, slab: np.ndarray) -> None:
        """Write ``slab`` (nz, y, x) at sections ``z_start``..; each section exactly once."""
        slab = np.asarray(slab)
        z_stop = z_start + slab.shape[0]
        if slab.ndim != 3 or slab.shape[1:] != self.shape[1:] or z_start < 0 or z_stop > self.shape[0]:
            raise ConfigError(f"slab of shape {slab.shape} at z={z_start} does not fit a volume of shape {self.shape}")
        if self._written[z_start:z_stop].any():
            raise ConfigError(f"sections {z_start}..{z_stop - 1} were already written")
        out = _cast(slab, self.dtype)
        if out.size:
            as_float = out.astype(np.float64, copy=False)
            self._min = min(self._min, float(as_float.min()))
            self._max = max(self._max, float(as_float.max()))
            self._sum += float(as_float.sum())
            self._sum_sq += float(np.square(as_float).sum())
        row_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        little = np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("<"))
        _pwrite_all(self._file.fileno(), memoryview(little).cast("B"), HEADER_BYTES + z_start * row_bytes)
        self._written[z_start:z_stop] = True

    def _statistics(self) -> tuple[float, float, float, float]:
        missing = np.flatnonzero(~self._written)
        if missing.size:
            raise ConfigError(f"volume incomplete: sections {missing[0]}..{missing[-1]} were never written")
        n = math.prod(self.shape)
        mean = self._sum / n
        rms = math.sqrt(max(self._sum_sq / n - mean * mean, 0.0))
        return self._min, self._max, mean, rms


@contextmanager
def open_volume_writer(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: np.dtype | type | str,
    voxel_size: float | Sequence[float],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
    labels: Sequence[str] = (),
    group: OutputGroup | None = None,
) -> Iterator[VolumeWriter]:
    """Stream a volume into ``path``; the file appears complete when the block ends.

    Args:
        path: the output file; a folder that exists.
        shape: (z, y, x) in voxels.
        dtype: one of int8, uint8, int16, uint16, float16, float32.
        voxel_size: Å, one value or (z, y, x).
        origin: (z, y, x) in Å.
        overwrite: replace an existing file (never one in ``protect``).
        protect: files that must not be replaced (the inputs).
        labels: extra MRC header labels (≤80 characters each); Bilayer's own comes first.
        group: publish the file with this :func:`~bilayer.io.atomic.output_group`'s others.

    Raises:
        OutputError: the file may not or cannot be written.
        ConfigError: a bad dtype or shape, or a section left unwritten.
    """
    shape3 = tuple(int(n) for n in shape)
    if len(shape3) != 3 or min(shape3) < 1:
        raise ConfigError(f"an MRC volume needs a (z, y, x) shape of positive sizes, got {tuple(shape)}")
    dtype = output_dtype(np.empty(0), dtype)
    vs = as_voxel_size(voxel_size)
    with atomic_open(path, overwrite=overwrite, protect=protect, group=group) as f:
        try:
            f.truncate(HEADER_BYTES + math.prod(shape3) * dtype.itemsize)
        except OSError as e:
            raise OutputError(f"cannot make {path}: {e.strerror or e}; free some disk space or choose another --out") from e
        writer = VolumeWriter(f, shape3, dtype)  # type: ignore[arg-type]
        yield writer
        header = _header(shape3, dtype, vs, tuple(float(o) for o in origin), writer._statistics(),
                         stack=Path(path).suffix.lower() in _STACK_SUFFIXES, labels=labels)
        _pwrite_all(f.fileno(), memoryview(header.tobytes()), 0)


def write_volume(
    path: str | os.PathLike,
    volume: Volume | np.ndarray,
    *,
    voxel_size: float | Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    dtype: np.dtype | type | str | None = None,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike] = (),
    labels: Sequence[str] = (),
    group: OutputGroup | None = None,
) -> Path:
    """Write a :class:`Volume` (or a (z, y, x) array with ``voxel_size``) atomically.

    ``voxel_size``/``origin`` override the volume's. The volume's own source file is always
    protected, so an input is never overwritten. See :func:`open_volume_writer`.

    Returns:
        The path written.
    """
    if isinstance(volume, Volume):
        data = volume.data
        voxel_size = volume.voxel_size if voxel_size is None else voxel_size
        origin = volume.origin if origin is None else origin
        protect = [*protect, *([volume.path] if volume.path else [])]
    else:
        data = np.asarray(volume)
        if voxel_size is None:
            raise ConfigError(f"writing {path}: give voxel_size (Å) with a plain array, or pass a Volume")
    if data.ndim != 3:
        raise ConfigError(f"writing {path}: need a 3-D (z, y, x) array, got shape {data.shape}")
    chosen = output_dtype(data, dtype)
    step = max(1, _SLAB_BYTES // max(1, data.shape[1] * data.shape[2] * 8))
    with open_volume_writer(path, data.shape, chosen, voxel_size, origin or (0.0, 0.0, 0.0),
                            overwrite=overwrite, protect=protect, labels=labels, group=group) as writer:
        for z in range(0, data.shape[0], step):
            writer.write(z, data[z : z + step])
    return Path(path)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte is out (one call may write less than asked)."""
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _cast(slab: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert a slab to the file's dtype, refusing values that would wrap or turn into NaN."""
    if slab.dtype == dtype:
        return slab
    if dtype.kind in "iu":
        if slab.dtype.kind == "f" and not np.isfinite(slab).all():
            raise ConfigError(f"cannot store NaN or Inf as {dtype}")
        info = np.iinfo(dtype)
        if slab.size and (slab.min() < info.min or slab.max() > info.max):
            raise ConfigError(f"values {slab.min()}..{slab.max()} do not fit {dtype}; choose a wider dtype")
        if slab.dtype.kind == "f":
            slab = np.rint(slab)
    return slab.astype(dtype)


def _header(shape: tuple[int, int, int], dtype: np.dtype, voxel_size: tuple[float, float, float],
            origin: tuple[float, ...], stats: tuple[float, float, float, float], *, stack: bool,
            labels: Sequence[str]) -> np.ndarray:
    """An MRC2014 header (little-endian) for a volume, or an image stack for stack suffixes."""
    h = np.zeros((), dtype=HEADER_DTYPE.newbyteorder("<"))
    nz, ny, nx = shape
    h["nx"], h["ny"], h["nz"] = nx, ny, nz
    h["mode"] = _MODES[dtype]
    h["mx"], h["my"], h["mz"] = nx, ny, 1 if stack else nz
    h["cella"] = (nx * voxel_size[2], ny * voxel_size[1], (1 if stack else nz) * voxel_size[0])
    h["cellb"] = (90.0, 90.0, 90.0)
    h["mapc"], h["mapr"], h["maps"] = 1, 2, 3
    h["dmin"], h["dmax"], h["dmean"], h["rms"] = stats[0], stats[1], stats[2], stats[3]
    h["ispg"] = 0 if stack else 1
    h["nversion"] = 20141
    h["origin"] = (origin[2], origin[1], origin[0])
    h["map"] = b"MAP "
    h["machst"] = (0x44, 0x44, 0x00, 0x00)
    if dtype.itemsize == 1:  # IMOD's convention tells signed from unsigned bytes
        extra = bytearray(84)
        extra[40:44] = np.int32(_IMOD_STAMP).astype("<i4").tobytes()
        extra[44:48] = np.int32(1 if dtype == np.int8 else 0).astype("<i4").tobytes()
        h["extra2"] = bytes(extra)
    text = [_stamp(), *labels][:10]
    h["nlabl"] = len(text)
    h["label"][: len(text)] = [t.encode("ascii", "replace")[:80].ljust(80) for t in text]
    return h


def _stamp() -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
    return f"Bilayer {__version__} {when}: {command}"[:80]
