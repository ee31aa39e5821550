"""Reading the next tomogram into the page cache while the current one is segmented.

Tomograms are read memory-mapped, so the first pass over a file waits for the disk or the network
file system (a 2 GB tomogram on NFS: tens of seconds). A :class:`Prefetch` reads the file once,
in the background, in large chunks with ``os.pread`` (which releases the GIL), so those pages are
cached when the next tomogram starts. It reads only what fits comfortably in memory (half of what
is available), never holds what it read, and stops when asked.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Self

__all__ = ["Prefetch"]

_CHUNK = 16 * 1024**2


class Prefetch:
    """A background read of one file; :meth:`start` begins it, :meth:`stop` ends it early."""

    def __init__(self, path: str | os.PathLike, limit: int | None = None) -> None:
        self.path = Path(path)
        self.limit = limit
        self.read_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"prefetch {self.path.name}", daemon=True)

    @classmethod
    def start(cls, path: str | os.PathLike, limit: int | None = None) -> Self:
        """Start reading ``path`` (at most ``limit`` bytes; ``None``: half the available memory)."""
        reading = cls(path, limit)
        reading._thread.start()
        return reading

    def stop(self, wait: float | None = None) -> None:
        """Ask the read to end after its current chunk; wait up to ``wait`` seconds for it (``None``: not at all)."""
        self._stop.set()
        if wait is not None and self._thread.is_alive():
            self._thread.join(wait)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the read to finish; True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _read(self) -> None:
        limit = _half_available() if self.limit is None else self.limit
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # the segmentation itself will say what is wrong with the file
        try:
            size = min(os.fstat(fd).st_size, limit)
            while self.read_bytes < size and not self._stop.is_set():
                chunk = os.pread(fd, min(_CHUNK, size - self.read_bytes), self.read_bytes)
                if not chunk:
                    break
                self.read_bytes += len(chunk)
        except OSError:
            pass
        finally:
            os.close(fd)


def _half_available() -> int:
    """Half the memory available now, or 1 GiB where that cannot be read."""
    from bilayer.resources import available_memory

    memory = available_memory()
    return memory // 2 if memory is not None else 1024**3
