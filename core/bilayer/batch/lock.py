"""A short lock on a run folder, for the read-modify-write of its shared files.

The run's list of tomograms (``tomograms.txt``) and its summary are rebuilt by whichever process
finished something last; two processes doing so at once could each drop the other's change. The
lock is ``fcntl.flock`` on ``RUN/bilayer_run.lock``: held for milliseconds, released when the process dies
(kill -9 included), and on NFS mapped by Linux onto the server's byte-range locks. It is not for
the per-tomogram work, which the claims (:mod:`bilayer.batch.claims`) share out.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bilayer.errors import OutputError

__all__ = ["LOCK_FILE", "folder_lock"]

LOCK_FILE = "bilayer_run.lock"


@contextmanager
def folder_lock(folder: str | os.PathLike, timeout: float = 60.0) -> Iterator[None]:
    """Hold the run folder's lock for the block (waiting up to ``timeout`` seconds for it).

    Raises:
        OutputError: the lock file cannot be made, or another process held the lock for ``timeout`` s.
    """
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot make the lock {path}: {e.strerror or e}; check the run folder's permissions") from e
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputError(f"{path} has been locked by another process for {timeout:g} s; if none is "
                                      "running on this folder, delete it") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
