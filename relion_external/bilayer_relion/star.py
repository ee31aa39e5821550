"""STAR files of RELION jobs: the tomograms a job is given, and tables written back with new columns.

The list given with ``--in_mics`` (a RELION 5 tomogram set or a RELION 3.1/4 micrograph-style
list) is read by the engine (:mod:`bilayer.io.tomogram_list`, which also writes tables back with
:func:`star_text`); this module re-exports those names, names this job's options in its errors,
and owns the columns a segmentation job adds. Paths in STAR files are relative to the project
folder (the working directory RELION runs jobs in) or absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

from bilayer.errors import InputFileError
from bilayer.io import tomogram_list as _engine
from bilayer.io.tomogram_list import (
    AUTO,
    MICROGRAPH_NAME,
    MICROGRAPH_PIXEL_SIZE,
    OPTICS_GROUP,
    TILT_SERIES_PIXEL_SIZE,
    TOMO_NAME,
    TOMOGRAM_BINNING,
    TOMOGRAM_COLUMNS,
    ListKind,
    Tomogram,
    TomogramList,
    check_files,
    star_text,
)

__all__ = [
    "AUTO",
    "MEMBRANE_COLUMNS",
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

#: Columns a segmentation job adds, by output kind (those of ``bilayer.infer.output_paths``); the
#: training job reads its labels from the first by default.
MEMBRANE_COLUMNS = {
    "mask": "rlnTomoMembraneSegmentation",
    "scores": "rlnTomoMembraneScores",
    "components": "rlnTomoMembraneComponents",
    "skeleton": "rlnTomoMembraneSkeleton",
    "uncertainty": "rlnTomoMembraneUncertainty",
    "preview": "rlnTomoMembranePreview",
    "surfaces": "rlnTomoMembraneSurfaces",  # the surfaces job's per-tomogram table (<stem>_surfaces.csv)
}
#: The job option that gives every tomogram's voxel size, named in errors.
_VOXEL_SIZE_OPTION = "--voxel_size"


def read_tomogram_list(path: str | os.PathLike, *, column: str = AUTO, voxel_size: float | None = None,
                       require_files: bool = True) -> TomogramList:
    """Read the tomograms of the list given with ``--in_mics`` (see
    :func:`bilayer.io.tomogram_list.read_tomogram_list`), paths relative to the project folder;
    ``require_files=False`` for a job that reads other files of the rows and maybe not the tomograms.

    Raises:
        InputFileError: the file is missing or not a STAR file, lists no tomograms, misses a
            column, has bad pixel sizes, or names files that do not exist (all listed).
    """
    if not Path(path).is_file():
        raise InputFileError(f"STAR file {path} does not exist (paths are relative to the project folder "
                             f"{Path.cwd()}); give the tomogram list with --in_mics")
    return _engine.read_tomogram_list(path, column=column, voxel_size=voxel_size, require_files=require_files,
                                      voxel_size_option=_VOXEL_SIZE_OPTION)
