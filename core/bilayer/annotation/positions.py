"""Patch centres: read from a CSV or RELION STAR file or one ``x,y,z``, and written back.

Positions are voxel indices of the tomogram counted from 0, given as x, y, z (MemBrain-seg's
``extract_patches`` CSV: one ``x,y,z`` per line, no header; IMOD's ``model2point`` text with
spaces works too) and held internally as (z, y, x). Read:

- CSV or text: comma- or whitespace-separated; a first line that is not numbers is a header,
  which must then name columns ``x``, ``y``, ``z``; without a header the first three columns are
  x, y, z. Lines starting with ``#`` are comments.
- RELION STAR: ``rlnCoordinateX/Y/Z`` in voxels of the tomogram (RELION 3/4 picks, Dynamo and
  Warp exports), optionally with ``rlnTomoName`` to choose one tomogram's rows.

Fractional positions are rounded to the nearest voxel. Written: a CSV without a header (which
MemBrain-seg's ``extract_patches`` reads too) or a STAR file, by the file's ending.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from bilayer.errors import ConfigError, InputFileError
from bilayer.io import atomic_open

__all__ = ["STAR_COLUMNS", "parse_position", "read_positions", "write_positions"]

#: RELION's position columns, x, y, z, in voxels of the tomogram.
STAR_COLUMNS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_TOMO_NAME = "rlnTomoName"
_RELION5_COLUMNS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_position(text: str) -> tuple[int, int, int]:
    """One ``"x,y,z"`` (voxels, from 0) as (z, y, x).

    Raises:
        ConfigError: not three numbers separated by commas.
    """
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3 or not all(_NUMBER.match(f) for f in fields):
        raise ConfigError(f"position {text!r} is not x,y,z; give three numbers in voxels, e.g. 120,88,40")
    x, y, z = (_voxel(float(f)) for f in fields)
    return z, y, x


def read_positions(path: str | os.PathLike, *, tomo_name: str | None = None,
                   fallback_name: str | None = None) -> np.ndarray:
    """The patch centres listed in ``path`` (CSV/text or ``.star``), as an (n, 3) int64 array of (z, y, x).

    Args:
        tomo_name: with a STAR file holding ``rlnTomoName``, keep this tomogram's rows (needed
            when the file lists several tomograms).
        fallback_name: without ``tomo_name``, the name to use when the file lists several
            tomograms and this is one of them (the tomogram file's stem, say).

    Raises:
        InputFileError: the file is missing or unreadable, lists no position, or a row is not
            three numbers; the message names the file (and line) and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path} does not exist; give a CSV (x,y,z per line) or STAR file of patch centres, "
                             "or one position as x,y,z")
    xyz = _read_star(path, tomo_name, fallback_name) if path.suffix.lower() == ".star" else _read_text(path)
    if len(xyz) == 0:
        raise InputFileError(f"{path} lists no positions; add one x,y,z (voxels) per line")
    if not np.isfinite(xyz).all():
        raise InputFileError(f"{path} holds a position that is not a finite number; fix that row")
    return np.rint(xyz[:, ::-1]).astype(np.int64)


def write_positions(path: str | os.PathLike, centres: Sequence[Sequence[int]] | np.ndarray, *,
                    tomo_name: str | None = None, overwrite: bool = False,
                    protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Write (z, y, x) ``centres`` to ``path`` atomically: a STAR file (``rlnCoordinateX/Y/Z``, and
    ``rlnTomoName`` when given) for a ``.star`` ending, else a CSV of ``x,y,z`` lines without header.

    Raises:
        OutputError: ``path`` exists (without ``overwrite``), is an input, or cannot be written.
    """
    path = Path(path)
    zyx = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    if path.suffix.lower() == ".star":
        import pandas as pd
        import starfile

        table = pd.DataFrame({name: zyx[:, 2 - i] for i, name in enumerate(STAR_COLUMNS)})
        if tomo_name is not None:
            table.insert(0, _TOMO_NAME, tomo_name)
        text = starfile.to_string({"particles": table})
    else:
        text = "".join(f"{x},{y},{z}\n" for z, y, x in zyx.tolist())
    with atomic_open(path, overwrite=overwrite, protect=protect) as f:
        f.write(text.encode())
    return path


def _voxel(value: float) -> int:
    return int(np.rint(value))


def _read_text(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFileError(f"cannot read {path} as text ({e}); give a CSV of x,y,z lines") from e
    rows = [(n, _fields(line)) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]
    columns = [0, 1, 2]
    if rows and not all(_NUMBER.match(f) for f in rows[0][1]):
        header = [f.lower() for f in rows[0][1]]
        if not {"x", "y", "z"} <= set(header):
            raise InputFileError(f"{path} line {rows[0][0]}: the header {', '.join(rows[0][1])} names no x, y, z "
                                 "columns; name them x, y, z or leave the header out")
        columns = [header.index(axis) for axis in "xyz"]
        rows = rows[1:]
    xyz = []
    for n, fields in rows:
        picked = [fields[c] for c in columns if c < len(fields)]
        if len(picked) < 3 or not all(_NUMBER.match(f) for f in picked):
            raise InputFileError(f"{path} line {n}: {', '.join(fields)!r} is not x,y,z; give three numbers "
                                 "(voxels) per line")
        xyz.append([float(f) for f in picked])
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3)


def _fields(line: str) -> list[str]:
    if "," in line:
        return [f.strip() for f in next(csv.reader(io.StringIO(line)))]
    return line.split()


def _read_star(path: Path, tomo_name: str | None, fallback_name: str | None) -> np.ndarray:
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=[_TOMO_NAME])
    except Exception as e:  # starfile and pandas raise many kinds on a damaged file
        raise InputFileError(f"cannot read {path} as a STAR file ({e}); check the file") from e
    tables = [b for b in blocks.values() if hasattr(b, "columns") and set(STAR_COLUMNS) <= set(b.columns)]
    if not tables:
        if any(hasattr(b, "columns") and set(_RELION5_COLUMNS) <= set(b.columns) for b in blocks.values()):
            raise InputFileError(f"{path} holds RELION 5 centred coordinates in Å, not voxels; convert them to "
                                 "voxels of this tomogram (rlnCoordinateX/Y/Z) or give a CSV of x,y,z")
        raise InputFileError(f"{path} has no table with {', '.join(STAR_COLUMNS)}; give positions in voxels "
                             "of the tomogram in those columns")
    table = tables[0]
    if _TOMO_NAME in table.columns:
        names = sorted(set(table[_TOMO_NAME].astype(str)))
        if tomo_name is None and len(names) > 1 and fallback_name in names:
            tomo_name = fallback_name
        if tomo_name is not None:
            table = table[table[_TOMO_NAME].astype(str) == tomo_name]
            if len(table) == 0:
                raise InputFileError(f"{path} lists no positions of tomogram {tomo_name!r} (it lists "
                                     f"{', '.join(names[:10])}); give one of those names")
        elif len(names) > 1:
            raise ConfigError(f"{path} lists positions of {len(names)} tomograms ({', '.join(names[:10])}); "
                              "say which one (--tomo-name)")
    try:
        return table[list(STAR_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputFileError(f"{path}: {', '.join(STAR_COLUMNS)} hold values that are not numbers; fix them") from e
