"""Sliding-window inference maths: window placement, Gaussian blending, slab-wise output.

These are pure functions over arrays and a ``predict_fn``; they never see a model, a device
choice or a file. Window placement, zero padding and the Gaussian importance map reproduce
MONAI's ``sliding_window_inference(mode="gaussian")`` as used by MemBrain-seg, so the same
``predict_fn`` gives the same scores; mirror padding is the alternative for tomograms thinner
than a window. Unlike MONAI, the tomogram is never converted or padded as a whole: each window
is read, cast to float32 and normalised as it is needed, and finished (z, y, x) slabs are handed
to ``emit`` as soon as no later window touches them, so memory is bounded by
:func:`slab_buffer_bytes`, independent of the tomogram's depth.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from bilayer.errors import ConfigError
from bilayer.infer.config import Padding

__all__ = ["EmitFn", "PredictFn", "ProgressFn", "SlabCollector", "blend_windows", "fit_window", "gaussian_weights",
           "mirror_symmetric", "slab_buffer_bytes", "window_count", "window_starts"]

logger = logging.getLogger(__name__)

#: Maps a float32 batch (B, 1, z, y, x) on the CPU to scores of the same shape (any device/float dtype).
PredictFn = Callable[[torch.Tensor], torch.Tensor]
#: Receives finished scores: (first z section, float32 array (nz, y, x)); the array is the receiver's.
EmitFn = Callable[[int, np.ndarray], None]
#: Receives (windows done, windows in total) after each batch.
ProgressFn = Callable[[int, int], None]

_WEIGHT_FLOOR = 1e-3  # MONAI's floor for the importance map: no voxel gets a zero weight


def window_starts(size: int, roi: int, overlap: float) -> tuple[int, ...]:
    """Start positions of the windows along one axis, as MONAI places them.

    Windows step by ``int(roi * (1 - overlap))`` (at least 1) from 0; the last one is moved back
    to end flush with the border, so every voxel of [0, size) is covered and no window sticks out.

    Args:
        size: length of the axis in voxels.
        roi: window length in voxels.
        overlap: fraction of a window shared with its neighbour, in [0, 1).

    Returns:
        Increasing start positions. A ``roi >= size`` gives ``(0,)``: one window that the caller
        pads to ``roi`` (see :func:`blend_windows`).

    Raises:
        ConfigError: ``size`` or ``roi`` is not a positive integer, or ``overlap`` is outside [0, 1).
    """
    size, roi, overlap = _check_positive("size", size), _check_positive("roi", roi), _check_overlap(overlap)
    padded = max(size, roi)
    step = _scan_interval(padded, roi, overlap)
    count = math.ceil((padded - roi) / step) + 1
    return tuple(min(i * step, padded - roi) for i in range(count))


def window_count(shape: Sequence[int], roi: int, overlap: float) -> int:
    """Number of cubic windows of edge ``roi`` that :func:`blend_windows` places over ``shape``."""
    return math.prod(len(window_starts(int(n), roi, overlap)) for n in shape)


def fit_window(shape: Sequence[int], window: int, step: int, overlap: float,
               roi_of: Callable[[int], int] | None = None, max_growth: int = 32) -> int:
    """The model window, ``window`` grown by up to ``max_growth`` voxels in steps of ``step``,
    that predicts ``shape`` with the fewest voxels.

    A tomogram a little larger than the window along an axis needs two windows there (eight for
    a cube); one slightly larger window costs far less, e.g. one 192³ window instead of eight 160³
    for a 162³ tomogram, or four instead of nine for 128×256×256. The cost is the windows' count
    times their volume in model voxels; on a tie the smaller window is kept.

    Args:
        shape: the tomogram's shape (z, y, x) in its own voxels.
        window: the configured window edge in model voxels.
        step: the network's size multiple: window edges must be multiples of it.
        overlap: fraction of a window shared with each neighbour.
        roi_of: the window edge in the tomogram's voxels for a model window (resampling);
            ``None``: the same.
        max_growth: the most voxels the window may grow by.
    """
    roi_of = roi_of or (lambda w: w)
    candidates = range(window, window + max_growth + 1, step)
    return min(candidates, key=lambda w: (window_count(shape, roi_of(w), overlap) * w**3, w))


def mirror_symmetric(shape: Sequence[int], roi: Sequence[int], overlap: float, axes: Sequence[int] = (0, 1, 2)) -> bool:
    """True if the window grid over ``shape`` is its own mirror image along ``axes``.

    Then mirroring each window (per-window test-time augmentation) equals mirroring the whole
    tomogram before placing windows (MemBrain-seg's), and one pass gives MemBrain-seg's scores.
    """
    volume = SimpleNamespace(shape=tuple(int(n) for n in shape))  # planning needs only the shape
    return _Grid.plan(volume, roi, overlap, tuple(axes)).starts == _Grid.plan(volume, roi, overlap, ()).starts


def gaussian_weights(roi: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map of one window: a Gaussian with sigma ``sigma_scale * roi`` per axis.

    Equal to MONAI's ``compute_importance_map(roi, mode="gaussian", sigma_scale=sigma_scale)``:
    a product of 1-D Gaussians centred on the window, floored at 1e-3 so corners keep a positive
    weight. Predictions near a window's border, which see less context, count less in overlaps.

    Args:
        roi: window shape (z, y, x) in voxels.
        sigma_scale: Gaussian sigma as a fraction of the window length (> 0).

    Returns:
        A new float32 tensor of shape ``roi`` (a copy of a cached map; changing it is harmless).
    """
    return _cached_weights(_check_roi(roi), _check_sigma_scale(sigma_scale)).clone()


@functools.lru_cache(maxsize=8)
def _cached_weights(roi: tuple[int, int, int], sigma_scale: float) -> torch.Tensor:
    weights = torch.ones(())
    for length in roi:
        x = torch.arange(start=-(length - 1) / 2.0, end=(length - 1) / 2.0 + 1, dtype=torch.float)
        profile = torch.exp(x**2 / (-2 * (length * sigma_scale) ** 2))
        weights = weights.unsqueeze(-1) * profile if weights.ndim else profile
    return torch.clamp_(weights, min=_WEIGHT_FLOOR).contiguous()  # = MONAI's clamp at max(min, 1e-3)


def slab_buffer_bytes(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Peak bytes of the score buffers :func:`blend_windows` holds for a volume of ``shape``.

    Two float32 accumulators (weighted scores, weights) of ``min(roi_z, Z)`` sections and one
    emitted slab of at most ``min(step_z, Z)`` sections of ``Y * X`` voxels, ``step_z =
    int(roi_z * (1 - overlap))``. Windows add ``4 * batch_size * prod(roi)`` bytes per copy held:
    the batch, its prefetched successor, the prediction and its weighted product.
    """
    depth, y, x = (int(n) for n in shape)
    roi_z = _check_roi(roi)[0]
    step_z = _scan_interval(max(depth, roi_z), roi_z, _check_overlap(overlap))
    return 4 * y * x * (2 * min(roi_z, depth) + min(step_z, depth))


class SlabCollector:
    """An ``emit`` target that gathers the slabs into one in-memory (z, y, x) float32 array.

    Use it when the whole score volume is wanted in RAM (``segment`` returning arrays); to
    stream to disk, pass a writer's ``write`` instead.

    Attributes:
        scores: the (z, y, x) float32 array being filled.
    """

    def __init__(self, shape: Sequence[int]) -> None:
        self.scores = np.empty(tuple(int(n) for n in shape), dtype=np.float32)
        self._filled = 0

    def __call__(self, z_start: int, slab: np.ndarray) -> None:
        """Store ``slab`` at sections ``z_start:z_start + len(slab)``; slabs must arrive in order."""
        end = z_start + slab.shape[0]
        if z_start != self._filled or end > self.scores.shape[0] or slab.shape[1:] != self.scores.shape[1:]:
            raise ConfigError(f"slab of shape {slab.shape} at z={z_start} does not continue a volume of shape "
                              f"{self.scores.shape} filled up to z={self._filled}; emit slabs in z order")
        self.scores[z_start:end] = slab
        self._filled = end

    @property
    def complete(self) -> bool:
        """True once every z section has been received."""
        return self._filled == self.scores.shape[0]


def blend_windows(
    volume: np.ndarray,
    predict_fn: PredictFn,
    *,
    emit: EmitFn,
    roi: Sequence[int] = (160, 160, 160),
    overlap: float = 0.5,
    batch_size: int = 1,
    normalise: tuple[float, float] = (0.0, 1.0),
    sigma_scale: float = 0.125,
    progress: ProgressFn | None = None,
    grid_mirror: tuple[int, ...] = (),
    padding: Padding | str = Padding.ZEROS,
) -> None:
    """Predict a tomogram window by window and emit Gaussian-blended scores slab by slab.

    Windows are placed as MONAI places them (:func:`window_starts` per axis, z-major order); an
    axis shorter than the window is padded on both sides, ``(roi - size) // 2`` before, as MONAI
    does: with zeros after normalisation (MONAI's) or with the tomogram mirrored at its faces.
    Each window is read from ``volume``, cast to float32 and normalised as ``(x - offset) * scale``,
    so the tomogram is never copied whole. Predictions are blended with :func:`gaussian_weights`
    and each finished z range is passed to ``emit`` in order, exactly once, as soon as no later
    window touches it.

    Args:
        volume: the tomogram (z, y, x), any real dtype; a read-only ``np.memmap`` is fine.
        predict_fn: maps a float32 CPU batch (B, 1, \\*roi) to scores of the same shape; it is
            called under ``torch.inference_mode()`` with ``B <= batch_size``.
        emit: receives ``(z_start, scores)``, scores a new float32 array (nz, Y, X).
        roi: window shape (z, y, x) in voxels, or one int for a cube.
        overlap: fraction of a window shared with each neighbour, in [0, 1).
        batch_size: windows per ``predict_fn`` call (>= 1).
        normalise: ``(offset, scale)`` applied per window as ``(x - offset) * scale``.
        sigma_scale: Gaussian sigma as a fraction of the window length.
        progress: called with ``(windows done, windows total)`` after each batch.
        grid_mirror: spatial axes (0 = z, 1 = y, 2 = x) along which windows and padding are placed
            as MONAI places them on the mirrored volume. With ``with_mirroring(f, (axes,))`` this
            is one pass of MemBrain-seg's whole-tomogram TTA; their average over the 8 mirrorings
            reproduces it exactly even where the window grid is not mirror-symmetric.
        padding: ``zeros`` (MONAI's, the default here) or ``reflect`` (:class:`Padding`).

    Raises:
        ConfigError: a bad option, a volume that is not 3-D and non-empty, or a ``predict_fn``
            that returns a different shape.
    """
    grid = _Grid.plan(volume, roi, overlap, grid_mirror)
    batch_size = _check_positive("batch_size", batch_size)
    offset, scale = _check_normalise(normalise)
    padding = _check_padding(padding)
    weights = _cached_weights(grid.roi, _check_sigma_scale(sigma_scale))
    buffer = _SlabBuffer(grid, weights.numpy(), emit)
    origins = grid.origins()
    batches = [origins[i:i + batch_size] for i in range(0, len(origins), batch_size)]
    logger.debug("blending %d windows of %s over %s in %d batches", len(origins), grid.roi, grid.shape, len(batches))
    read = functools.partial(_read_batch, volume, grid, np.float32(offset), np.float32(scale), padding)
    done = 0
    with torch.inference_mode():
        for batch_origins, weighted in _weighted_predictions(batches, read, predict_fn, weights):
            for origin, window in zip(batch_origins, weighted[:, 0]):
                buffer.add(origin, window)
            done += len(batch_origins)
            if progress is not None:
                progress(done, len(origins))


def _weighted_predictions(batches: list[list[tuple[int, int, int]]], read: Callable[..., torch.Tensor],
                          predict_fn: PredictFn, weights: torch.Tensor) -> Iterator[tuple[list, np.ndarray]]:
    """Yield each batch's origins and its predictions times the weights, (B, 1, *roi) float32 on the CPU.

    The next batch is read in a worker thread while the current one is predicted; the weights are
    applied on the device the predictions come from.
    """
    on_device = {weights.device: weights}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bilayer-window-reader") as reader:
        pending = reader.submit(read, batches[0])
        for index, batch_origins in enumerate(batches):
            batch = pending.result()
            if index + 1 < len(batches):
                pending = reader.submit(read, batches[index + 1])
            scores = predict_fn(batch)
            if tuple(scores.shape) != tuple(batch.shape):
                raise ConfigError(f"predict_fn returned shape {tuple(scores.shape)} for a batch of shape "
                                  f"{tuple(batch.shape)}; it must return one channel of the window's shape")
            if scores.device not in on_device:
                on_device[scores.device] = weights.to(scores.device)
            yield batch_origins, (scores.to(torch.float32) * on_device[scores.device]).cpu().numpy()


@dataclass(frozen=True)
class _Grid:
    """Window placement over one volume; starts are in volume coordinates (< 0 where padded)."""

    shape: tuple[int, int, int]
    roi: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    step_z: int

    @classmethod
    def plan(cls, volume: np.ndarray, roi: Sequence[int], overlap: float, mirror: tuple[int, ...]) -> _Grid:
        shape = tuple(int(n) for n in getattr(volume, "shape", ()))
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"volume of shape {shape} is not a non-empty (z, y, x) array; pass a 3-D tomogram")
        roi, overlap = _check_roi(roi), _check_overlap(overlap)
        if not isinstance(mirror, (tuple, list)) or any(a not in (0, 1, 2) for a in mirror):
            raise ConfigError(f"grid_mirror={mirror!r} must be a tuple of spatial axes among 0 (z), 1 (y), 2 (x)")
        starts = []
        for axis, (n, r) in enumerate(zip(shape, roi)):
            padded, before = window_starts(n, r, overlap), max(r - n, 0) // 2
            if axis in mirror:  # MONAI on the flipped axis: starts and the larger half of the padding swap ends
                starts.append(tuple(sorted(n - r - s + before for s in padded)))
            else:
                starts.append(tuple(s - before for s in padded))
        step_z = _scan_interval(max(shape[0], roi[0]), roi[0], overlap)
        return cls(shape, roi, tuple(starts), step_z)  # type: ignore[arg-type]

    def origins(self) -> list[tuple[int, int, int]]:
        """Window corners in MONAI's order: z outermost, x innermost."""
        return list(itertools.product(*self.starts))  # type: ignore[arg-type]

    def clip(self, origin: tuple[int, int, int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(slices into the volume, slices into the window) of the window's part inside the volume."""
        inside, window = [], []
        for start, length, size in zip(origin, self.roi, self.shape):
            lo, hi = max(start, 0), min(start + length, size)
            inside.append(slice(lo, hi))
            window.append(slice(lo - start, hi - start))
        return tuple(inside), tuple(window)


def _read_batch(volume: np.ndarray, grid: _Grid, offset: np.float32, scale: np.float32, padding: Padding,
                origins: list[tuple[int, int, int]]) -> torch.Tensor:
    """Read, cast and normalise the windows at ``origins`` into one float32 (B, 1, *roi) batch."""
    batch = np.empty((len(origins), 1, *grid.roi), dtype=np.float32)
    for target, origin in zip(batch[:, 0], origins):
        inside, window = grid.clip(origin)
        part = target[window]
        if part.shape == target.shape or padding is Padding.ZEROS:
            if part.shape != target.shape:
                target.fill(0.0)  # MONAI pads the normalised volume with zeros
            np.copyto(part, volume[inside], casting="unsafe")
        else:  # a window sticks out only along axes it covers whole, so the block holds every mirror
            block = volume[inside]
            index = np.ix_(*(_reflected(start, length, size) - cut.start
                             for start, length, size, cut in zip(origin, grid.roi, grid.shape, inside)))
            np.copyto(target, block[index], casting="unsafe")
            part = target
        if offset != 0.0:
            part -= offset
        if scale != 1.0:
            part *= scale
    return torch.from_numpy(batch)


def _reflected(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start … start + length - 1`` folded into [0, size) by mirroring at both faces
    without repeating the edge voxel (numpy's ``reflect``), however far they reach outside."""
    index = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


class _SlabBuffer:
    """Float32 accumulators of weighted scores and weights over the z range still open.

    The buffer starts at the first section not yet emitted and is one window (or the volume)
    deep. After each row of windows (same z start) the sections before the next row's start
    are final: they are divided, emitted in pieces of at most one step, and the buffer slides.
    """

    def __init__(self, grid: _Grid, window_weights: np.ndarray, emit: EmitFn) -> None:
        depth = min(grid.roi[0], grid.shape[0])
        self._grid, self._emit, self._chunk = grid, emit, min(grid.step_z, depth)
        self._scores = np.zeros((depth, *grid.shape[1:]), dtype=np.float32)
        self._weights = np.zeros_like(self._scores)
        self._window_weights = window_weights
        self._row_ends = {z: (grid.starts[0][i + 1] if i + 1 < len(grid.starts[0]) else grid.shape[0])
                          for i, z in enumerate(grid.starts[0])}
        self._last_yx = (grid.starts[1][-1], grid.starts[2][-1])
        self._base = 0

    def add(self, origin: tuple[int, int, int], weighted: np.ndarray) -> None:
        inside, window = self._grid.clip(origin)
        local = (slice(inside[0].start - self._base, inside[0].stop - self._base), *inside[1:])
        self._scores[local] += weighted[window]
        self._weights[local] += self._window_weights[window]
        if origin[1:] == self._last_yx:
            self._release(self._row_ends[origin[0]])

    def _release(self, z_end: int) -> None:
        count = z_end - self._base
        for a in range(0, count, self._chunk):
            b = min(a + self._chunk, count)
            self._emit(self._base + a, np.divide(self._scores[a:b], self._weights[a:b]))
        keep = len(self._scores) - count
        for array in (self._scores, self._weights):
            for a in range(0, keep, max(count, 1)):  # forward copy in non-overlapping pieces: no temporary
                b = min(a + count, keep)
                array[a:b] = array[a + count:b + count]
            array[max(keep, 0):] = 0.0
        self._base = z_end


def _scan_interval(padded: int, roi: int, overlap: float) -> int:
    """MONAI's step between window starts along an axis of ``padded`` voxels."""
    if roi == padded:
        return roi
    return max(int(roi * (1 - overlap)), 1)


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def _check_roi(roi: Sequence[int] | int) -> tuple[int, int, int]:
    if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
        roi = (roi,) * 3
    if not isinstance(roi, Sequence) or len(roi) != 3:
        raise ConfigError(f"roi={roi!r} must be three window lengths (z, y, x) in voxels, e.g. (160, 160, 160)")
    return tuple(_check_positive("roi", r) for r in roi)  # type: ignore[return-value]


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_overlap(overlap: float) -> float:
    if not (_is_real(overlap) and 0.0 <= overlap < 1.0):
        raise ConfigError(f"overlap={overlap!r} must be a fraction in [0, 1); MemBrain-seg uses 0.5")
    return float(overlap)


def _check_sigma_scale(sigma_scale: float) -> float:
    if not (_is_real(sigma_scale) and 0.0 < sigma_scale < math.inf):
        raise ConfigError(f"sigma_scale={sigma_scale!r} must be a positive number; MONAI and MemBrain-seg use 0.125")
    return float(sigma_scale)


def _check_normalise(normalise: tuple[float, float]) -> tuple[float, float]:
    try:
        offset, scale = (float(v) for v in normalise)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"normalise={normalise!r} must be (offset, scale), two numbers") from e
    if not (math.isfinite(offset) and math.isfinite(scale)) or scale == 0.0:
        raise ConfigError(f"normalise={normalise!r} needs a finite offset and a finite, non-zero scale")
    return offset, scale


def _check_padding(padding: Padding | str) -> Padding:
    try:
        return Padding(padding)
    except ValueError as e:
        valid = ", ".join(p.value for p in Padding)
        raise ConfigError(f"padding={padding!r} is not one of {valid}") from e
