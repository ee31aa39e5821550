"""A run is a folder: the run's settings and model, one record per tomogram, and the summary.

A resumable batch run keeps its bookkeeping next to its outputs::

    RUN/bilayer_run.json        the settings and model every tomogram of the run is made with
    RUN/records/<key>.json      one per tomogram, written after its outputs are published
    RUN/summary.json, .csv      rebuilt from the records

A rerun opens the same folder with :func:`open_run`: the same settings continue the run, other
settings are refused unless ``redo`` is given (then every record is marked stale and the work is
done again). :func:`is_done` trusts a record only when it says ``done`` with the run's current
settings hash and every output it names still exists, so a kill at any moment loses nothing and
nothing finished is redone. Every file is written through :func:`bilayer.io.atomic_open`, so it
is complete or absent. Pure bookkeeping over files: no torch.

Above 350 lines: the run record, the per-tomogram records and the summary built from them are one
contract (what "done" means); the summary and table (:func:`write_summary`, :func:`run_table`) are
the part to move out when the module grows.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bilayer import __version__
from bilayer.batch.lock import folder_lock
from bilayer.errors import ConfigError, InputFileError
from bilayer.io import atomic_open, ensure_output_dir

__all__ = [
    "NOT_RECORDED",
    "RUN_FILE",
    "SUMMARY_COLUMNS",
    "RecordStatus",
    "Run",
    "TableRow",
    "TomogramRecord",
    "changed_settings",
    "format_table",
    "is_done",
    "model_id",
    "open_run",
    "read_record",
    "read_records",
    "recorded_settings",
    "run_table",
    "settings_hash",
    "tomogram_key",
    "write_record",
    "write_summary",
]

#: The run record's name inside the run folder.
RUN_FILE = "bilayer_run.json"
_RECORDS = "records"
#: Segmentation options that do not change the outputs, so a continued run may change them.
NOT_RECORDED = ("batch_size", "device")
#: Columns of ``summary.csv``, in order.
SUMMARY_COLUMNS = ("tomogram", "status", "seconds", "membrane_fraction", "outputs", "reason")
_KEY_STEM = 60
_KEY_HASH = 10


class RecordStatus(str, enum.Enum):
    """What a tomogram record says; ``stale`` records were made before a ``redo``."""

    DONE = "done"
    FAILED = "failed"
    STALE = "stale"


@dataclass(frozen=True)
class Run:
    """An opened run folder: its settings, the model's identity and their hash."""

    folder: Path
    settings: dict[str, Any]
    model_id: str
    settings_hash: str

    @property
    def records(self) -> Path:
        """The folder of the per-tomogram records."""
        return self.folder / _RECORDS


@dataclass(frozen=True)
class TomogramRecord:
    """What made one tomogram's outputs, or why it failed.

    ``outputs`` maps an output kind (``mask``, ``scores``...) to its path; relative paths are
    relative to the run folder. ``seconds`` is wall time; ``finished`` an ISO 8601 UTC time.
    """

    tomogram: str
    status: RecordStatus
    settings_hash: str
    model_id: str
    seconds: float = 0.0
    membrane_fraction: float | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    host: str = ""
    finished: str = ""

    @classmethod
    def done(cls, run: Run, tomogram: str | os.PathLike, outputs: Mapping[str, str | os.PathLike], *,
             seconds: float, membrane_fraction: float | None) -> TomogramRecord:
        """A ``done`` record made now on this host with ``run``'s settings."""
        return cls(str(tomogram), RecordStatus.DONE, run.settings_hash, run.model_id, round(float(seconds), 3),
                   None if membrane_fraction is None else float(membrane_fraction),
                   {k: _relative(Path(p), run.folder) for k, p in outputs.items()}, "", socket.gethostname(),
                   _now())

    @classmethod
    def failed(cls, run: Run, tomogram: str | os.PathLike, reason: str, *, seconds: float) -> TomogramRecord:
        """A ``failed`` record with its reason on one line."""
        return cls(str(tomogram), RecordStatus.FAILED, run.settings_hash, run.model_id, round(float(seconds), 3),
                   None, {}, " ".join(str(reason).split()), socket.gethostname(), _now())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {"tomogram": self.tomogram, "status": self.status.value, "settings_hash": self.settings_hash,
                "model_id": self.model_id, "seconds": self.seconds, "membrane_fraction": self.membrane_fraction,
                "outputs": dict(self.outputs), "reason": self.reason, "host": self.host, "finished": self.finished}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TomogramRecord:
        """Inverse of :meth:`to_dict`; raises ``KeyError``/``ValueError`` on a malformed record."""
        return cls(str(data["tomogram"]), RecordStatus(data["status"]), str(data["settings_hash"]),
                   str(data["model_id"]), float(data.get("seconds", 0.0)),
                   None if data.get("membrane_fraction") is None else float(data["membrane_fraction"]),
                   {str(k): str(v) for k, v in dict(data.get("outputs", {})).items()}, str(data.get("reason", "")),
                   str(data.get("host", "")), str(data.get("finished", "")))


