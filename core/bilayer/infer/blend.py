"""Blending windows into scores: the sliding-window driver and its slab-wise output.

This module owns :func:`blend_windows` (plan the grid, read the next batch in a worker thread
while the current one is predicted, weight each prediction with the Gaussian importance map of
:func:`gaussian_weights`, emit finished slabs), the score buffers behind it and their size
(:func:`slab_buffer_bytes`), and :class:`SlabCollector`, an ``emit`` target gathering the scores in
memory. It never sees a model, a device choice or a file: only arrays and a ``predict_fn``.
Window placement (:mod:`bilayer.infer.grid`), padding (:mod:`bilayer.infer.windows`) and the
Gaussian importance map reproduce MONAI's ``sliding_window_inference(mode="gaussian")`` as used
by MemBrain-seg, so the same ``predict_fn`` gives the same scores. Unlike MONAI, finished
(z, y, x) slabs are handed to ``emit`` as soon as no later window touches them, so memory is
bounded by :func:`slab_buffer_bytes`, independent of the tomogram's depth.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from bilayer import checks
from bilayer.errors import ConfigError
from bilayer.infer.config import Padding
from bilayer.infer.grid import Origin, WindowGrid, window_shape
from bilayer.infer.windows import BatchReader, window_reader

__all__ = ["EmitFn", "PredictFn", "ProgressFn", "SlabCollector", "blend_windows", "gaussian_weights",
           "slab_buffer_bytes"]

logger = logging.getLogger(__name__)

#: Maps a float32 batch (B, 1, z, y, x) on the CPU to scores of the same shape (any device/float dtype).
PredictFn = Callable[[torch.Tensor], torch.Tensor]
#: Receives finished scores: (first z section, float32 array (nz, y, x)); the array is the receiver's.
EmitFn = Callable[[int, np.ndarray], None]
#: Receives (windows done, windows in total) after each batch.
ProgressFn = Callable[[int, int], None]

_WEIGHT_FLOOR = 1e-3  # MONAI's floor for the importance map: no voxel gets a zero weight


def gaussian_weights(roi: Sequence[int] | int, sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map of one window: a Gaussian with sigma ``sigma_scale * roi`` per axis.

    Equal to MONAI's ``compute_importance_map(roi, mode="gaussian", sigma_scale=sigma_scale)``:
    a product of 1-D Gaussians centred on the window, floored at 1e-3 so corners keep a positive
    weight. Predictions near a window's border, which see less context, count less in overlaps.

    Args:
        roi: window shape (z, y, x) in voxels, or one int for a cube.
        sigma_scale: Gaussian sigma as a fraction of the window length (> 0).

    Returns:
        A new float32 tensor of shape ``roi`` (a copy of a cached map; changing it is harmless).
    """
    return _cached_weights(window_shape(roi), _check_sigma_scale(sigma_scale)).clone()


@functools.lru_cache(maxsize=8)
def _cached_weights(roi: tuple[int, int, int], sigma_scale: float) -> torch.Tensor:
    weights = torch.ones(())
    for length in roi:
        x = torch.arange(start=-(length - 1) / 2.0, end=(length - 1) / 2.0 + 1, dtype=torch.float)
        profile = torch.exp(x**2 / (-2 * (length * sigma_scale) ** 2))
        weights = weights.unsqueeze(-1) * profile if weights.ndim else profile
    return torch.clamp_(weights, min=_WEIGHT_FLOOR).contiguous()  # = MONAI's clamp at max(min, 1e-3)


