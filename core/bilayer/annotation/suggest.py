"""Where to annotate next: the non-overlapping patches of highest mean uncertainty.

MemBrain v2's loop has a person pick the patches where the model is wrong; this proposes them
from an uncertainty map (``bilayer segment``'s ``<stem>_uncertainty.mrc``, higher = less sure)
or from the scores alone (``-|score - threshold|``: how close each voxel is to the decision,
for a run without TTA). The volume is read slab by slab from its memory map and averaged over
``step``³ blocks, ``step`` the largest divisor of ``size`` up to ``size / 8``; the mean of every
``size``³ box that starts on a block corner is then exact (summed from the block sums). The box
of highest mean is taken, every box overlapping it is struck out, and so on until ``count``
boxes are taken or none is left. Memory: one slab of ``step`` sections plus the block grid
(``step``³ = 8,000 times smaller than the volume for 160³ patches).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bilayer import checks
from bilayer.errors import BilayerWarning, InputFileError

__all__ = ["Suggestion", "block_means", "box_means", "grid_step", "suggest_patches"]


@dataclass(frozen=True)
class Suggestion:
    """One proposed patch.

    Attributes:
        centre: (z, y, x) voxel; ``bilayer patches extract`` cuts the box ``centre - size // 2``
            to ``centre - size // 2 + size``, which lies inside the volume.
        mean: the mean uncertainty over the box.
    """

    centre: tuple[int, int, int]
    mean: float


def grid_step(size: int) -> int:
    """The block edge for ``size``³ boxes: the largest divisor of ``size`` that is at most ``size // 8``."""
    return max(d for d in range(1, max(1, size // 8) + 1) if size % d == 0)


def block_means(volume: np.ndarray, step: int, transform: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> np.ndarray:
    """Means of ``volume`` (z, y, x) over ``step``³ blocks, after ``transform`` of each slab; the
    last partial block of each axis is left out. Reads ``step`` sections at a time."""
    shape = tuple(n // step for n in volume.shape)
    out = np.zeros(shape, dtype=np.float64)
    ny, nx = shape[1] * step, shape[2] * step
    for k in range(shape[0]):
        slab = np.asarray(volume[k * step:(k + 1) * step, :ny, :nx], dtype=np.float32)
        if transform is not None:
            slab = transform(slab)
        plane = slab.sum(axis=0, dtype=np.float64)
        out[k] = plane.reshape(shape[1], step, shape[2], step).sum(axis=(1, 3))
    return out / step**3


def box_means(blocks: np.ndarray, width: int) -> np.ndarray:
    """Means over every ``width``³ window of ``blocks`` (exact, from a summed-volume table);
    entry ``k`` is the window starting at block ``k``."""
    table = np.zeros(tuple(n + 1 for n in blocks.shape), dtype=np.float64)
    table[1:, 1:, 1:] = blocks.cumsum(0).cumsum(1).cumsum(2)
    w = width
    total = (table[w:, w:, w:] - table[:-w, w:, w:] - table[w:, :-w, w:] - table[w:, w:, :-w]
             + table[:-w, :-w, w:] + table[:-w, w:, :-w] + table[w:, :-w, :-w] - table[:-w, :-w, :-w])
    return total / w**3


def suggest_patches(uncertainty: np.ndarray, *, size: int, count: int, scores_threshold: float | None = None
                    ) -> list[Suggestion]:
    """The ``count`` non-overlapping ``size``³ patches of highest mean uncertainty, best first.

    Args:
        uncertainty: (z, y, x), higher = less sure (a memory map is read slab by slab).
        size: patch edge in voxels.
        count: how many patches.
        scores_threshold: read ``uncertainty`` as network scores instead, whose uncertainty is
            ``-|score - scores_threshold|`` (the mask's threshold: 0 for ``bilayer segment``).

    Returns:
        Up to ``count`` suggestions; fewer where no more fit without overlapping.

    Raises:
        InputFileError: the volume is smaller than a patch.
        ConfigError: a bad size or count.

    Warns:
        BilayerWarning: fewer than ``count`` patches fit.
    """
    size = checks.number("size", size, 1, integer=True)
    count = checks.number("count", count, 1, integer=True)
    if min(uncertainty.shape) < size:
        raise InputFileError(f"the volume ({'x'.join(map(str, uncertainty.shape))} voxels, z, y, x) is smaller than "
                             f"a {size}³ patch; give a smaller --size (at most {min(uncertainty.shape)})")
    transform = None
    if scores_threshold is not None:
        t = checks.number("threshold", scores_threshold)

        def transform(slab: np.ndarray) -> np.ndarray:
            return -np.abs(slab - np.float32(t))

    step = grid_step(size)
    width = size // step
    means = box_means(block_means(uncertainty, step, transform), width)
    found: list[Suggestion] = []
    while len(found) < count and np.isfinite(means).any():
        k = np.unravel_index(int(np.argmax(np.where(np.isfinite(means), means, -np.inf))), means.shape)
        found.append(Suggestion(tuple(int(i) * step + size // 2 for i in k), float(means[k])))  # type: ignore[arg-type]
        near = tuple(slice(max(0, int(i) - width + 1), int(i) + width) for i in k)
        means[near] = -np.inf  # boxes overlapping the one taken
    if len(found) < count:
        warnings.warn(f"only {len(found)} patches of {size}³ fit in {'x'.join(map(str, uncertainty.shape))} voxels "
                      f"without overlapping; asked for {count}", BilayerWarning, stacklevel=2)
    return found
