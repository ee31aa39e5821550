"""Atomic output files: a result appears complete under its final name, or not at all.

A file is written into an anonymous inode in the target folder (Linux ``O_TMPFILE``), which
vanishes by itself if the writer dies, even from ``SIGKILL``; it gets its final name only
once it is complete. Where ``O_TMPFILE`` is unavailable, a hidden ``.<name>.<random>.part``
file in the same folder is used and removed on any error.

Files that belong together (a tomogram's mask, scores, components, preview) are finished in
an :func:`output_group` and named together at its end, the first one last: a failure or a kill
before then leaves none of them, and the first file's presence means the whole group is there.

Every output is checked first: it never replaces an input (``protect``) and replaces an
existing file only when ``overwrite`` is true. A full disk is an :class:`OutputError` naming the
file, not a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from bilayer.errors import OutputError

__all__ = ["OutputGroup", "atomic_open", "check_output_path", "ensure_output_dir", "file_identity", "file_sha256",
           "output_group"]

_PROC_FD = Path("/proc/self/fd")
_DIGEST_CHUNK = 8 * 2**20  # bytes read at a time by file_sha256
#: Errors of a disk that cannot take more: full, over quota, or over the process's file size limit.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def ensure_output_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (with parents) if needed and check that files can be made in it.

    Raises:
        OutputError: the folder cannot be created or written to.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot create output folder {folder}: {e.strerror or e}; "
            "choose a folder you can write to (--out)"
        ) from e
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} is not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable; choose another --out or fix its permissions")
    return folder


def file_identity(path: str | os.PathLike) -> Path:
    """What makes two names the same file: the resolved path of an existing file (links followed), else
    the absolute path as given (a file still to be written)."""
    path = Path(path)
    try:
        return path.resolve(strict=True)
    except OSError:
        return path.absolute()


def file_sha256(path: str | os.PathLike) -> str:
    """``sha256:<hex>`` of a file's bytes, read in chunks: what the file is, wherever it lies (a moved
    or copied file keeps it, an edited one does not).

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_DIGEST_CHUNK), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def check_output_path(
    path: str | os.PathLike, *, overwrite: bool = False, protect: Iterable[str | os.PathLike] = ()
) -> Path:
    """Check that ``path`` may be written: not an input, and not clobbering unless asked.

    Raises:
        OutputError: ``path`` is one of ``protect`` (inputs are never modified), is a folder,
            or exists while ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists():
        for p in protect:
            if Path(p).exists() and os.path.samefile(path, p):
                raise OutputError(f"{path} is an input and would be overwritten; choose another output name or folder")
        if path.is_dir():
            raise OutputError(f"{path} is a folder; give a file name for the output")
        if not overwrite:
            raise OutputError(f"{path} already exists; remove it, choose another output folder, or allow overwriting")
    return path


class OutputGroup:
    """Finished files waiting for their names; see :func:`output_group`."""

    def __init__(self) -> None:
        self._files: list[tuple[BinaryIO, Path | None, Path, bool]] = []

    def keep(self, f: BinaryIO, part: Path | None, path: Path, overwrite: bool) -> None:
        """Hold the finished ``f`` (already flushed) until the group is published."""
        if any(path == held for _, _, held, _ in self._files):
            raise OutputError(f"{path} is written twice in one group of outputs; give each output its own name")
        self._files.append((f, part, path, overwrite))

    def memmap(self, path: str | os.PathLike, dtype: np.dtype | type | str, shape: tuple[int, ...],
               offset: int) -> np.memmap:
        """A read-only view of a finished, not yet published file of this group."""
        for f, _, held, _ in self._files:
            if held == Path(path):
                return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)
        raise OutputError(f"{path} is not a finished output of this group")

    def publish(self) -> list[Path]:
        """Name every file, the first kept last; if one cannot be named, those named are removed."""
        named: list[Path] = []
        try:
            for f, part, path, overwrite in reversed(self._files):
                _publish(f.fileno(), part, path, overwrite)
                named.append(path)
        except BaseException:
            for path in named:
                _unlink_quietly(path)
            raise
        return named[::-1]

    def close(self) -> None:
        """Close every held file; unpublished anonymous files vanish, fallback parts are removed."""
        for f, part, _, _ in self._files:
            f.close()
            if part is not None:
                _unlink_quietly(part)
        self._files.clear()


@contextmanager
def output_group() -> Iterator[OutputGroup]:
    """A group of outputs that appear together when the block ends cleanly, or not at all.

    Pass the group to :func:`atomic_open` (and the writers built on it) as ``group=``.
    """
    group = OutputGroup()
    try:
        yield group
        group.publish()
    finally:
        group.close()


@contextmanager
def atomic_open(
    path: str | os.PathLike, *, overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
    group: OutputGroup | None = None,
) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``path`` only when the ``with`` block ends cleanly
    (with ``group``: when the group ends cleanly).

    The file object is readable and writable and supports ``os.pwrite`` on its descriptor.

    Raises:
        OutputError: the output is not allowed (see :func:`check_output_path`), the folder is
            not writable, or the disk is full; nothing is left behind.
    """
    path = check_output_path(path, overwrite=overwrite, protect=protect)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist; create it or choose another output path")
    fd, part = _open_unnamed(folder, path.name)
    f = os.fdopen(fd, "w+b")
    kept = False
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        if group is not None:
            group.keep(f, part, path, overwrite)
            kept = True
        else:
            _publish(f.fileno(), part, path, overwrite)
    except OSError as e:
        if part is not None:
            _unlink_quietly(part)
        if e.errno in _DISK_FULL:
            raise OutputError(f"cannot write {path}: {e.strerror or e}; free space on that disk or choose "
                              "another output folder (--out)") from e
        raise
    except BaseException:
        if part is not None:
            _unlink_quietly(part)
        raise
    finally:
        if not kept:
            f.close()


def _open_unnamed(folder: Path, name: str) -> tuple[int, Path | None]:
    """Open an anonymous file in ``folder``; return (fd, None), or (fd, part path) as fallback."""
    flags = getattr(os, "O_TMPFILE", 0)
    if flags and _PROC_FD.is_dir():
        try:
            return os.open(folder, flags | os.O_RDWR, 0o666), None
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise _output_error(folder, e) from e
    part = folder / f".{name}.{secrets.token_hex(4)}.part"
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise _output_error(folder, e) from e
    return fd, part


def _publish(fd: int, part: Path | None, path: Path, overwrite: bool) -> None:
    """Give the finished file its final name, without ever exposing a partial file there."""
    if part is None:
        part = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            _link_fd(fd, part)
        except OSError as e:
            raise _output_error(path.parent, e) from e
    try:
        if overwrite:
            os.replace(part, path)
        else:
            os.link(part, path)
    except FileExistsError as e:
        raise OutputError(f"{path} appeared while it was being written; remove it or choose another output") from e
    except OSError as e:
        raise _output_error(path.parent, e) from e
    finally:
        _unlink_quietly(part)


def _link_fd(fd: int, target: Path) -> None:
    """Give an ``O_TMPFILE`` inode a name. A directory fd makes Python call ``linkat`` with
    ``AT_SYMLINK_FOLLOW``, which links the file behind ``/proc/self/fd/N``, not the link."""
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(_PROC_FD / str(fd), target.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _output_error(folder: Path, e: OSError) -> OutputError:
    return OutputError(
        f"cannot write into {folder}: {e.strerror or e}; choose a folder you can write to (--out) or free some space"
    )


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
