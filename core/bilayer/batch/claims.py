"""Per-tomogram claims: lock files that let several processes or nodes share one run folder.

A claim is the file ``<run>/claims/<key>.claim``, made with ``O_CREAT | O_EXCL`` (atomic on local
file systems and NFSv3+), holding JSON ``{host, pid, started, token}``. While the holder works, a
daemon thread refreshes the file's mtime every ``heartbeat`` seconds, so any node can tell a live
claim from a dead one without seeing the holder's process. A claim is stale when its mtime is older
than ``stale_after`` seconds, or at once when its holder ran on this host and its pid is gone (kill -9).

Taking a claim away (breaking a stale one, or releasing one's own) is race-free: the claim is renamed
to a unique tombstone (only one renamer succeeds), the tombstone's token is compared with the claim
that was judged, and a claim that turns out to be someone else's is linked back without clobbering.
A holder whose claim was broken notices at its next heartbeat (:attr:`Claim.held` turns false).

Clocks: ages compare the file's mtime with this host's clock, so nodes need clocks within a small
part of ``stale_after`` (NTP gives milliseconds; the default is 300 s).

Just above 350 lines, most of it the race-free breaking and releasing, which belong together.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Self

from bilayer.checks import number
from bilayer.errors import OutputError

__all__ = ["Claim", "ClaimInfo", "ClaimState", "claim_key", "claim_path", "claim_state", "read_claim", "try_claim"]

log = logging.getLogger(__name__)

CLAIMS_FOLDER = "claims"
_SUFFIX = ".claim"
_TOMB = ".tomb"
_BREAKING = ".breaking"
_SAFE = re.compile(r"[A-Za-z0-9._-]")
_MAX_NAME = 100
_ATTEMPTS = 4
_HOST = socket.gethostname()  # a module name, so tests can play a second node


class ClaimState(str, Enum):
    """What a status table shows for one tomogram's claim."""

    FREE = "free"
    HELD = "held"
    STALE = "stale"


@dataclass(frozen=True)
class ClaimInfo:
    """Who holds a claim: ``host``, ``pid``, ``started`` (Unix seconds) and ``age`` (seconds since the
    last heartbeat). ``host``/``pid``/``started`` are empty/0 while the claimant is still writing them."""

    host: str
    pid: int
    started: float
    age: float
    token: str


def claim_key(name: str) -> str:
    """A safe file name for the tomogram ``name``, unique per name.

    A name made only of ``[A-Za-z0-9._-]`` (not starting with a dot, at most 100 characters) is its
    own key. Any other name has its other characters replaced by ``_``, is cut to 80 characters and
    gets ``+`` and 16 hex digits of its BLAKE2 hash: ``+`` never occurs in a key that is the name
    itself, and two different names share a hash with chance 2**-64, so keys do not collide.
    (On a case-insensitive file system, names that differ only in case share one claim: safe, only slower.)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tomogram name must be a non-empty string, not {name!r}")
    if len(name) <= _MAX_NAME and not name.startswith(".") and all(_SAFE.match(c) for c in name):
        return name
    safe = "".join(c if _SAFE.match(c) else "_" for c in name)[:80].lstrip(".")
    return f"{safe}+{hashlib.blake2b(name.encode('utf-8', 'surrogatepass'), digest_size=8).hexdigest()}"


def claim_path(run_dir: str | os.PathLike, key: str) -> Path:
    """``<run_dir>/claims/<claim_key(key)>.claim``."""
    return Path(run_dir) / CLAIMS_FOLDER / f"{claim_key(key)}{_SUFFIX}"


@dataclass(frozen=True)
class _Snapshot:
    """A claim file as read at one moment: its holder (``None`` while unwritten) and file identity."""

    info: ClaimInfo | None
    mtime: float
    ino: int

    def identity(self) -> tuple[Any, ...]:
        return (self.info.token,) if self.info else ("unwritten", self.ino)


def _snapshot(path: Path) -> _Snapshot | None:
    """Read the claim at ``path``; ``None`` when there is none."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(4096)
    except FileNotFoundError:
        return None
    age = max(0.0, time.time() - st.st_mtime)
    try:
        d = json.loads(raw)
        info = ClaimInfo(str(d["host"]), int(d["pid"]), float(d["started"]), age, str(d["token"]))
    except (ValueError, KeyError, TypeError):
        info = None  # created but not yet written (or a claimant killed in between): judged by age alone
    return _Snapshot(info, st.st_mtime, st.st_ino)


