"""Reading windows: the tomogram's voxels under each window, cast, normalised and padded.

This module owns how a batch of windows is cut from a tomogram: each window of a
:class:`~bilayer.infer.grid.WindowGrid` is read from the volume (a read-only ``np.memmap`` is
fine, the tomogram is never copied whole), cast to float32 and normalised as
``(x - offset) * scale``. Where a window reaches past a tomogram shorter than it, the rest is
zeros after normalisation (MONAI's and MemBrain-seg's padding) or the tomogram mirrored at its
faces (:attr:`~bilayer.infer.config.Padding.REFLECT`).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import torch

from bilayer import checks
from bilayer.errors import ConfigError
from bilayer.infer.config import Padding
from bilayer.infer.grid import Origin, WindowGrid

__all__ = ["BatchReader", "window_reader"]

#: Reads the windows at the given origins into one float32 CPU batch (B, 1, z, y, x).
BatchReader = Callable[[Sequence[Origin]], torch.Tensor]


def window_reader(volume: np.ndarray, grid: WindowGrid, *, normalise: tuple[float, float] = (0.0, 1.0),
                  padding: Padding | str = Padding.ZEROS) -> BatchReader:
    """A function that reads batches of ``grid``'s windows from ``volume``.

    Args:
        volume: the tomogram (z, y, x) of shape ``grid.shape``, any real dtype.
        grid: where the windows go.
        normalise: ``(offset, scale)`` applied per window as ``(x - offset) * scale`` in float32.
        padding: ``zeros`` (MONAI's) or ``reflect`` (:class:`~bilayer.infer.config.Padding`).

    Returns:
        ``read(origins)``: a new float32 tensor (len(origins), 1, \\*grid.roi) on the CPU.

    Raises:
        ConfigError: ``normalise`` is not a finite offset and a finite, non-zero scale, or
            ``padding`` is not a :class:`~bilayer.infer.config.Padding`.
    """
    offset, scale = _check_normalise(normalise)
    padding = checks.choice("padding", padding, Padding)
    return functools.partial(_read_batch, volume, grid, np.float32(offset), np.float32(scale), padding)


def _read_batch(volume: np.ndarray, grid: WindowGrid, offset: np.float32, scale: np.float32, padding: Padding,
                origins: Sequence[Origin]) -> torch.Tensor:
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


def _check_normalise(normalise: tuple[float, float]) -> tuple[float, float]:
    if isinstance(normalise, (str, bytes)) or not isinstance(normalise, (Sequence, np.ndarray)) or len(normalise) != 2:
        raise ConfigError(f"normalise={normalise!r} must be (offset, scale), two numbers")
    offset, scale = (checks.number(f"normalise[{i}]", v) for i, v in enumerate(normalise))
    if scale == 0.0:
        raise ConfigError(f"normalise={normalise!r} needs a finite offset and a finite, non-zero scale")
    return offset, scale
