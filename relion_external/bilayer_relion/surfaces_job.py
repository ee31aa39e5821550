"""``bilayer-relion-surfaces``: membrane surfaces and their measures as a RELION External job.

It takes the segmentation job's output STAR file (``--in_mics``): each row's mask
(``rlnTomoMembraneSegmentation``), its labelled membranes where the list has them
(``rlnTomoMembraneComponents``, else the mask's connected components), its tomogram (for the
bilayer thickness) and its voxel size. For each tomogram it runs what ``bilayer measure`` runs
(:func:`bilayer.surfaces.files.measure_files`: the same outputs by construction) into the job folder, below the mask's own folders as RELION's jobs do
(``External/job012/tomograms/rec_TS_01_seg.mrc`` → ``External/job014/tomograms/``): one mesh per
membrane and format (``rec_TS_01_seg_membrane<label>.ply``, with every per-vertex value), the
per-membrane table ``rec_TS_01_seg_surfaces.csv``, histograms and pictures. Then it writes
``surfaces.star`` (every membrane of every tomogram: ``rlnTomoName``, the table's columns, and
``rlnTomoMembraneMesh``, the membrane's mesh) and the input STAR file again with
``rlnTomoMembraneSurfaces`` naming each tomogram's table. That STAR file is the output node:
RELION has no node type for meshes or tables, which ``surfaces.star`` names instead.

Continuing: ``bilayer_surfaces.json`` records the settings; a tomogram whose table exists is done
(a tomogram's files appear together, the table last), so a continued job does the rest, and a job
continued with other settings is refused. Every file is checked before the first tomogram; one that
fails during the work leaves no outputs and the others go on (the job then ends FAILURE). The abort
button stops the job within a second, also in the middle of a tomogram.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from bilayer import checks
from bilayer.errors import BilayerError, ConfigError, InputFileError, PreflightError
from bilayer.io import atomic_open, read_volume
from bilayer.io.naming import MESH_SUFFIXES, mesh_name, output_name
from bilayer.settings import read_settings
from bilayer.surfaces.extract import MeshOptions

from bilayer_relion._job import (
    Job,
    JobFailed,
    JobParser,
    Node,
    NodeType,
    check_distinct,
    keep_settings,
    output_folder,
    run_program,
    yes_no,
)
from bilayer_relion.star import AUTO, MEMBRANE_COLUMNS, ListKind, Tomogram, TomogramList, read_tomogram_list, star_text

__all__ = ["MESH_COLUMN", "PROG", "SETTINGS_FILE", "TABLE_FILE", "SurfaceJobOptions", "build_parser", "job_options",
           "main", "run"]

PROG = "bilayer-relion-surfaces"
#: The settings a job's outputs were made with; a continued job must use the same.
SETTINGS_FILE = "bilayer_surfaces.json"
#: The job's table of every membrane of every tomogram.
TABLE_FILE = "surfaces.star"
#: The column of :data:`TABLE_FILE` naming each membrane's mesh (in the first format asked for).
MESH_COLUMN = "rlnTomoMembraneMesh"
_SEGMENTATION = MEMBRANE_COLUMNS["mask"]
_COMPONENTS = MEMBRANE_COLUMNS["components"]
_FORMATS = tuple(s.lstrip(".") for s in MESH_SUFFIXES)
#: The engine's mesh defaults: the job's, so it agrees with ``bilayer mesh``/``bilayer measure``.
_MESH = MeshOptions()
#: How often the job looks for RELION's abort file while a tomogram is measured (seconds).
_ABORT_POLL = 1.0


@dataclass(frozen=True)
class SurfaceJobOptions:
    """The job's options, checked (see :func:`build_parser` for their meaning)."""

    spacing: float | None
    smoothing: int
    min_size: int
    scale: float | None
    thickness: bool
    format: tuple[str, ...]
    tomogram_column: str
    voxel_size: float | None

    def __post_init__(self) -> None:
        MeshOptions(spacing=self.spacing, smoothing=self.smoothing, min_size=self.min_size)  # the engine's checks
        if self.scale is not None:
            object.__setattr__(self, "scale", checks.number("scale", self.scale, 0.0))
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", checks.number("voxel_size", self.voxel_size, 0.0, open_low=True))
        object.__setattr__(self, "thickness", checks.flag("thickness", self.thickness))
        object.__setattr__(self, "format", _formats(self.format))
        if not isinstance(self.tomogram_column, str) or not self.tomogram_column:
            raise ConfigError(f"tomogram_column={self.tomogram_column!r} must be a STAR label or {AUTO}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "format": list(self.format)}


def _defaults() -> dict[str, Any]:
    return {"spacing": _MESH.spacing, "smoothing": _MESH.smoothing, "min_size": _MESH.min_size,
            "scale": None, "thickness": True, "format": _FORMATS[:1], "tomogram_column": AUTO,
            "voxel_size": None}


def build_parser() -> JobParser:
    """The job's arguments: RELION's, and the parameters (``--<label> <value>``)."""
    d = _defaults()
    p = JobParser(PROG, "Mesh and measure the membranes of segmented tomograms (bilayer measure) as a RELION "
                  "External job; --in_mics is a segmentation job's output STAR file.")
    p.add_option("settings", metavar="FILE", help="JSON or YAML file of these parameters (by name); parameters "
                 "given here override it.")
    p.add_option("spacing", kind=float, metavar="A", help="Distance between mesh vertices, Å. [default: the voxel "
                 "size]")
    p.add_option("smoothing", kind=int, help=f"Taubin smoothing iterations (0: none). [default: {d['smoothing']}]")
    p.add_option("min_size", kind=int, help="Leave out membranes of fewer voxels (specks of noise). "
                 f"[default: {d['min_size']}]")
    p.add_option("scale", kind=float, metavar="A", help="Å over which curvatures are estimated. [default: three "
                 "vertex spacings]")
    p.add_option("thickness", kind=yes_no, help="Measure the bilayer thickness from each row's tomogram (it must "
                 "be on the mask's grid). [default: yes]")
    p.add_option("format", metavar="FMT[,FMT]", help=f"Mesh file format(s): {', '.join(_FORMATS)} (PLY carries the "
                 f"per-vertex values, GLB is the CryoET Data Portal's). [default: {_FORMATS[0]}]")
    p.add_option("tomogram_column", metavar="LABEL", help="STAR column naming the tomograms for the thickness, e.g. "
                 f"rlnTomoReconstructedTomogram. [default: {AUTO}: the reconstructed tomogram]")
    p.add_option("voxel_size", kind=float, metavar="A", help="Voxel size in Å for every tomogram, replacing the "
                 "STAR file's. [default: from the STAR file, else the MRC headers]")
    return p


def job_options(args: argparse.Namespace) -> SurfaceJobOptions:
    """The options: ``bilayer measure``'s defaults ← the ``--settings`` file ← the parameters given.

    Raises:
        ConfigError: an unreadable settings file, an unknown key or a bad value.
    """
    names = list(_defaults())
    from_file = checks.known_keys(SurfaceJobOptions, read_settings(args.settings or None, "surfaces settings"),
                                  f"surfaces settings ({args.settings})")
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return SurfaceJobOptions(**{**_defaults(), **from_file, **given})


def run(args: argparse.Namespace, job: Job) -> list[Node]:
    """Mesh and measure every tomogram of ``args.in_mics`` not done yet; returns the output node.

    Raises:
        BilayerError: a bad list, option or file (before any work); changed settings; JobFailed
            when tomograms failed.
    """
    if not args.in_mics:
        raise ConfigError("give the segmentation job's STAR file with --in_mics STAR (RELION: 'Input micrographs' "
                          "on the I/O tab)")
    options = job_options(args)
    tomograms = read_tomogram_list(args.in_mics, column=options.tomogram_column, voxel_size=options.voxel_size,
                                   require_files=options.thickness)
    rows = _rows(tomograms, options.thickness)
    tables = [output_folder(job.folder, r["segmentation"]) / output_name(r["segmentation"], "surfaces") for r in rows]
    check_distinct([(t.ts_id, p) for t, p in zip(tomograms.tomograms, tables)], tomograms.source)
    if (job.folder / TABLE_FILE).resolve() == tomograms.source.resolve():
        raise InputFileError(f"{tomograms.source} is this job's own {TABLE_FILE}; give the segmentation job's STAR "
                             "file with --in_mics")
    keep_settings(job.folder, SETTINGS_FILE, any(p.is_file() for p in tables),
                  {**options.to_dict(), "tomogram_column": tomograms.column})
    todo = [(t, r, p) for t, r, p in zip(tomograms.tomograms, rows, tables) if not p.is_file()]
    components = "labelled membranes (" + _COMPONENTS + ")" if _COMPONENTS in tomograms.table.columns \
        else "connected components of the masks"
    print(f"{len(rows)} tomogram(s) in {tomograms.source} ({tomograms.kind.value}); {len(rows) - len(todo)} finished "
          f"before, {len(todo)} to do; membranes: {components}; thickness: "
          f"{f'from {tomograms.column}' if options.thickness else 'no'}")
    _preflight([(t, r) for t, r, _ in todo])
    failed = []
    for i, (tomo, row, table) in enumerate(todo, 1):
        job.check_abort()
        print(f"[{i}/{len(todo)}] {tomo.ts_id}: {row['segmentation']}")
        try:
            with job.abort_watch(_ABORT_POLL):
                _measure(row, table.parent, tomo.voxel_size, options)
        except BilayerError as e:
            failed.append(tomo.ts_id)
            print(f"{PROG}: error: {tomo.ts_id}: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001  (a bug: this tomogram fails with its traceback, the others go on)
            failed.append(tomo.ts_id)
            print(f"{PROG}: error: {tomo.ts_id}: unexpected {type(e).__name__} (please report it with this log):\n"
                  f"{traceback.format_exc()}", file=sys.stderr, flush=True)
    if failed:
        raise JobFailed(f"{len(failed)} of {len(rows)} tomogram(s) failed ({', '.join(failed)}; see the errors "
                        "above); fix them and continue the job: finished tomograms are kept")
    summary = job.folder / TABLE_FILE
    with atomic_open(summary, overwrite=True, protect=[tomograms.source]) as f:
        f.write(star_text({"surfaces": _summary(tomograms, rows, tables, options)}, tomograms.version).encode())
    star = job.folder / tomograms.source.name
    with atomic_open(star, overwrite=True, protect=[tomograms.source]) as f:
        columns = {MEMBRANE_COLUMNS["surfaces"]: [str(p) for p in tables]}
        f.write(star_text(tomograms.with_columns(columns), tomograms.version).encode())
    print(f"wrote {summary} and {star}")
    return [Node(star, NodeType.TOMOGRAM_SET if tomograms.kind is ListKind.TOMOGRAM_SET else NodeType.MICROGRAPH_SET)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit status."""
    return run_program(argv, build_parser(), run)


def _rows(tomograms: TomogramList, thickness: bool) -> list[dict[str, Path | None]]:
    """Each row's segmentation, components (or None) and tomogram (None without thickness), checked to exist."""
    if _SEGMENTATION not in tomograms.table.columns:
        raise InputFileError(f"{tomograms.source} names no segmentations (no {_SEGMENTATION} column in "
                             f"data_{tomograms.block}); run the segmentation job (bilayer-relion-segment) first and "
                             "give its output STAR file")
    n = len(tomograms.tomograms)
    segmentations = tomograms.paths(_SEGMENTATION, "segmentation")
    components = tomograms.paths(_COMPONENTS, "components") if _COMPONENTS in tomograms.table.columns else [None] * n
    sources = [t.path for t in tomograms.tomograms] if thickness else [None] * n
    return [{"segmentation": s, "components": c, "tomogram": t} for s, c, t in zip(segmentations, components, sources)]


def _preflight(todo: Sequence[tuple[Tomogram, dict[str, Path | None]]]) -> None:
    """Read every header first: each file readable, components and tomogram on the mask's grid.

    Raises:
        PreflightError: one line per problem.
    """
    problems = []
    for tomo, row in todo:
        try:
            shapes = {what: read_volume(path, voxel_size=tomo.voxel_size).shape
                      for what, path in row.items() if path is not None}
        except BilayerError as e:
            problems.append(f"{tomo.ts_id}: {' '.join(str(e).split())}")
            continue
        for what in ("components", "tomogram"):
            if what in shapes and shapes[what] != shapes["segmentation"]:
                fix = ("give the components of this mask" if what == "components" else "give the tomogram it was "
                       "segmented from (tomogram_column), or thickness no")
                problems.append(f"{tomo.ts_id}: the {what} {row[what]} has shape {shapes[what]}, the segmentation "
                                f"{row['segmentation']} {shapes['segmentation']}; {fix}")
    if problems:
        raise PreflightError(problems)


def _measure(row: dict[str, Path | None], folder: Path, voxel_size: float | None, options: SurfaceJobOptions) -> None:
    """``bilayer measure`` of one row into ``folder`` (its files appear together, or none)."""
    from bilayer.surfaces.files import measure_files

    mesh = MeshOptions(spacing=options.spacing, smoothing=options.smoothing, min_size=options.min_size)
    measure_files(row["segmentation"], folder, tomogram=row["tomogram"], components=row["components"],
                  voxel_size=voxel_size, options=mesh, scale=options.scale,
                  suffixes=tuple(f".{f}" for f in options.format), overwrite=True)


def _summary(tomograms: TomogramList, rows: Sequence[dict[str, Path | None]], tables: Sequence[Path],
             options: SurfaceJobOptions) -> pd.DataFrame:
    """Every membrane of every tomogram: its name, its table row as written (empty: NaN) and its mesh."""
    parts = []
    for tomo, row, table in zip(tomograms.tomograms, rows, tables):
        try:
            values = pd.read_csv(table, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as e:
            raise InputFileError(f"cannot read {table} ({e}); delete it and continue the job to measure "
                                 f"{tomo.ts_id} again") from e
        meshes = [str(table.parent / mesh_name(row["segmentation"], int(label), f".{options.format[0]}"))
                  for label in values["label"]]
        parts.append(pd.DataFrame({"rlnTomoName": [tomo.ts_id] * len(values), **values.replace("", "NaN"),
                                   MESH_COLUMN: meshes}))
    return pd.concat(parts, ignore_index=True)


def _formats(value: Any) -> tuple[str, ...]:
    """Mesh formats from ``ply``, ``ply,glb`` (commas or spaces) or a list, without repeats."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"format={value!r} must name mesh formats, e.g. ply or ply,glb")
    names = tuple(dict.fromkeys(i.strip().lower().lstrip(".") for i in items))
    unknown = [n for n in names if n not in _FORMATS]
    if unknown:
        raise ConfigError(f"format {', '.join(unknown)} is not a mesh format; use {', '.join(_FORMATS)} (several "
                          "separated by commas)")
    return names


if __name__ == "__main__":
    sys.exit(main())
