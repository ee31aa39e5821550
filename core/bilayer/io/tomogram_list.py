"""Tomogram lists in RELION STAR files: which tomograms, their names and voxel sizes.

Two kinds of list are read:

* a RELION 5 **tomogram set** (``tomograms.star``): a ``data_global`` table with one row per
  tomogram, ``rlnTomoName``, a tomogram file column (``rlnTomoReconstructedTomogram``, the
  half tomograms or a denoised one) and the voxel size as ``rlnTomoTiltSeriesPixelSize`` ×
  ``rlnTomoTomogramBinning``;
* a RELION 3.1/4 **micrograph-style** list: ``rlnMicrographName`` pointing at tomogram MRCs,
  with the pixel size in the row or in its optics group (``data_optics``), else in the MRC header.

Every value is kept as the text it was written with, so a table written back (:func:`star_text`)
is the input table, unchanged, plus new columns. Paths in STAR files are relative to the RELION
project folder (the working directory RELION runs jobs in; ``base`` here) or absolute. The RELION
adapter (``bilayer_relion.star``) re-exports these names; the batch inputs read lists with them.
"""

from __future__ import annotations

import enum
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import starfile

from bilayer import __version__
from bilayer.errors import ConfigError, InputFileError

__all__ = [
    "AUTO",
    "MICROGRAPH_NAME",
    "MICROGRAPH_PIXEL_SIZE",
    "OPTICS_GROUP",
    "TILT_SERIES_PIXEL_SIZE",
    "TOMOGRAM_BINNING",
    "TOMOGRAM_COLUMNS",
    "TOMO_NAME",
    "ListKind",
    "Tomogram",
    "TomogramList",
    "check_files",
    "read_tomogram_list",
    "star_text",
]

TOMO_NAME = "rlnTomoName"
MICROGRAPH_NAME = "rlnMicrographName"
TILT_SERIES_PIXEL_SIZE = "rlnTomoTiltSeriesPixelSize"
TOMOGRAM_BINNING = "rlnTomoTomogramBinning"
MICROGRAPH_PIXEL_SIZE = "rlnMicrographPixelSize"
OPTICS_GROUP = "rlnOpticsGroup"
#: Tomogram file columns of a RELION 5 tomogram set, in the order ``auto`` tries them.
TOMOGRAM_COLUMNS = (
    "rlnTomoReconstructedTomogram",
    "rlnTomoReconstructedTomogramDenoised",  # RELION 5's cryoCARE job
    "rlnTomoDenoisedTomogram",
    "rlnTomoReconstructedTomogramHalf1",
    "rlnTomoReconstructedTomogramHalf2",
)
#: Column choice that picks the first tomogram column present.
AUTO = "auto"
_NO_FILE = ("", "N/A", "None")  # what RELION writes where a tomogram has no such file
_VERSION = re.compile(r"^#\s*version\s+(\d+)")
_DEFAULT_VERSION = "30001"
_MAX_LISTED = 20


class ListKind(str, enum.Enum):
    """Which kind of tomogram list a STAR file is."""

    TOMOGRAM_SET = "RELION 5 tomogram set"
    MICROGRAPHS = "micrograph-style list"


@dataclass(frozen=True)
class Tomogram:
    """One tomogram of a list.

    Attributes:
        ts_id: the tomogram's name (``rlnTomoName``, or the file's stem in a micrograph list).
        path: the file, as the STAR file gives it (relative to the project folder or absolute),
            joined to ``base`` where the list was read with one.
        voxel_size: Å, from the STAR file (or the override); None: take the MRC header's.
        row: the tomogram's row in the table.
    """

    ts_id: str
    path: Path
    voxel_size: float | None
    row: int


