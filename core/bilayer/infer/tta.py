"""Mirror test-time augmentation, applied per window inside the sliding-window loop.

MemBrain-seg averages the network's raw outputs (logits) over 8 mirrorings of the whole
tomogram, running the full sliding window 8 times. Here each window is mirrored instead (as
nnU-Net does): the flips of a batch are stacked into one larger batch, predicted together,
flipped back and averaged, so the tomogram is read and blended once. The scores equal
MemBrain-seg's whenever the window grid is mirror-symmetric (see :func:`with_mirroring`); for
any grid, MemBrain-seg's exact scores are the mean of one ``blend_windows(..., grid_mirror=axes)``
pass per mirroring with ``with_mirroring(predict_fn, (axes,))``, at the same network cost.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from bilayer.errors import ConfigError
from bilayer.infer.blend import PredictFn

__all__ = ["MIRROR_AXES", "with_mirroring"]

logger = logging.getLogger(__name__)

#: The 8 mirrorings as spatial axes (0 = z, 1 = y, 2 = x) to flip, in MemBrain-seg's order
#: (``get_mirrored_img`` indices 0-7, whose tensors are (B, C, x, y, z): its dims 4, 3, 2
#: are our z, y, x). The first, ``()``, is the unflipped window.
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1), (2,), (0, 2), (1, 2), (0, 1, 2))

_SPATIAL_DIMS = 3


def with_mirroring(
    predict_fn: PredictFn,
    axes_sets: Sequence[Sequence[int]] = MIRROR_AXES,
    *,
    max_batch: int | None = None,
) -> PredictFn:
    """Wrap ``predict_fn`` so that it returns the average over mirrored copies of each window.

    For a batch (B, 1, z, y, x), every mirroring in ``axes_sets`` is applied, the ``len(axes_sets)
    * B`` windows are predicted in calls of at most ``max_batch`` windows (only one call's copies
    are held at a time), each prediction is flipped back, and the raw outputs are averaged in
    float32 (summed in ``axes_sets`` order, then divided), as MemBrain-seg averages logits before
    thresholding at 0.

    Per-window mirroring equals MemBrain-seg's whole-tomogram mirroring exactly when the window
    grid is its own mirror image on every flipped axis: ``size <= roi`` with an even difference
    (symmetric padding), or ``size - roi`` a multiple of the step (e.g. 160³ or 240³ with roi 160,
    overlap 0.5), or two windows. Otherwise MemBrain-seg's flipped passes place windows at mirrored
    positions and its scores differ from these by the model's sensitivity to window placement
    (use ``blend_windows(..., grid_mirror=axes)`` per mirroring to reproduce them exactly).

    Args:
        predict_fn: maps a float32 batch (N, 1, z, y, x) to outputs of the same shape.
        axes_sets: mirrorings as tuples of spatial axes (0 = z, 1 = y, 2 = x); the default is
            MemBrain-seg's 8. ``((),)`` turns augmentation off.
        max_batch: most windows per ``predict_fn`` call; ``None`` sends all ``len(axes_sets) * B``
            at once (fastest when memory allows, e.g. 8 flips of one 160³ window on a large GPU).

    Returns:
        A predict function with the same contract as ``predict_fn``.

    Raises:
        ConfigError: an axis outside 0-2, a repeated axis or mirroring, no mirroring, or
            ``max_batch < 1``.
    """
    flips = _check_axes_sets(axes_sets)
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ConfigError(f"max_batch={max_batch!r} must be a positive integer or None (all flips in one call)")
    logger.debug("mirror TTA over %d flips, %s windows per call", len(flips), max_batch or "all")

    def mirrored(batch: torch.Tensor) -> torch.Tensor:
        count = batch.shape[0]
        per_call = len(flips) if max_batch is None else max(1, max_batch // count)
        total = None
        for first in range(0, len(flips), per_call):  # only one call's mirrored copies are held at a time
            group = flips[first:first + per_call]
            stacked = torch.cat([_flip(batch, axes) for axes in group]) if len(group) > 1 else _flip(batch, group[0])
            outputs = _predict_in_chunks(predict_fn, stacked, max_batch)
            if tuple(outputs.shape) != tuple(stacked.shape):
                raise ConfigError(f"predict_fn returned shape {tuple(outputs.shape)} for mirrored windows of shape "
                                  f"{tuple(stacked.shape)}; it must return one channel of the window's shape")
            for i, axes in enumerate(group):
                back = _flip(outputs[i * count:(i + 1) * count], axes)
                total = back.to(torch.float32, copy=True) if total is None else total.add_(back)
        return total.div_(len(flips))

    return mirrored


def _flip(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """``x`` (B, C, z, y, x) mirrored along the spatial ``axes``; ``x`` itself when there are none."""
    return torch.flip(x, [a + 2 for a in axes]) if axes else x


def _predict_in_chunks(predict_fn: PredictFn, windows: torch.Tensor, max_batch: int | None) -> torch.Tensor:
    """``predict_fn`` over ``windows`` in calls of at most ``max_batch`` windows, concatenated."""
    if max_batch is None or windows.shape[0] <= max_batch:
        return predict_fn(windows)
    return torch.cat([predict_fn(windows[i:i + max_batch]) for i in range(0, windows.shape[0], max_batch)])


def _check_axes_sets(axes_sets: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    try:
        flips = tuple(tuple(int(a) for a in axes) for axes in axes_sets)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"axes_sets={axes_sets!r} must be tuples of spatial axes, e.g. {MIRROR_AXES}") from e
    if not flips:
        raise ConfigError("axes_sets is empty; pass ((),) for no mirroring or MIRROR_AXES for all 8")
    for axes in flips:
        if any(a not in range(_SPATIAL_DIMS) for a in axes) or len(set(axes)) != len(axes):
            raise ConfigError(f"mirroring {axes} must name distinct spatial axes among 0 (z), 1 (y), 2 (x)")
    if len({frozenset(axes) for axes in flips}) != len(flips):
        raise ConfigError(f"axes_sets={flips} repeats a mirroring; each flip should appear once")
    return flips