def slab_buffer_bytes(shape: Sequence[int], roi: Sequence[int] | int, overlap: float) -> int:
    """Peak bytes of the score buffers :func:`blend_windows` holds for a volume of ``shape``.

    Two float32 accumulators (weighted scores, weights) of ``min(roi_z, Z)`` sections and one
    emitted slab of at most ``min(step_z, Z)`` sections of ``Y * X`` voxels, ``step_z =
    int(roi_z * (1 - overlap))``. Windows add ``4 * batch_size * prod(roi)`` bytes per copy held:
    the batch, its prefetched successor, the prediction and its weighted product.
    """
    grid = WindowGrid.plan(shape, roi, overlap)
    depth, y, x = grid.shape
    return 4 * y * x * (2 * min(grid.roi[0], depth) + min(grid.step_z, depth))


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
    roi: Sequence[int] | int = (160, 160, 160),
    overlap: float = 0.5,
    batch_size: int = 1,
    normalise: tuple[float, float] = (0.0, 1.0),
    sigma_scale: float = 0.125,
    progress: ProgressFn | None = None,
    grid_mirror: tuple[int, ...] = (),
    padding: Padding | str = Padding.ZEROS,
) -> None:
    """Predict a tomogram window by window and emit Gaussian-blended scores slab by slab.

    Windows are placed as MONAI places them (:meth:`WindowGrid.plan`, z-major order); an axis
    shorter than the window is padded on both sides, ``(roi - size) // 2`` before, as MONAI
    does: with zeros after normalisation (MONAI's) or with the tomogram mirrored at its faces.
    Each window is read from ``volume``, cast to float32 and normalised as ``(x - offset) * scale``
    (:func:`~bilayer.infer.windows.window_reader`), so the tomogram is never copied whole.
    Predictions are blended with :func:`gaussian_weights` and each finished z range is passed to
    ``emit`` in order, exactly once, as soon as no later window touches it.

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
    grid = WindowGrid.plan(getattr(volume, "shape", ()), roi, overlap, grid_mirror)
    batch_size = checks.number("batch_size", batch_size, 1, integer=True)
    read = window_reader(volume, grid, normalise=normalise, padding=padding)
    weights = _cached_weights(grid.roi, _check_sigma_scale(sigma_scale))
    buffer = _SlabBuffer(grid, weights.numpy(), emit)
    origins = grid.origins()
    batches = [origins[i:i + batch_size] for i in range(0, len(origins), batch_size)]
    logger.debug("blending %d windows of %s over %s in %d batches", len(origins), grid.roi, grid.shape, len(batches))
    done = 0
    with torch.inference_mode():
        for batch_origins, weighted in _weighted_predictions(batches, read, predict_fn, weights):
            for origin, window in zip(batch_origins, weighted[:, 0]):
                buffer.add(origin, window)
            done += len(batch_origins)
            if progress is not None:
                progress(done, len(origins))


def _weighted_predictions(batches: list[list[Origin]], read: BatchReader, predict_fn: PredictFn,
                          weights: torch.Tensor) -> Iterator[tuple[list[Origin], np.ndarray]]:
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


class _SlabBuffer:
    """Float32 accumulators of weighted scores and weights over the z range still open.

    The buffer starts at the first section not yet emitted and is one window (or the volume)
    deep. After each row of windows (same z start) the sections before the next row's start
    are final: they are divided, emitted in pieces of at most one step, and the buffer slides.
    """

    def __init__(self, grid: WindowGrid, window_weights: np.ndarray, emit: EmitFn) -> None:
        depth = min(grid.roi[0], grid.shape[0])
        self._grid, self._emit, self._chunk = grid, emit, min(grid.step_z, depth)
        self._scores = np.zeros((depth, *grid.shape[1:]), dtype=np.float32)
        self._weights = np.zeros_like(self._scores)
        self._window_weights = window_weights
        self._row_ends = {z: (grid.starts[0][i + 1] if i + 1 < len(grid.starts[0]) else grid.shape[0])
                          for i, z in enumerate(grid.starts[0])}
        self._last_yx = (grid.starts[1][-1], grid.starts[2][-1])
        self._base = 0

    def add(self, origin: Origin, weighted: np.ndarray) -> None:
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


def _check_sigma_scale(sigma_scale: float) -> float:
    try:
        return checks.number("sigma_scale", sigma_scale, 0.0, open_low=True)
    except ConfigError as e:
        raise ConfigError(f"{e}; MONAI and MemBrain-seg use 0.125") from None
