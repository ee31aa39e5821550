"""Averaging several sliding-window passes over a tomogram without holding any of them whole.

MemBrain-seg's test-time augmentation runs the whole sliding window once per mirroring of the
tomogram and averages the eight score volumes. Where the window grid is not its own mirror
image, each pass places its windows differently, so the passes cannot be merged window by
window. :class:`PassAccumulator` sums the passes' slabs in a temporary float32 file (read and
written slab by slab, never mapped) and emits the mean while the last pass streams, so memory
stays that of one pass whatever the tomogram's size.
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np

from bilayer.errors import ConfigError, OutputError
from bilayer.infer.blend import EmitFn

__all__ = ["PassAccumulator"]


class PassAccumulator:
    """Sums ``passes`` score volumes of ``shape`` arriving as z-slabs; emits their mean.

    Use as a context manager; ``emitter(i)`` is the ``emit`` of pass ``i``. Passes must run one
    after the other, in index order; each covers every z section once, in any slab sizes.

    Args:
        shape: (z, y, x) of the score volume.
        passes: number of passes averaged (at least 1).
        emit: receives the mean slabs during the last pass.
        directory: where the temporary file goes (default: the system's temporary folder).
    """

    def __init__(self, shape: Sequence[int], passes: int, emit: EmitFn, directory: str | None = None) -> None:
        if passes < 1:
            raise ConfigError(f"passes={passes} must be at least 1")
        self.shape, self.passes, self._emit = tuple(int(n) for n in shape), int(passes), emit
        self._section = 4 * self.shape[1] * self.shape[2]  # bytes of one float32 z section
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
            if index > 0:
                total = total + self._read(z_start, slab.shape[0])
            if index == self.passes - 1:
                self._emit(z_start, total / np.float32(self.passes))
            else:
                self._write(z_start, total)

        return emit

    def _read(self, z_start: int, depth: int) -> np.ndarray:
        size = depth * self._section
        data = os.pread(self._file.fileno(), size, z_start * self._section)
        if len(data) != size:
            raise OutputError("the temporary test-time-augmentation file was cut short; is its disk full?")
        return np.frombuffer(data, dtype=np.float32).reshape(depth, *self.shape[1:])

    def _write(self, z_start: int, slab: np.ndarray) -> None:
        data = slab.tobytes()
        try:
            written = os.pwrite(self._file.fileno(), data, z_start * self._section)
        except OSError as e:
            raise OutputError(f"cannot write the temporary test-time-augmentation file: {e.strerror or e}; "
                              "set TMPDIR to a folder with room for one float32 copy of the tomogram") from e
        if written != len(data):
            raise OutputError("the temporary test-time-augmentation file could not be written whole; is the disk full?")