def _pid_dead(pid: int) -> bool:
    """True only when this host certainly has no process ``pid`` (POSIX; elsewhere: unknown)."""
    if os.name != "posix" or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, someone else's
        return False
    return False


def _is_stale(snap: _Snapshot, stale_after: float) -> bool:
    if time.time() - snap.mtime > stale_after:
        return True
    return snap.info is not None and snap.info.host == _HOST and snap.info.pid != os.getpid() and _pid_dead(
        snap.info.pid)


def _take_away(path: Path, identity: tuple[Any, ...]) -> bool:
    """Remove the claim at ``path`` only if it is still the one with ``identity``; True if removed.

    Rename it to a unique tombstone first (atomic: of two takers only one gets the file), then look:
    if the tombstone is another claim than the one judged, link it back (``os.link`` never clobbers).
    """
    tomb = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_TOMB}")
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return False
    taken = _snapshot(tomb)
    if taken is not None and taken.identity() == identity:
        tomb.unlink(missing_ok=True)
        return True
    try:
        os.link(tomb, path)
    except FileExistsError:
        log.warning("claim %s was replaced while being checked; %s keeps the displaced one", path, tomb.name)
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        os.rename(tomb, path)  # no hard links on this file system: put it back by rename
        return False
    tomb.unlink(missing_ok=True)
    return False


def _create(path: Path, token: str) -> bool:
    """Make the claim (or breaking marker) file with O_EXCL and write/fsync its JSON; False if it exists."""
    body = json.dumps({"host": _HOST, "pid": os.getpid(), "started": time.time(), "token": token}).encode()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as e:
        raise OutputError(f"cannot write claims in {path.parent}: {e.strerror or e}; "
                          "use a run folder (--out) on storage you can write to") from e
    try:
        os.write(fd, body)
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise OutputError(f"cannot write claim {path}: {e.strerror or e}; free space or choose another --out") from e
    os.close(fd)
    return True


def _break(path: Path, judged: _Snapshot, stale_after: float) -> bool:
    """Remove the claim at ``path`` judged stale as ``judged``; True if removed.

    Breakers take turns through the marker ``<key>.claim.breaking`` (O_EXCL) and look again while they
    hold it, so a breaker that judged an old claim never removes the new claim another breaker made:
    under the marker only the claim's own holder can change it. A marker left by a killed breaker is
    itself stale after ``stale_after`` (or at once on this host) and is removed the same way.
    """
    marker = path.with_name(f"{path.name}{_BREAKING}")
    token = uuid.uuid4().hex
    if not _create(marker, token):
        left = _snapshot(marker)
        if left is not None and _is_stale(left, stale_after):
            _take_away(marker, left.identity())
        return False  # another breaker is at work; its claim (if any) wins
    try:
        now = _snapshot(path)
        if now is None or now.identity() != judged.identity() or not _is_stale(now, stale_after):
            return False
        return _take_away(path, judged.identity())
    finally:
        _take_away(marker, (token,))


