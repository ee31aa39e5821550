"""Where the windows go: window placement and planning over a tomogram's shape.

This module owns the window grid of sliding-window inference: the start positions along one
axis as MONAI places them (:func:`window_starts`, MONAI's scan interval), the grid over a (z, y, x)
shape (:class:`WindowGrid`, including MemBrain-seg's placement on a mirrored tomogram), how many
windows a shape needs (:func:`window_count`), the window-fitting cost policy (:func:`fit_window`),
and whether a grid is its own mirror image (:func:`mirror_symmetric`). It works on shapes only:
no arrays, no torch, no model.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from bilayer import checks
from bilayer.errors import ConfigError

__all__ = ["WindowGrid", "fit_window", "mirror_symmetric", "window_count", "window_shape", "window_starts"]

Origin = tuple[int, int, int]


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
        pads to ``roi`` (see :meth:`WindowGrid.plan`).

    Raises:
        ConfigError: ``size`` or ``roi`` is not a positive integer, or ``overlap`` is outside [0, 1).
    """
    size, roi, overlap = _positive_integer("size", size), _positive_integer("roi", roi), _check_overlap(overlap)
    padded = max(size, roi)
    step = _scan_interval(padded, roi, overlap)
    count = math.ceil((padded - roi) / step) + 1
    return tuple(min(i * step, padded - roi) for i in range(count))


def window_count(shape: Sequence[int], roi: int, overlap: float) -> int:
    """Number of cubic windows of edge ``roi`` that :func:`~bilayer.infer.blend.blend_windows`
    places over ``shape``."""
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


def mirror_symmetric(shape: Sequence[int], roi: Sequence[int] | int, overlap: float,
                     axes: Sequence[int] = (0, 1, 2)) -> bool:
    """True if the window grid over ``shape`` is its own mirror image along ``axes``.

    Then mirroring each window (per-window test-time augmentation) equals mirroring the whole
    tomogram before placing windows (MemBrain-seg's), and one pass gives MemBrain-seg's scores.
    """
    return WindowGrid.plan(shape, roi, overlap, tuple(axes)).starts == WindowGrid.plan(shape, roi, overlap).starts


@dataclass(frozen=True)
class WindowGrid:
    """The windows placed over one (z, y, x) volume, in the volume's voxel coordinates.

    Build it with :meth:`plan`. Along an axis shorter than the window, the one window there
    starts before 0 (``-((roi - size) // 2)``, as MONAI pads); elsewhere windows lie inside.

    Attributes:
        shape: the volume's shape (z, y, x).
        roi: the window shape (z, y, x).
        starts: per axis, the increasing window start positions (negative where padded).
        step_z: MONAI's step between window starts along z: how many sections become final
            after each row of windows, at most.
    """

    shape: tuple[int, int, int]
    roi: tuple[int, int, int]
    starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    step_z: int

    @classmethod
    def plan(cls, shape: Sequence[int], roi: Sequence[int] | int, overlap: float,
             mirror: Sequence[int] = ()) -> WindowGrid:
        """Place windows over a volume of ``shape`` as MONAI places them.

        Args:
            shape: the volume's shape (z, y, x), three positive integers.
            roi: window shape (z, y, x) in voxels, or one int for a cube.
            overlap: fraction of a window shared with each neighbour, in [0, 1).
            mirror: spatial axes (0 = z, 1 = y, 2 = x) along which the windows and the padding
                go where MONAI puts them on the volume mirrored along those axes (MemBrain-seg's
                test-time augmentation), mapped back to this volume's coordinates.

        Raises:
            ConfigError: a shape that is not three positive lengths, a bad ``roi`` or
                ``overlap``, or ``mirror`` holding anything but the axes 0, 1, 2.
        """
        shape = _check_shape(shape)
        roi, overlap = window_shape(roi), _check_overlap(overlap)
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

    def origins(self) -> list[Origin]:
        """Window corners in MONAI's order: z outermost, x innermost."""
        return list(itertools.product(*self.starts))  # type: ignore[arg-type]

    def clip(self, origin: Origin) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(slices into the volume, slices into the window) of the window's part inside the volume."""
        inside, window = [], []
        for start, length, size in zip(origin, self.roi, self.shape):
            lo, hi = max(start, 0), min(start + length, size)
            inside.append(slice(lo, hi))
            window.append(slice(lo - start, hi - start))
        return tuple(inside), tuple(window)


def window_shape(roi: Sequence[int] | int) -> tuple[int, int, int]:
    """The window shape (z, y, x) from three positive lengths, or from one for a cube.

    Raises:
        ConfigError: not one or three positive integers.
    """
    if isinstance(roi, (int, np.integer)) and not isinstance(roi, bool):
        roi = (roi,) * 3
    if not isinstance(roi, Sequence) or len(roi) != 3:
        raise ConfigError(f"roi={roi!r} must be three window lengths (z, y, x) in voxels, e.g. (160, 160, 160)")
    return tuple(_positive_integer("roi", r) for r in roi)  # type: ignore[return-value]


def _check_overlap(overlap: float) -> float:
    """``overlap`` as a float when it is a fraction in [0, 1), else a :class:`ConfigError`."""
    try:
        return checks.number("overlap", overlap, 0.0, 1.0, open_high=True)
    except ConfigError as e:
        raise ConfigError(f"{e}; MemBrain-seg uses 0.5") from None


def _positive_integer(name: str, value: int) -> int:
    return checks.number(name, value, 1, integer=True)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(operator.index(n) for n in shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ConfigError(f"shape {shape!r} is not that of a non-empty (z, y, x) volume; pass a 3-D tomogram")
    return dims  # type: ignore[return-value]


def _scan_interval(padded: int, roi: int, overlap: float) -> int:
    """MONAI's step between window starts along an axis of ``padded`` voxels."""
    if roi == padded:
        return roi
    return max(int(roi * (1 - overlap)), 1)
