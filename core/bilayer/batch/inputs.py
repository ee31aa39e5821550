"""The inputs of a batch run, expanded into one ordered list of tomograms (issue 21).

A run is given any mix of: tomogram files (:data:`bilayer.io.MRC_SUFFIXES`); glob patterns
(``*``, ``?``, ``[``, ``**``), expanded in sorted order; text lists (``.txt``, ``.list`` or
``@file``: one path or glob per line, ``#`` comment lines and blank lines ignored, relative paths
relative to the list's folder); and RELION STAR tomogram lists (a RELION 5 ``tomograms.star`` or
a RELION 3.1/4 micrograph-style list, read by :mod:`bilayer.io.tomogram_list`: names and voxel
sizes as the RELION job reads them, relative paths relative to the project folder ``base``).

Everything is checked before any work starts: every missing file is named in one error, and a
tomogram given twice (the same file, however named) is refused, naming both entries.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bilayer.errors import ConfigError, InputFileError
from bilayer.io.mrc import MRC_SUFFIXES
from bilayer.io.tomogram_list import AUTO, read_tomogram_list

__all__ = ["LIST_SUFFIXES", "STAR_SUFFIX", "BatchInput", "expand_inputs"]

#: Suffixes of text lists (one path or glob per line); any file given as ``@file`` is one too.
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".list")
STAR_SUFFIX = ".star"
_GLOB_CHARS = frozenset("*?[")
_COMMENT = "#"
_MAX_LISTED = 20


@dataclass(frozen=True)
class BatchInput:
    """One tomogram of a batch run.

    Attributes:
        path: the tomogram file (absolute; symbolic links are kept as given).
        name: ``rlnTomoName`` for a RELION 5 tomogram set, else the file's stem.
        voxel_size: Å, from a RELION STAR list; None: take the MRC header's.
        origin: where it was given (``'a.mrc'``, ``tomos.txt line 3``, ``tomograms.star row 2``), for messages.
    """

    path: Path
    name: str
    voxel_size: float | None
    origin: str


def expand_inputs(items: Sequence[str | os.PathLike], *, tomogram_column: str = AUTO,
                  base: str | os.PathLike | None = None) -> list[BatchInput]:
    """Every tomogram named by ``items``, in the order given (see the module docstring).

    Args:
        items: files, globs, text lists (``.txt``, ``.list``, ``@file``) and RELION STAR lists.
        tomogram_column: the STAR file column to take tomograms from; ``auto``: the
            reconstructed tomogram (RELION 5) or ``rlnMicrographName``.
        base: the folder relative items, and relative paths in STAR files, are relative to
            (the RELION project folder for STAR lists); None: the working directory.

    Raises:
        ConfigError: no items were given.
        InputFileError: an item is of no known kind, a list or STAR file is missing or bad, a glob
            matches nothing, files are missing (all named) or a tomogram is given twice.
    """
    if not items:
        raise ConfigError("no tomograms given; give MRC files, globs, a text list or a RELION tomogram STAR file")
    root = Path.cwd() if base is None else Path(os.path.abspath(base))
    found: list[BatchInput] = []
    for item in items:
        found.extend(_expand_item(os.fspath(item), root, tomogram_column))
    _check_missing(found)
    _check_duplicates(found)
    return found


def _expand_item(text: str, root: Path, column: str) -> list[BatchInput]:
    if text.startswith("@"):
        return _read_list(_joined(root, text[1:]))
    path = _joined(root, text)
    suffix = path.suffix.lower()
    if suffix in LIST_SUFFIXES:
        return _read_list(path)
    if suffix == STAR_SUFFIX:
        return _read_star(path, root, column)
    return _expand_path(text, root, repr(text))


def _expand_path(text: str, folder: Path, origin: str) -> list[BatchInput]:
    """A tomogram file or a glob (of a command-line item or a list's line), relative to ``folder``."""
    path = _joined(folder, text)
    if _is_glob(text) and not path.exists():
        return _expand_glob(text, folder, origin)
    if path.suffix.lower() not in MRC_SUFFIXES:
        raise InputFileError(f"{origin}: {text} is not a tomogram ({', '.join(MRC_SUFFIXES)}), a glob, a text "
                             f"list ({', '.join(LIST_SUFFIXES)} or @file) or a RELION tomogram list ({STAR_SUFFIX}); "
                             "give one of those")
    return [BatchInput(path, path.stem, None, origin)]


def _expand_glob(pattern: str, folder: Path, origin: str) -> list[BatchInput]:
    matches = sorted(_joined(folder, m) for m in glob.glob(pattern, root_dir=folder, recursive=True))
    tomograms = [p for p in matches if p.suffix.lower() in MRC_SUFFIXES and p.is_file()]
    if not tomograms:
        raise InputFileError(f"{origin}: the pattern {pattern} matches no tomogram file ({', '.join(MRC_SUFFIXES)}) "
                             f"in {folder}; fix the pattern")
    return [BatchInput(p, p.stem, None, f"{origin} ({p.name})") for p in tomograms]


def _read_list(path: Path) -> list[BatchInput]:
    """The tomograms of a text list: one path or glob per line, relative to the list's folder."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError as e:
        raise InputFileError(f"tomogram list {path} does not exist; give the path of a text file with one "
                             "tomogram (or glob) per line") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"tomogram list {path} cannot be read ({e}); give a text file with one tomogram "
                             "(or glob) per line") from e
    found = []
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if entry and not entry.startswith(_COMMENT):
            found.extend(_expand_path(entry, path.parent, f"{path} line {number}"))
    if not found:
        raise InputFileError(f"tomogram list {path} names no tomograms; give one path or glob per line")
    return found


def _read_star(path: Path, root: Path, column: str) -> list[BatchInput]:
    listed = read_tomogram_list(path, column=column, base=root, require_files=False)
    return [BatchInput(t.path, t.ts_id, t.voxel_size, f"{path} row {t.row + 1} ({t.ts_id})")
            for t in listed.tomograms]


def _check_missing(found: list[BatchInput]) -> None:
    missing = [f"{i.path} ({i.origin})" for i in found if not i.path.is_file()]
    if missing:
        raise InputFileError(f"{len(missing)} tomogram file(s) do not exist: {_listed(missing)}; "
                             "fix the paths or the files")


def _check_duplicates(found: list[BatchInput]) -> None:
    first: dict[Path, BatchInput] = {}
    repeated = []
    for entry in found:
        key = entry.path.resolve()
        if key in first:
            repeated.append(f"{first[key].origin} and {entry.origin} are the same file {key}")
        else:
            first[key] = entry
    if repeated:
        raise InputFileError(f"tomograms given twice: {_listed(repeated, '; ')}; give each tomogram once")


def _is_glob(text: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(text)


def _joined(folder: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else folder / path


def _listed(items: Sequence[str], separator: str = ", ") -> str:
    shown = separator.join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