@dataclass(frozen=True)
class TableRow:
    """One tomogram of :func:`run_table`: ``status`` is done, failed, running or waiting."""

    tomogram: str
    key: str
    status: str
    seconds: float | None = None
    membrane_fraction: float | None = None
    reason: str = ""


# --- settings and model ---------------------------------------------------------------------------

def recorded_settings(options: Mapping[str, Any], not_recorded: Iterable[str] = NOT_RECORDED) -> dict[str, Any]:
    """The options that change the outputs (e.g. ``SegmentOptions.to_dict()`` less device, batch size)."""
    drop = set(not_recorded)
    return {k: v for k, v in options.items() if k not in drop}


def changed_settings(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The keys, sorted, whose values differ between two settings mappings.

    A missing key reads as ``None``, so an option added later with a ``None`` default continues old runs.
    """
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


def settings_hash(settings: Mapping[str, Any], model_id: str) -> str:
    """A short sha256 of the settings and the model: what a record must match to count as done."""
    text = json.dumps({"settings": settings, "model_id": model_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_id(path: str | os.PathLike | None = None) -> str:
    """``sha256:<hex>`` of a checkpoint file, read in chunks; ``None``: the embedded model's file.

    The model's identity is its bytes, not its path, so a moved checkpoint continues a run.

    Raises:
        InputFileError: the file cannot be read.
    """
    if path is None:
        from bilayer.model.zoo import default_model_path

        path = default_model_path()
    from bilayer.io import file_sha256

    try:
        return file_sha256(path)
    except OSError as e:
        raise InputFileError(f"cannot read the model {path}: {e.strerror or e}; give a readable checkpoint "
                             "with --model") from e


# --- the run record -------------------------------------------------------------------------------

def open_run(run_dir: str | os.PathLike, settings: Mapping[str, Any], model_id: str, *, redo: bool = False) -> Run:
    """Start or continue the run in ``run_dir`` with ``settings`` (JSON-ready) and ``model_id``.

    The first call writes ``RUN/bilayer_run.json``; later calls check it. With ``redo`` the
    record is rewritten and every existing tomogram record is marked stale.

    Raises:
        ConfigError: the settings are not JSON-ready, or the folder's run was made with other
            settings or another model (naming the keys and the fix).
        OutputError: the folder cannot be written.
    """
    folder = ensure_output_dir(run_dir).absolute()
    try:
        now = json.loads(json.dumps(dict(settings), sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"run settings for {folder} are not plain JSON values ({e}); pass to_dict() output") from e
    run = Run(folder, now, str(model_id), settings_hash(now, str(model_id)))
    path = folder / RUN_FILE
    before = _read_json(path) if path.is_file() and not redo else None
    if before is not None and not redo:
        changed = changed_settings({**before.get("settings", {}), "model_id": before.get("model_id")},
                                   {**now, "model_id": run.model_id})
        if changed:
            raise ConfigError(f"{folder} is a run made with other settings ({', '.join(changed)}; see {path}); "
                              "continue it with the same settings, give --redo to redo it, or choose a new folder")
        return run
    _write_json(path, {"bilayer_version": __version__, "settings": now, "model_id": run.model_id,
                       "settings_hash": run.settings_hash, "created": _now()})
    if redo:
        for key, record in read_records(run).items():
            if record.status is not RecordStatus.STALE:
                write_record(run, key, TomogramRecord.from_dict({**record.to_dict(), "status": "stale"}))
    return run


# --- tomogram records -----------------------------------------------------------------------------

def tomogram_key(path: str | os.PathLike) -> str:
    """A safe, unique file name for a tomogram: ``<stem>-<hash>``.

    The stem (file name less its last suffix) keeps letters, digits, ``.``, ``_`` and ``-``;
    other characters become ``_``, leading dots are dropped and it is cut at 60 characters.
    The first 10 hex digits of the sha256 of the resolved absolute path are always appended,
    so two ``t.mrc`` in different folders differ and a key never depends on the other inputs
    of the run (a rerun with more tomograms keeps every key).
    """
    p = Path(path)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", p.stem).lstrip(".")[:_KEY_STEM] or "tomogram"
    digest = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:_KEY_HASH]
    return f"{stem}-{digest}"


def write_record(run: Run, key: str, record: TomogramRecord) -> Path:
    """Write ``RUN/records/<key>.json`` atomically (after the tomogram's outputs are published)."""
    return _write_json(ensure_output_dir(run.records) / f"{key}.json", record.to_dict())


def read_record(run: Run, key: str) -> TomogramRecord | None:
    """The record of ``key``, or ``None`` when there is none or it cannot be read (then: not done)."""
    path = run.records / f"{key}.json"
    if not path.is_file():
        return None
    try:
        return TomogramRecord.from_dict(_read_json(path))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def read_records(run: Run) -> dict[str, TomogramRecord]:
    """Every readable record of the run, by key, in key order."""
    if not run.records.is_dir():
        return {}
    found = ((p.stem, read_record(run, p.stem)) for p in sorted(run.records.glob("*.json")))
    return {key: record for key, record in found if record is not None}


def is_done(run: Run, key: str) -> bool:
    """True only when ``key``'s record says done with the run's settings hash and all its outputs exist."""
    return _done(run, read_record(run, key))


# --- summary and table ----------------------------------------------------------------------------

def write_summary(run: Run) -> tuple[Path, Path]:
    """Rebuild ``RUN/summary.json`` and ``RUN/summary.csv`` from the records; returns their paths.

    A record counts as ``done`` only when :func:`is_done` would say so, ``failed`` when it failed
    with the run's settings; anything else (made before a redo, outputs gone) is ``stale``.
    The records are read under the run folder's lock, so the last writer writes the newest summary.
    """
    with folder_lock(run.folder):  # a stale copy must not overwrite a newer one
        rows = []
        for key, record in sorted(read_records(run).items(), key=lambda kv: (kv[1].tomogram, kv[0])):
            rows.append({"tomogram": record.tomogram, "key": key, "status": _summary_status(run, record),
                         "seconds": record.seconds, "membrane_fraction": record.membrane_fraction,
                         "outputs": record.outputs, "reason": record.reason})
        counts = {s.value: sum(r["status"] == s.value for r in rows) for s in RecordStatus}
        json_path = _write_json(run.folder / "summary.json", {
            "run": str(run.folder), "settings_hash": run.settings_hash, "model_id": run.model_id,
            "counts": counts, "tomograms": rows})
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for r in rows:
            writer.writerow([r["tomogram"], r["status"], r["seconds"],
                             "" if r["membrane_fraction"] is None else r["membrane_fraction"],
                             ";".join(r["outputs"].values()), r["reason"]])
        csv_path = run.folder / "summary.csv"
        with atomic_open(csv_path, overwrite=True) as f:
            f.write(text.getvalue().encode())
        return json_path, csv_path


def run_table(run: Run, tomograms: Sequence[str | os.PathLike],
              claim_state: Callable[[str], str] | None = None) -> list[TableRow]:
    """One row per tomogram, in the given order: done, failed, running or waiting.

    Args:
        claim_state: key -> ``"free"``, ``"held"`` or ``"stale"`` (the claims of the run); a held
            claim on an unfinished tomogram makes it ``running``. Without it nothing is running.
    """
    rows = []
    for tomogram in tomograms:
        key = tomogram_key(tomogram)
        record = read_record(run, key)
        if _done(run, record):
            status = "done"
        elif claim_state is not None and claim_state(key) == "held":
            status = "running"
        elif record is not None and _summary_status(run, record) == RecordStatus.FAILED.value:
            status = "failed"
        else:
            status = "waiting"
        kept = record is not None and status in ("done", "failed")
        rows.append(TableRow(str(tomogram), key, status, record.seconds if kept else None,
                             record.membrane_fraction if kept else None, record.reason if kept else ""))
    return rows


def format_table(rows: Sequence[TableRow]) -> str:
    """The rows as aligned text for the terminal, with a closing line of counts."""
    head = ("tomogram", "status", "seconds", "membrane", "reason")
    body = [(r.tomogram, r.status, "" if r.seconds is None else f"{r.seconds:.1f}",
             "" if r.membrane_fraction is None else f"{r.membrane_fraction:.4f}", r.reason) for r in rows]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths)), line[-1]]).rstrip() for line in (head, *body)]
    counts = {s: sum(r.status == s for r in rows) for s in ("done", "failed", "running", "waiting")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


# --- helpers --------------------------------------------------------------------------------------

def _done(run: Run, record: TomogramRecord | None) -> bool:
    return (record is not None and record.status is RecordStatus.DONE and record.settings_hash == run.settings_hash
            and all(_absolute(p, run.folder).is_file() for p in record.outputs.values()))


def _summary_status(run: Run, record: TomogramRecord) -> str:
    if _done(run, record):
        return RecordStatus.DONE.value
    if record.status is RecordStatus.FAILED and record.settings_hash == run.settings_hash:
        return RecordStatus.FAILED.value
    return RecordStatus.STALE.value


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to the run folder when inside it (a moved run stays whole), else absolute."""
    full = path if path.is_absolute() else Path.cwd() / path
    try:
        return str(full.relative_to(folder.absolute()))
    except ValueError:
        return str(full)


def _absolute(path: str, folder: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else folder / p


def _now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}); remove it, or choose a new run folder") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a run record; remove it, or choose a new run folder")
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> Path:
    with atomic_open(path, overwrite=True) as f:
        f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path