@dataclass(frozen=True)
class TomogramList:
    """The tomograms of a STAR file, and the file's tables as text to write back.

    Attributes:
        source: the STAR file.
        kind: a RELION 5 tomogram set or a micrograph-style list.
        block: the name of the table that lists the tomograms.
        column: the file column the tomograms were taken from.
        tomograms: one entry per row of that table.
        blocks: every table of the file, all values as text.
        version: the RELION STAR version written in the file (e.g. ``"50001"``).
        base: the project folder relative paths were joined to; None: the working directory.
    """

    source: Path
    kind: ListKind
    block: str
    column: str
    tomograms: tuple[Tomogram, ...]
    blocks: dict[str, Any] = field(repr=False)
    version: str = _DEFAULT_VERSION
    base: Path | None = None

    @property
    def table(self) -> pd.DataFrame:
        """The table listing the tomograms (text values)."""
        return self.blocks[self.block]

    def paths(self, column: str, what: str) -> list[Path]:
        """The files named in ``column``, one per tomogram, checked to exist.

        Raises:
            InputFileError: the column is missing, a row names no file, or files are missing
                (all of them are listed).
        """
        if column not in self.table.columns:
            raise InputFileError(f"{self.source} has no {column} column in data_{self.block}; add the {what} "
                                 f"there (one per tomogram) or name the column that lists them")
        values = [str(v) for v in self.table[column]]
        empty = [t.ts_id for t, v in zip(self.tomograms, values) if v.strip() in _NO_FILE]
        if empty:
            raise InputFileError(f"{self.source}: {_listed(empty)} {'has' if len(empty) == 1 else 'have'} no "
                                 f"{column}; give every tomogram its {what} or leave those tomograms out")
        paths = [_joined(self.base, v) for v in values]
        check_files(paths, what, self.source, base=self.base)
        return paths

    def with_columns(self, columns: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        """Every table of the file, with ``columns`` (one value per tomogram) added to the
        tomogram table (replacing columns of the same name)."""
        table = self.table.copy()
        for name, values in columns.items():
            if len(values) != len(table):
                raise ConfigError(f"column {name} has {len(values)} values for {len(table)} tomograms")
            table[name] = [str(v) for v in values]
        return {**self.blocks, self.block: table}


def read_tomogram_list(path: str | os.PathLike, *, column: str = AUTO, voxel_size: float | None = None,
                       base: str | os.PathLike | None = None, require_files: bool = True,
                       voxel_size_option: str = "--voxel-size") -> TomogramList:
    """Read the tomograms listed in a RELION STAR file (see the module docstring).

    Args:
        path: the STAR file.
        column: the file column to take tomograms from; ``auto``: the first of
            :data:`TOMOGRAM_COLUMNS` present, or ``rlnMicrographName``.
        voxel_size: Å, for every tomogram, replacing what the STAR file says.
        base: the project folder relative paths in the file are joined to; None: leave them
            relative (to the working directory, where RELION runs its jobs).
        require_files: check that every tomogram file exists (a caller checking many lists at
            once checks them itself, to list every missing file in one error).
        voxel_size_option: the caller's option that gives the voxel size, named in errors.

    Raises:
        InputFileError: the file is missing or not a STAR file, lists no tomograms, misses a
            column, has bad pixel sizes, or names files that do not exist (all listed).
    """
    source = Path(path)
    root = None if base is None else Path(base)
    blocks, version = _read_text_tables(source)
    block, kind = _find_table(source, blocks)
    table = blocks[block]
    column = _file_column(source, block, table, kind, column)
    names = _names(source, block, table, kind, column)
    sizes = (_voxel_sizes(source, block, table, kind, blocks, names, voxel_size_option) if voxel_size is None
             else [voxel_size] * len(names))
    tomograms = tuple(Tomogram(name, _joined(root, file), size, row)
                      for row, (name, file, size) in enumerate(zip(names, table[column], sizes)))
    found = TomogramList(source, kind, block, column, tomograms, blocks, version, root)
    if require_files:
        found.paths(column, "tomogram")
    return found


def check_files(paths: Iterable[Path], what: str, source: Path, *, base: Path | None = None) -> None:
    """Raise one :class:`InputFileError` listing every file of ``paths`` that does not exist
    (relative ones looked for in the working directory; ``base`` names the project folder they
    were joined to, for the message)."""
    missing = sorted({str(p) for p in paths if not Path(p).is_file()})
    if missing:
        folder = Path.cwd() if base is None else base
        raise InputFileError(f"{source} names {len(missing)} {what} file(s) that do not exist: {_listed(missing)} "
                             f"(paths are relative to the project folder {folder}); fix the paths or the files")


def star_text(blocks: Mapping[str, Any], version: str = _DEFAULT_VERSION) -> str:
    """STAR text of ``blocks`` (tables as DataFrames, single-value blocks as dicts), each preceded
    by RELION's ``# version`` line, as RELION writes them."""
    parts = [f"# Written by Bilayer {__version__}\n"]
    for name, block in blocks.items():
        text = starfile.to_string({name: block})
        body = "\n".join(line for line in text.splitlines() if not line.startswith("# Created by the starfile"))
        parts.append(f"\n# version {version}\n\n{body.strip()}\n\n")
    return "".join(parts)


def _read_text_tables(source: Path) -> tuple[dict[str, Any], str]:
    """Every table of ``source`` with every value as text, and its ``# version``."""
    if not source.is_file():
        raise InputFileError(f"STAR file {source} does not exist (in {Path.cwd()}); give the path of a "
                             "tomogram list")
    try:
        first = starfile.read(source, always_dict=True)
        names = sorted({str(c) for b in first.values() for c in (b.columns if isinstance(b, pd.DataFrame) else b)})
        blocks = dict(starfile.read(source, always_dict=True, parse_as_string=names))
        head = source.read_text(errors="replace").splitlines()[:50]
    except Exception as e:  # starfile and pandas raise many kinds on a damaged file
        raise InputFileError(f"{source} is not a readable STAR file ({type(e).__name__}: {e}); "
                             "give a STAR file written by RELION") from e
    version = next((m.group(1) for m in map(_VERSION.match, head) if m), _DEFAULT_VERSION)
    return blocks, version


def _find_table(source: Path, blocks: dict[str, Any]) -> tuple[str, ListKind]:
    for key, kind in ((TOMO_NAME, ListKind.TOMOGRAM_SET), (MICROGRAPH_NAME, ListKind.MICROGRAPHS)):
        for name, block in blocks.items():
            if isinstance(block, dict) and key in block:  # a one-tomogram file written without loop_
                blocks[name] = block = pd.DataFrame({k: [str(v)] for k, v in block.items()})
            if isinstance(block, pd.DataFrame) and key in block.columns:
                if block.empty:
                    raise InputFileError(f"{source} lists no tomograms (data_{name} is empty); give a list with "
                                         "at least one tomogram")
                return name, kind
    raise InputFileError(f"{source} lists no tomograms: expected a RELION 5 tomogram set (data_global with "
                         f"{TOMO_NAME} and {TOMOGRAM_COLUMNS[0]}) or a micrograph-style list ({MICROGRAPH_NAME})")


def _file_column(source: Path, block: str, table: pd.DataFrame, kind: ListKind, column: str) -> str:
    if column != AUTO:
        if column not in table.columns:
            raise InputFileError(f"{source} has no {column} column in data_{block}; choose one of "
                                 f"{', '.join(map(str, table.columns))}, or {AUTO}")
        return column
    candidates = TOMOGRAM_COLUMNS if kind is ListKind.TOMOGRAM_SET else (MICROGRAPH_NAME,)
    found = next((c for c in candidates if c in table.columns), None)
    if found is None:
        raise InputFileError(f"{source} has no tomogram file column ({', '.join(candidates)}) in data_{block}; "
                             "RELION 4 tomogram sets do not list reconstructed tomograms: give a RELION 5 "
                             f"tomogram set or a micrograph-style list ({MICROGRAPH_NAME})")
    return found


def _names(source: Path, block: str, table: pd.DataFrame, kind: ListKind, column: str) -> list[str]:
    if kind is ListKind.TOMOGRAM_SET:
        names = [str(v) for v in table[TOMO_NAME]]
    else:
        names = [Path(str(v)).stem for v in table[column]]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputFileError(f"{source} lists {_listed(repeated)} more than once in data_{block}; "
                             "give each tomogram once")
    return names


def _voxel_sizes(source: Path, block: str, table: pd.DataFrame, kind: ListKind, blocks: dict[str, Any],
                 names: list[str], option: str) -> list[float | None]:
    """Per tomogram: Å from the STAR file, or None where the MRC header must say."""
    if kind is ListKind.TOMOGRAM_SET:
        absent = [c for c in (TILT_SERIES_PIXEL_SIZE, TOMOGRAM_BINNING) if c not in table.columns]
        if absent:
            raise InputFileError(f"{source} has no {' or '.join(absent)} column in data_{block}: a RELION 5 "
                                 f"tomogram set gives the voxel size as {TILT_SERIES_PIXEL_SIZE} × "
                                 f"{TOMOGRAM_BINNING}; add the column(s) or give the voxel size ({option})")
        pixel = [_number(source, n, TILT_SERIES_PIXEL_SIZE, v, option) for n, v in zip(names, table[TILT_SERIES_PIXEL_SIZE])]
        binning = [_number(source, n, TOMOGRAM_BINNING, v, option) for n, v in zip(names, table[TOMOGRAM_BINNING])]
        return [p * b for p, b in zip(pixel, binning)]
    if MICROGRAPH_PIXEL_SIZE in table.columns:
        return [_number(source, n, MICROGRAPH_PIXEL_SIZE, v, option) for n, v in zip(names, table[MICROGRAPH_PIXEL_SIZE])]
    optics = blocks.get("optics")
    if OPTICS_GROUP not in table.columns or not isinstance(optics, pd.DataFrame) \
            or not {OPTICS_GROUP, MICROGRAPH_PIXEL_SIZE} <= set(optics.columns):
        return [None] * len(names)
    by_group = dict(zip(optics[OPTICS_GROUP].astype(str), optics[MICROGRAPH_PIXEL_SIZE]))
    unknown = sorted({str(g) for g in table[OPTICS_GROUP] if str(g) not in by_group})
    if unknown:
        raise InputFileError(f"{source}: optics group(s) {', '.join(unknown)} of data_{block} are not in "
                             "data_optics; add them there")
    return [_number(source, n, MICROGRAPH_PIXEL_SIZE, by_group[str(g)], option) for n, g in zip(names, table[OPTICS_GROUP])]


def _number(source: Path, name: str, column: str, text: Any, option: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputFileError(f"{source}: {column} of {name} is {text!r}, not a positive number; fix the STAR file "
                             f"or give the voxel size ({option})")
    return value


def _joined(base: Path | None, text: Any) -> Path:
    path = Path(str(text))
    return path if base is None or path.is_absolute() else base / path


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