class Claim:
    """One tomogram held by this process. Use as a context manager: entering starts the heartbeat,
    leaving (also on an exception or KeyboardInterrupt) stops it and releases the claim.

    After kill -9 nothing runs; the claim goes stale by itself (at once for processes on this host).
    """

    def __init__(self, path: Path, token: str, *, heartbeat: float) -> None:
        self.path = path
        self.token = token
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """False once the claim was found broken or replaced (checked at each heartbeat and here)."""
        if self._lost.is_set():
            return False
        snap = _snapshot(self.path)
        if snap is None or snap.info is None or snap.info.token != self.token:
            self._lost.set()
            return False
        return True

    def start(self) -> Self:
        """Start the heartbeat thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name=f"claim {self.path.name}", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if not self.held:
                log.warning("claim %s was taken over by another process; stop writing its outputs", self.path)
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self._lost.set()
            except OSError as e:  # a network blip: try again at the next beat
                log.warning("cannot refresh claim %s: %s", self.path, e)

    def stop(self) -> None:
        """Stop the heartbeat thread and wait for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def release(self) -> bool:
        """Stop the heartbeat and remove the claim if it is still ours; True if it was removed."""
        self.stop()
        self._lost.set()
        snap = _snapshot(self.path)
        if snap is None or snap.info is None or snap.info.token != self.token:
            return False  # not ours (any more): leave it alone
        return _take_away(self.path, (self.token,))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Claim({str(self.path)!r}, token={self.token!r})"


def _check_times(heartbeat: float, stale_after: float) -> tuple[float, float]:
    heartbeat = number("heartbeat", heartbeat, 0.0, open_low=True)
    stale_after = number("stale_after", stale_after, 2 * heartbeat)
    return heartbeat, stale_after


def _claims_folder(run_dir: str | os.PathLike) -> Path:
    folder = Path(run_dir) / CLAIMS_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the claims folder {folder}: {e.strerror or e}; "
                          "use a run folder (--out) on storage you can write to") from e
    return folder


def try_claim(run_dir: str | os.PathLike, key: str, *, heartbeat: float = 30.0,
              stale_after: float = 300.0) -> Claim | None:
    """Claim the tomogram ``key`` in the run folder ``run_dir``, breaking a stale claim if there is one.

    Args:
        run_dir: the run folder, shared by all workers (local disk or NFS).
        key: the tomogram's name (any string; the file name is :func:`claim_key` of it).
        heartbeat: seconds between mtime refreshes while the claim is held.
        stale_after: seconds without a refresh after which a claim counts as abandoned
            (at least twice ``heartbeat``).

    Returns:
        A :class:`Claim` (not yet beating: use it in a ``with`` block), or ``None`` when another live
        process holds the tomogram.

    Raises:
        OutputError: the claims folder cannot be created or written to.
        ConfigError: ``heartbeat`` or ``stale_after`` out of range.
    """
    heartbeat, stale_after = _check_times(heartbeat, stale_after)
    path = _claims_folder(run_dir) / f"{claim_key(key)}{_SUFFIX}"
    token = uuid.uuid4().hex
    for _ in range(_ATTEMPTS):
        if _create(path, token):
            return Claim(path, token, heartbeat=heartbeat)
        snap = _snapshot(path)
        if snap is None:
            continue  # released in between: try again
        if not _is_stale(snap, stale_after):
            return None
        if _break(path, snap, stale_after):
            who = f"{snap.info.host} pid {snap.info.pid}" if snap.info else "an unwritten claim"
            log.info("broke the stale claim of %s on %s", who, key)
    return None


def read_claim(run_dir: str | os.PathLike, key: str) -> ClaimInfo | None:
    """The holder of ``key``'s claim, or ``None`` when there is no claim (or it is not yet written)."""
    snap = _snapshot(claim_path(run_dir, key))
    return snap.info if snap else None


def claim_state(run_dir: str | os.PathLike, key: str, stale_after: float = 300.0) -> ClaimState:
    """``free`` (no claim), ``held`` (a live holder) or ``stale`` (abandoned) for the tomogram ``key``."""
    stale_after = number("stale_after", stale_after, 0.0, open_low=True)
    snap = _snapshot(claim_path(run_dir, key))
    if snap is None:
        return ClaimState.FREE
    return ClaimState.STALE if _is_stale(snap, stale_after) else ClaimState.HELD
