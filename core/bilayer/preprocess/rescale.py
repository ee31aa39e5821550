"""Pixel-size matching out of core: MemBrain-seg's ``tomo_preprocessing match_pixel_size``, with memory
bounded by a slab budget whatever the tomogram's size.

**Rescaling** (:func:`rescale_file`). MemBrain-seg's rule: the new shape is ``shape * input / target
voxel size``, rounded, odd sizes raised by one (:func:`rescaled_shape`); the centred Fourier spectrum
is cropped (down-sampling, larger voxels) or zero-padded (up-sampling); optionally it is multiplied
by a smooth edge (:func:`smooth_edge_mask`: 1 inside an ellipsoid 12.5 voxels inside the border of
the smaller of the two grids, a 12-voxel raised cosine of the Euclidean distance outside it); the real
part is z-scored and written with the target voxel size. MemBrain-seg also z-scores the input first,
which changes nothing after the last z-score (the operation is linear and keeps constants); Bilayer
only subtracts an estimate of the mean, for float32 precision. MemBrain-seg does all of it on whole
complex arrays: about 80 bytes per voxel (125 GB for a 1.5 GB tomogram, its issue 49). Bilayer
transforms one axis at a time, as the 3-D transform is separable: each z-slab of the tomogram
(read with ``pread``, never mapped) goes through a real-to-complex transform along x and a complex
one along y and is cropped or padded; blocks of y-rows then go through z, the edge mask and the
inverse along z; each z-slab finally goes back through y and x and is written. The half spectrum
waits in an anonymous temporary file (complex64, about 4 bytes per voxel of the smaller grid, gone
on any error or kill); the output's mean and variance come from the spectrum (Parseval), so the
output is written once, z-scored, slab by slab.

Numbers: the same as MemBrain-seg with the smooth edge (its default). Its crop or pad keeps one
side of an even-length Nyquist frequency and takes the real part of the 3-D result; Bilayer keeps
half of each side (the real part of MemBrain-seg's result does the same along one axis), per axis,
so every pass stays real. The two differ only in spectrum bins lying on two or three unpaired
Nyquist planes at once, which the smooth edge sets to 0, so only ``smooth_edge=False`` shows it
(correlation 0.9997 on white noise, the worst case; MemBrain-seg's corners would need complex passes
and twice the temporary file, so they are not offered). The smooth edge's distance transform is
computed exactly, row by row.

Deliberate differences, all where MemBrain-seg has a plain bug: up-sampling an odd axis it pads
``(m - n) // 2`` voxels on both sides and so writes one voxel fewer than its own shape rule
(Bilayer writes the rule's shape); down-sampling where the rule raises an odd axis above its old
size it slices from a negative index (Bilayer pads that axis); below 26 voxels on the smaller grid
its ellipsoid's semi-axis ``(n - 25) / 2`` is 0 or negative (Bilayer refuses the smooth edge there);
it writes the origin as 0 (Bilayer keeps it, in Å; the first voxel stays where it was). As MemBrain-
seg, the header gets the target voxel size, though the rounding to even sizes makes the true spacing
``shape * voxel size / new shape`` (within 1.5 voxels over an axis). Equal voxel sizes give the
z-scored tomogram, as in MemBrain-seg.

Masks made on the rescaled tomogram go back onto the original grid in :mod:`.match_mask`, which
reads through this module's plane reader (``_planes``). The module stays above 350 lines because
its three passes, the edge mask and the slab plumbing they share make one algorithm; the edge mask
could move out if it grows.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.ndimage

from bilayer import checks
from bilayer.errors import ConfigError, InputFileError, OutputError
from bilayer.io import (
    PLAUSIBLE_VOXEL_SIZE,
    Volume,
    check_output_path,
    ensure_output_dir,
    open_volume_writer,
    output_name,
    read_tomogram,
)

__all__ = ["EDGE_MARGIN", "EDGE_WIDTH", "check_rescale", "rescale_file", "rescale_volume",
           "rescaled_shape", "smooth_edge_mask"]

logger = logging.getLogger(__name__)

#: MemBrain-seg's smooth edge: an ellipsoid with semi-axes (n - EDGE_MARGIN) / 2 and a raised cosine
#: EDGE_WIDTH voxels wide outside it.
EDGE_MARGIN = 25
EDGE_WIDTH = 12
_FAR = (EDGE_WIDTH + 1) ** 2  # a squared distance beyond the edge
_D2 = np.arange(_FAR + 1)
#: The edge's value at each squared distance (integers: voxel offsets), as MemBrain-seg computes it.
_EDGE = np.where(_D2 == 0, 1.0,
                 np.where(_D2 <= EDGE_WIDTH**2, 0.5 * (1 + np.cos(np.pi * np.sqrt(_D2) / EDGE_WIDTH)), 0.0))
_WORK_BYTES = 24 * 1024**2  # the arrays of one slab or block; a pass holds a few times this
_DISK_MARGIN = 64 * 1024**2
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

Emit = Callable[[int, np.ndarray], None]


def rescaled_shape(shape: Sequence[int], input_voxel_size: float, voxel_size: float) -> tuple[int, int, int]:
    """MemBrain-seg's new shape: ``shape * input_voxel_size / voxel_size`` rounded (half to even),
    odd sizes raised by one."""
    scaled = np.round(np.asarray(shape, dtype=float) * (input_voxel_size / voxel_size)).astype(int)
    return tuple(int(n + n % 2) for n in scaled)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Band:
    """One axis going from n to m voxels in Fourier space: the signed frequencies kept, in order."""

    n: int
    m: int

    @property
    def split(self) -> bool:
        """Up-sampling an even axis: its Nyquist bin goes half to -n/2, half to +n/2."""
        return self.n < self.m and self.n % 2 == 0

    @property
    def paired(self) -> bool:
        """Down-sampling to an even size: the new Nyquist bin takes the mean of -m/2 and +m/2."""
        return self.m < self.n and self.m % 2 == 0

    @property
    def freqs(self) -> np.ndarray:
        g = min(self.n, self.m)
        return np.arange(-(g // 2), (self.n // 2 if self.split else (g - 1) // 2) + 1)

    def forward(self, spectrum: np.ndarray, axis: int) -> np.ndarray:
        """The kept bins of an n-point spectrum along ``axis``."""
        kept = np.take(spectrum, self.freqs % self.n, axis=axis)
        first, last = _at(axis, 0), _at(axis, -1)
        if self.paired:
            kept[first] = 0.5 * (kept[first] + spectrum[_at(axis, self.m // 2)])
        if self.split:
            kept[first] *= 0.5
            kept[last] *= 0.5
        return kept

    def inverse(self, kept: np.ndarray, axis: int) -> np.ndarray:
        """The kept bins placed in an m-point spectrum along ``axis`` (zeros elsewhere)."""
        shape = list(kept.shape)
        shape[axis] = self.m
        out = np.zeros(shape, dtype=kept.dtype)
        out[_at(axis, self.freqs % self.m)] = kept
        return out


def _at(axis: int, index: object) -> tuple:
    return (slice(None),) * axis + (index,)


class _EdgeMask:
    """MemBrain-seg's smooth edge on the band grid ``grid`` ((z, y, x), the smaller of the two), for
    rows of y at the z frequencies ``fz`` and the x frequencies ``fx``.

    Exact Euclidean distance to the ellipsoid's voxels: along y the ellipsoid's voxels in a (z, x)
    column are the run -reach..reach, so the squared distance is the minimum over (z, x) within 12
    voxels of (|y| - reach)² + dz² + dx², two 1-D min-plus passes (grey erosions)."""

    def __init__(self, grid: Sequence[int], fz: np.ndarray, fx: np.ndarray) -> None:
        semi = [(g - EDGE_MARGIN) * 0.5 for g in grid]
        w = EDGE_WIDTH
        ez = np.arange(fz[0] - w, fz[-1] + w + 1)
        ex = np.arange(fx[0] - w, fx[-1] + w + 1)
        tz, tx = (ez / semi[0]) ** 2, (ex / semi[2]) ** 2
        self.reach = np.full((ez.size, ex.size), -1, dtype=np.int32)
        for d in range(grid[1] // 2 + 1):  # MemBrain-seg's arrays are (x, y, z): it sums x, y, then z
            self.reach += np.sqrt((tx[None, :] + (d / semi[1]) ** 2) + tz[:, None]) <= 1
        self._parabola = -(np.arange(-w, w + 1, dtype=np.float32) ** 2)

    def rows(self, fy: np.ndarray) -> np.ndarray:
        """The mask at y frequencies ``fy``, float32 (z, y, x)."""
        gap = np.abs(fy).astype(np.int32)[:, None, None] - self.reach[None]
        d2 = np.where(self.reach[None] < 0, _FAR, np.minimum(np.maximum(gap, 0), EDGE_WIDTH + 1) ** 2)
        d2 = d2.astype(np.float32)
        for axis in (1, 2):
            shape = [1, 1, 1]
            shape[axis] = self._parabola.size
            d2 = scipy.ndimage.grey_erosion(d2, structure=self._parabola.reshape(shape), mode="constant",
                                            cval=float(_FAR))
        w = EDGE_WIDTH
        inner = d2[:, w:-w, w:-w].astype(np.intp)
        return _EDGE[inner].astype(np.float32).transpose(1, 0, 2)


def smooth_edge_mask(shape: Sequence[int]) -> np.ndarray:
    """MemBrain-seg's smooth edge on a centred spectrum of ``shape`` (z, y, x), each at least 26:
    1 inside the ellipsoid with semi-axes ``(n - 25) / 2`` about ``n // 2``, a raised cosine of the
    distance to it over 12 voxels, 0 beyond. float32; for checks and small volumes."""
    shape = tuple(int(n) for n in shape)
    _check_edge_grid(shape, "smooth_edge_mask")
    f = [np.arange(n) - n // 2 for n in shape]
    return _EdgeMask(shape, f[0], f[2]).rows(f[1])


def _check_edge_grid(grid: Sequence[int], what: object) -> None:
    if min(grid) <= EDGE_MARGIN:
        raise ConfigError(f"{what}: the smooth edge needs more than {EDGE_MARGIN} voxels along each axis of the "
                          f"smaller grid, not {tuple(grid)}; turn it off (--no-smooth-edge)")


class _Spectrum:
    """A (planes, rows, columns) complex64 array in an open temporary file, moved with pread/pwrite
    so none of it stays resident (a memory map's pages would)."""

    def __init__(self, f, shape: tuple[int, int, int]) -> None:
        self.fd, self.shape = f.fileno(), shape
        self._plane = shape[1] * shape[2] * 8
        f.truncate(shape[0] * self._plane)

    def write_planes(self, z0: int, data: np.ndarray) -> None:
        _pwrite(self.fd, np.ascontiguousarray(data, dtype=np.complex64), z0 * self._plane)

    def read_planes(self, z0: int, z1: int) -> np.ndarray:
        out = np.empty((z1 - z0, *self.shape[1:]), dtype=np.complex64)
        _pread(self.fd, out, z0 * self._plane)
        return out

    def read_rows(self, r0: int, r1: int, planes: int) -> np.ndarray:
        out = np.empty((planes, r1 - r0, self.shape[2]), dtype=np.complex64)
        for z in range(planes):
            _pread(self.fd, out[z], z * self._plane + r0 * self.shape[2] * 8)
        return out

    def write_rows(self, r0: int, data: np.ndarray) -> None:
        data = data.astype(np.complex64, copy=False)
        for z in range(data.shape[0]):
            _pwrite(self.fd, np.ascontiguousarray(data[z]), z * self._plane + r0 * self.shape[2] * 8)


def _pread(fd: int, out: np.ndarray, offset: int) -> None:
    view = memoryview(out).cast("B")
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise InputFileError(f"a file ended early while reading at byte {offset}; check the file is complete")
        view, offset = view[n:], offset + n


def _pwrite(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


@contextmanager
def _planes(data: np.ndarray, dtype: np.dtype | type = np.float32) -> Iterator[Callable[[int, int], np.ndarray]]:
    """``read(z0, z1)``: planes of ``data`` as ``dtype``; a file's memory map is read with pread."""
    path = getattr(data, "filename", None)
    if not (isinstance(data, np.memmap) and path and data.flags.c_contiguous):
        yield lambda z0, z1: np.asarray(data[z0:z1], dtype=dtype)
        return
    fd = os.open(path, os.O_RDONLY)
    plane = data.shape[1] * data.shape[2] * data.dtype.itemsize

    def read(z0: int, z1: int) -> np.ndarray:
        raw = np.empty((z1 - z0, *data.shape[1:]), dtype=data.dtype)
        _pread(fd, raw, data.offset + z0 * plane)
        return raw.astype(dtype, copy=False)

    try:
        yield read
    finally:
        os.close(fd)


def _step(count: int, item_bytes: int) -> int:
    """Items per slab so that a slab's arrays stay within the work budget."""
    return max(1, min(count, _WORK_BYTES // max(1, item_bytes)))


def _resample(read: Callable[[int, int], np.ndarray], shape: tuple[int, int, int], new: tuple[int, int, int],
              spectrum_file, emit: Emit, *, smooth_edge: bool, workers: int, what: object) -> None:
    """Fourier-resample the volume that ``read`` gives (z-slabs of ``shape``) to ``new``; z-scored
    slabs go to ``emit(z0, slab)``. Three passes over ``spectrum_file``, see the module docstring."""
    bands = tuple(_Band(n, m) for n, m in zip(shape, new))
    columns = min(shape[2], new[2]) // 2 + 1
    spectrum = _Spectrum(spectrum_file, (max(shape[0], new[0]), bands[1].freqs.size, columns))
    _along_y_and_x(read, shape, bands, spectrum, workers)
    grid = [min(n, m) for n, m in zip(shape, new)]  # MemBrain-seg's edge lives on the smaller grid
    edge = _EdgeMask(grid, bands[0].freqs, np.arange(columns)) if smooth_edge else None
    total, sumsq = _along_z(spectrum, shape[0], bands, edge, workers)
    count = math.prod(new)
    mean = total / count
    variance = sumsq / (new[1] * new[2]) / count - mean * mean  # Parseval over each plane's (y, x) spectrum
    _check_variance(variance, mean, what)
    mean32, scale = np.float32(mean), np.float32(1.0 / math.sqrt(variance))
    step = _step(new[0], new[1] * new[2] * 16)
    for z0 in range(0, new[0], step):  # back along y and x
        planes = bands[1].inverse(spectrum.read_planes(z0, min(z0 + step, new[0])), axis=1)
        if columns < new[2] // 2 + 1:
            planes = np.pad(planes, ((0, 0), (0, 0), (0, new[2] // 2 + 1 - columns)))
        out = scipy.fft.irfft2(planes, s=new[1:], axes=(1, 2), workers=workers, overwrite_x=True)
        out -= mean32
        out *= scale
        emit(z0, out)


def _along_y_and_x(read: Callable[[int, int], np.ndarray], shape: tuple[int, int, int], bands: tuple[_Band, ...],
                   spectrum: _Spectrum, workers: int) -> None:
    """Each z-slab to its cropped or padded (y, x) half spectrum, centred first by a sampled mean (the
    result is z-scored in the end; centring only keeps float32 precision)."""
    by, bx = bands[1], bands[2]
    columns = spectrum.shape[2]
    sample = np.linspace(0, shape[0] - 1, min(shape[0], 8)).round().astype(int)
    centre = np.float32(np.mean([read(int(z), int(z) + 1).mean(dtype=np.float64) for z in sample]))
    step = _step(shape[0], shape[1] * shape[2] * 24)
    for z0 in range(0, shape[0], step):
        half = scipy.fft.rfft(read(z0, z0 + step) - centre, axis=2, workers=workers)[:, :, :columns]
        if bx.split:
            half[:, :, -1] *= 0.5
        half = scipy.fft.fft(half, axis=1, workers=workers, overwrite_x=True)
        if bx.paired:  # the mean of ±m/2 along x is the y-Hermitian part of the +m/2 column
            nyquist = half[:, :, -1]
            half[:, :, -1] = 0.5 * (nyquist + np.conj(nyquist[:, -np.arange(shape[1]) % shape[1]]))
        spectrum.write_planes(z0, by.forward(half, axis=1))


def _along_z(spectrum: _Spectrum, planes: int, bands: tuple[_Band, ...], edge: _EdgeMask | None,
             workers: int) -> tuple[float, float]:
    """Blocks of rows through z, the smooth edge, and back through z, in place; returns the sum of the
    output (its spectrum's zero) and its plane-wise Parseval sum of squares."""
    bz, by = bands[0], bands[1]
    columns = spectrum.shape[2]
    weight = np.where(np.arange(columns) == 0, 1.0, 2.0)  # the half spectrum's columns stand for two
    if bands[2].m % 2 == 0 and columns == bands[2].m // 2 + 1:
        weight[-1] = 1.0  # the Nyquist column stands for itself
    zero_row = int(np.flatnonzero(by.freqs == 0)[0])
    total = sumsq = 0.0
    rows = by.freqs.size
    step = _step(rows, spectrum.shape[0] * columns * 48)
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        block = scipy.fft.fft(spectrum.read_rows(r0, r1, planes), axis=0, workers=workers, overwrite_x=True)
        block = bz.forward(block, axis=0)
        if edge is not None:
            block *= edge.rows(by.freqs[r0:r1])
        block = scipy.fft.ifft(bz.inverse(block, axis=0), axis=0, workers=workers, overwrite_x=True)
        if r0 <= zero_row < r1:
            total += float(block[:, zero_row - r0, 0].real.sum(dtype=np.float64))
        sumsq += float(np.einsum("zrc,c->", block.real**2 + block.imag**2, weight, dtype=np.float64))
        spectrum.write_rows(r0, block)
    return total, sumsq


def _zscored_copy(read: Callable[[int, int], np.ndarray], shape: tuple[int, int, int], emit: Emit,
                  what: object) -> None:
    """The volume z-scored (MemBrain-seg's result when the voxel size does not change)."""
    step = _step(shape[0], shape[1] * shape[2] * 8)
    total = sumsq = 0.0
    for z0 in range(0, shape[0], step):
        planes = read(z0, z0 + step).astype(np.float64)
        total += float(planes.sum())
        sumsq += float(np.square(planes).sum())
    count = math.prod(shape)
    mean = total / count
    variance = sumsq / count - mean * mean
    _check_variance(variance, mean, what)
    for z0 in range(0, shape[0], step):
        emit(z0, ((read(z0, z0 + step) - np.float32(mean)) * np.float32(1 / math.sqrt(variance))))


def _check_variance(variance: float, mean: float, what: object) -> None:
    if not variance > 1e-12 * max(1.0, mean * mean):
        raise InputFileError(f"{what} has the same value everywhere: there is nothing to rescale; give a tomogram")


def rescale_volume(data: np.ndarray, shape: Sequence[int], *, smooth_edge: bool = True, workers: int = -1,
                   temp_dir: str | os.PathLike | None = None) -> np.ndarray:
    """``data`` (z, y, x) Fourier-resampled to ``shape`` and z-scored, float32 (see the module
    docstring); the spectrum waits in a temporary file in ``temp_dir`` (default: the system's).

    Raises:
        ConfigError: a shape below 2 voxels, or a smooth edge on a grid of 25 voxels or fewer.
        InputFileError: a volume with one value everywhere.
    """
    new = _checked_shape(data.shape, shape, smooth_edge, "rescale_volume")
    out = np.empty(new, dtype=np.float32)

    def emit(z0: int, slab: np.ndarray) -> None:
        out[z0:z0 + slab.shape[0]] = slab

    with _planes(data) as read, tempfile.TemporaryFile(dir=temp_dir) as f:
        _resample(read, data.shape, new, f, emit, smooth_edge=smooth_edge, workers=workers, what="the volume")
    return out


def _checked_shape(shape: Sequence[int], new: Sequence[int], smooth_edge: bool, what: object) -> tuple[int, int, int]:
    new = tuple(int(n) for n in new)
    if len(shape) != 3 or len(new) != 3:
        raise ConfigError(f"{what}: rescaling needs a 3-D (z, y, x) volume and shape, not {tuple(shape)} → {new}")
    if min(new) < 2:
        raise ConfigError(f"{what}: the rescaled shape {new} has fewer than 2 voxels along an axis; choose a "
                          "smaller target voxel size")
    if smooth_edge:
        _check_edge_grid([min(n, m) for n, m in zip(shape, new)], what)
    return new  # type: ignore[return-value]


def _destination(destination: str | os.PathLike | None, folder: Path, name: str) -> Path:
    """A file, a folder to put ``name`` in, or ``None``: ``name`` in ``folder``."""
    if destination is None:
        return folder / name
    destination = Path(destination)
    return destination / name if destination.is_dir() else destination


def _read_geometry(path: Path, voxel_size: float | None, *, check_finite: bool = True) -> Volume:
    """The volume memory-mapped, its voxel size plausible unless given (:func:`~bilayer.io.read_tomogram`)."""
    if voxel_size is not None:
        checks.number("voxel size", voxel_size, 0, math.inf, open_low=True)
    return read_tomogram(path, voxel_size=voxel_size, check_finite=check_finite)


def check_rescale(shape: Sequence[int], input_voxel_size: float, voxel_size: float, *, smooth_edge: bool,
                  what: object) -> tuple[int, int, int]:
    """The shape ``shape`` rescales to, refused where it cannot be done (an axis below 2 voxels, a smooth
    edge on a grid too small for it); ``what`` names the tomogram in the message."""
    return _checked_shape(shape, rescaled_shape(shape, input_voxel_size, voxel_size),
                          smooth_edge and input_voxel_size != voxel_size, what)


def _check_disk(needs: Sequence[tuple[Path, int, str]]) -> None:
    """Refuse when a disk cannot take what will be written on it (grouped by device)."""
    per_device: dict[int, tuple[Path, int, list[str]]] = {}
    for folder, size, what in needs:
        device = os.stat(folder).st_dev
        first, total, names = per_device.get(device, (folder, 0, []))
        per_device[device] = (first, total + size, [*names, f"{what} {_size(size)}"])
    for folder, total, names in per_device.values():
        free = shutil.disk_usage(folder).free
        if total + _DISK_MARGIN > free:
            raise OutputError(f"{folder}: rescaling needs about {_size(total)} there ({', '.join(names)}), the disk "
                              f"has {_size(free)} free; free some space or choose another --out or --temp-dir")


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def rescale_file(source: str | os.PathLike, destination: str | os.PathLike | None, voxel_size: float, *,
                 input_voxel_size: float | None = None, smooth_edge: bool = True, overwrite: bool = False,
                 workers: int = -1, temp_dir: str | os.PathLike | None = None) -> Path:
    """Rescale the tomogram ``source`` to ``voxel_size`` Å as MemBrain-seg's ``match_pixel_size`` and
    write it (float32, z-scored, origin kept) slab by slab; returns the path written.

    Args:
        source: an MRC tomogram.
        destination: the file to write, a folder (``<stem>_rescaled.mrc`` in it), or ``None``
            (``<stem>_rescaled.mrc`` beside ``source``).
        voxel_size: the target voxel size in Å (within :data:`~bilayer.io.volume.PLAUSIBLE_VOXEL_SIZE`).
        input_voxel_size: Å, replacing the header's (needed when the header's is missing or implausible).
        smooth_edge: MemBrain-seg's ellipsoid edge on the spectrum (its default; ``--disable-smooth`` there).
        overwrite: replace an existing ``destination`` (never ``source``).
        workers: threads for the Fourier transforms (-1: all cores).
        temp_dir: folder for the temporary spectrum (default: the destination's folder).

    Raises:
        ConfigError: an implausible target, a shape below 2 voxels, a smooth edge on a small grid.
        InputFileError: an unreadable tomogram, or one with one value everywhere.
        VoxelSizeError: a header voxel size that is missing or implausible, without ``input_voxel_size``.
        OutputError: the output is an input, exists (without ``overwrite``), or the disk is too small.
    """
    source = Path(source)
    low, high = PLAUSIBLE_VOXEL_SIZE
    voxel_size = checks.number("target voxel size (Å)", voxel_size, low, high)
    volume = _read_geometry(source, input_voxel_size)
    size_in = volume.isotropic_voxel_size
    new = check_rescale(volume.shape, size_in, voxel_size, smooth_edge=smooth_edge, what=source)
    target = _destination(destination, source.parent, output_name(source, "rescaled"))
    ensure_output_dir(target.parent)
    check_output_path(target, overwrite=overwrite, protect=[source])
    scratch = ensure_output_dir(temp_dir) if temp_dir is not None else target.parent
    fourier = size_in != voxel_size
    columns = min(volume.shape[2], new[2]) // 2 + 1
    rows = _Band(volume.shape[1], new[1]).freqs.size
    needs = [(target.parent, 1024 + math.prod(new) * 4, "output")]
    if fourier:
        needs.append((scratch, max(volume.shape[0], new[0]) * rows * columns * 8, "temporary spectrum"))
    _check_disk(needs)
    logger.info("rescale %s %s at %g Å → %s at %g Å", source, volume.shape, size_in, new, voxel_size)
    label = f"bilayer preprocess rescale {size_in:g} A to {voxel_size:g} A" + ("" if smooth_edge else ", sharp edge")
    try:
        with _planes(volume.data) as read, open_volume_writer(
                target, new, np.float32, voxel_size, volume.origin, overwrite=overwrite, protect=[source],
                labels=[label]) as writer:
            if fourier:
                with tempfile.TemporaryFile(dir=scratch) as f:
                    _resample(read, volume.shape, new, f, writer.write, smooth_edge=smooth_edge, workers=workers,
                              what=source)
            else:
                _zscored_copy(read, volume.shape, writer.write, source)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise OutputError(f"cannot write {target} or its temporary spectrum in {scratch}: {e.strerror}; free "
                              "some space or choose another --out or --temp-dir") from e
        raise
    return target
