"""Averaging several sliding-window passes over a tomogram without holding any of them whole.

MemBrain-seg's test-time augmentation runs the whole sliding window once per mirroring of the
tomogram and averages the eight score volumes. Where the window grid is not its own mirror
image, each pass places its windows differently, so the passes cannot be merged window by
window. :class:`PassAccumulator` sums the passes' slabs in a temporary float32 file (read and
written slab by slab, never mapped) and emits the mean while the last pass streams, so memory
stays that of one pass whatever the tomogram's size; on request it also keeps the running
variance of the passes' membrane probabilities, the uncertainty (:mod:`bilayer.infer.uncertainty`).
:func:`mirrored_passes` runs the passes of mirror TTA through it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Sequence

import numpy as np

from bilayer.errors import ConfigError, OutputError
from bilayer.infer.blend import EmitFn, PredictFn, ProgressFn
from bilayer.infer.tta import MIRROR_AXES, with_mirroring
from bilayer.infer.uncertainty import membrane_probability, running_variance, variance_of

__all__ = ["BlendFn", "PassAccumulator", "mirrored_passes", "temporary_bytes"]

#: :func:`~bilayer.infer.blend.blend_windows` with the volume and window options bound: called as
#: ``blend(predict_fn, emit=..., grid_mirror=..., batch_size=..., progress=...)``.
BlendFn = Callable[..., None]


def temporary_bytes(shape: Sequence[int], spread: bool) -> int:
    """Bytes of the temporary file :class:`PassAccumulator` fills for a volume of ``shape``."""
    return _ARRAYS[spread] * 4 * int(np.prod(shape))


_ARRAYS = {False: 1, True: 3}  # float32 volumes in the file: the sum (+ running mean and squares of probabilities)


class PassAccumulator:
    """Sums ``passes`` score volumes of ``shape`` arriving as z-slabs; emits their mean.

    Use as a context manager; ``emitter(i)`` is the ``emit`` of pass ``i``. Passes must run one
    after the other, in index order; each covers every z section once, in any slab sizes.

    Args:
        shape: (z, y, x) of the score volume.
        passes: number of passes averaged (at least 1; at least 2 with ``spread``).
        emit: receives the mean slabs during the last pass.
        directory: where the temporary file goes (default: the system's temporary folder).
        spread: receives the sample variance over the passes of ``sigmoid(scores)`` (the raw
            uncertainty), each slab right after ``emit`` received the mean of the same sections.
    """

    def __init__(self, shape: Sequence[int], passes: int, emit: EmitFn, directory: str | None = None, *,
                 spread: EmitFn | None = None) -> None:
        if passes < 1 or (spread is not None and passes < 2):
            raise ConfigError(f"passes={passes} must be at least {2 if spread else 1}"
                              f"{' to measure their spread' if spread else ''}")
        self.shape, self.passes, self._emit, self._spread = tuple(int(n) for n in shape), int(passes), emit, spread
        self._section = 4 * self.shape[1] * self.shape[2]  # bytes of one float32 z section
        self._volume = self._section * self.shape[0]  # bytes of one float32 volume in the file
        try:
            self._file = tempfile.TemporaryFile(dir=directory, prefix="bilayer-tta-")
        except OSError as e:
            raise OutputError(f"cannot create a temporary file for test-time augmentation in "
                              f"{directory or tempfile.gettempdir()}: {e.strerror or e}; set TMPDIR to a writable "
                              "folder with room for one float32 copy of the tomogram") from e

    def __enter__(self) -> PassAccumulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def emitter(self, index: int) -> EmitFn:
        """The ``emit`` for pass ``index`` (0-based)."""
        if not 0 <= index < self.passes:
            raise ConfigError(f"pass {index} is outside 0..{self.passes - 1}")

        def emit(z_start: int, slab: np.ndarray) -> None:
            total = np.ascontiguousarray(slab, dtype=np.float32)
            depth = slab.shape[0]
            if index > 0:
                total = total + self._read(z_start, depth)
            if self._spread is not None:
                mean, squares = (None, None) if index == 0 else \
                    (self._read(z_start, depth, 1), self._read(z_start, depth, 2))
                mean, squares = running_variance(mean, squares, membrane_probability(slab), index + 1)
            if index == self.passes - 1:
                self._emit(z_start, total / np.float32(self.passes))
                if self._spread is not None:
                    self._spread(z_start, variance_of(squares, self.passes))
            else:
                self._write(z_start, total)
                if self._spread is not None:
                    self._write(z_start, mean, 1)
                    self._write(z_start, squares, 2)

        return emit

    def _read(self, z_start: int, depth: int, array: int = 0) -> np.ndarray:
        size = depth * self._section
        data = os.pread(self._file.fileno(), size, array * self._volume + z_start * self._section)
        if len(data) != size:
            raise OutputError("the temporary test-time-augmentation file was cut short; is its disk full?")
        return np.frombuffer(data, dtype=np.float32).reshape(depth, *self.shape[1:])

    def _write(self, z_start: int, slab: np.ndarray, array: int = 0) -> None:
        data = np.ascontiguousarray(slab, dtype=np.float32).tobytes()
        try:
            written = os.pwrite(self._file.fileno(), data, array * self._volume + z_start * self._section)
        except OSError as e:
            raise OutputError(f"cannot write the temporary test-time-augmentation file: {e.strerror or e}; "
                              "set TMPDIR to a folder with room for one float32 copy of the tomogram") from e
        if written != len(data):
            raise OutputError("the temporary test-time-augmentation file could not be written whole; is the disk full?")


def mirrored_passes(blend: BlendFn, predict_fn: PredictFn, *, shape: Sequence[int], emit: EmitFn,
                    spread: EmitFn | None = None, mirror_grid: bool = True,
                    axes_sets: Sequence[Sequence[int]] = MIRROR_AXES, batch_size: int = 1,
                    progress: ProgressFn | None = None, directory: str | None = None) -> None:
    """Mirror TTA as one blended pass per mirroring, averaged through a :class:`PassAccumulator`.

    Pass ``k`` predicts every window mirrored by ``axes_sets[k]`` (and flipped back). With
    ``mirror_grid`` its windows sit where MemBrain-seg places them on the mirrored tomogram
    (its exact scores on any grid); without, they stay in place (``tta_grid=window``). The mean
    of the passes goes to ``emit``, their spread (see :class:`PassAccumulator`) to ``spread``.

    Args:
        blend: ``blend_windows`` with the volume and window options bound (:data:`BlendFn`).
        predict_fn: the network on a batch of windows.
        shape: (z, y, x) of the volume.
        emit, spread: receive the mean scores and, if given, the raw uncertainty, slab by slab.
        mirror_grid: place each pass's windows on the mirrored tomogram's grid.
        axes_sets: the mirrorings, one pass each (default: MemBrain-seg's 8).
        batch_size: windows per ``predict_fn`` call.
        progress: ``(windows done, windows total)`` over all passes.
        directory: where the temporary file goes.
    """
    flips = [tuple(axes) for axes in axes_sets]
    with PassAccumulator(shape, len(flips), emit, directory, spread=spread) as passes:
        for index, axes in enumerate(flips):
            blend(with_mirroring(predict_fn, (axes,)), emit=passes.emitter(index),
                  grid_mirror=axes if mirror_grid else (), batch_size=batch_size,
                  progress=_pass_progress(progress, index, len(flips)))


def _pass_progress(progress: ProgressFn | None, index: int, passes: int) -> ProgressFn | None:
    """Progress of pass ``index`` reported as progress over all passes."""
    if progress is None:
        return None
    return lambda done, total: progress(index * total + done, passes * total)
