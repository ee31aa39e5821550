"""Membrane surfaces as files: what ``bilayer mesh`` and ``bilayer measure`` write, in one place
for the command, the RELION job and anyone else.

A segmentation's files form one group of outputs (:func:`bilayer.io.output_group`): the meshes
(``<stem>_membrane<label>.<ext>`` per format), and for measures the table ``<stem>_surfaces.csv``
(:data:`~bilayer.surfaces.measures.SURFACE_COLUMNS`, empty where a value does not apply),
``<stem>_surface_histograms.png`` and ``<stem>_surface_<value>.png`` for each value of
:data:`PICTURES` the meshes carry; they appear together when all are written, or not at all.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilayer.io import atomic_open, ensure_output_dir, output_group
from bilayer.io.naming import MESH_SUFFIXES, mesh_name, output_name, surface_picture_name
from bilayer.surfaces.mesh import Mesh

__all__ = ["PICTURES", "measure_files", "write_meshes", "write_surfaces"]

#: Per-vertex values drawn as pictures of the meshes (when the meshes have them).
PICTURES = ("mean_curvature", "nearest_distance", "thickness")


def write_meshes(source: str | os.PathLike, meshes: Sequence[Mesh], folder: str | os.PathLike,
                 suffixes: Sequence[str] = MESH_SUFFIXES[:1], *, overwrite: bool = False,
                 protect: Iterable[str | os.PathLike] = (), group: Any = None) -> list[Path]:
    """Every mesh of ``source`` in every format of ``suffixes`` into ``folder``, as one group of
    outputs (or into ``group``); returns the paths."""
    from bilayer.surfaces.mesh_io import write_mesh

    folder, protect = ensure_output_dir(folder), [source, *protect]

    def write(into: Any) -> list[Path]:
        return [write_mesh(folder / mesh_name(source, mesh.label, suffix), mesh, overwrite=overwrite, protect=protect,
                           group=into) for mesh in meshes for suffix in suffixes]

    if group is not None:
        return write(group)
    with output_group() as new:
        return write(new)


def write_surfaces(source: str | os.PathLike, surfaces: Any, folder: str | os.PathLike,
                   suffixes: Sequence[str] = MESH_SUFFIXES[:1], *, overwrite: bool = False,
                   protect: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The table, the meshes with their values, the histograms and the pictures of
    :func:`~bilayer.surfaces.api.measure_surfaces`'s result, as one group; returns the paths."""
    from bilayer.surfaces.measures import SURFACE_COLUMNS
    from bilayer.surfaces.plots import histograms_png, mesh_png

    folder, protect = ensure_output_dir(folder), [source, *protect]
    written: list[Path] = []
    with output_group() as group:
        table = folder / output_name(source, "surfaces")
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(SURFACE_COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in SURFACE_COLUMNS}
                         for row in surfaces.table)
        with atomic_open(table, overwrite=overwrite, protect=protect, group=group) as f:
            f.write(text.getvalue().encode())
        written.append(table)
        written += write_meshes(source, surfaces.meshes, folder, suffixes, overwrite=overwrite, protect=protect,
                                group=group)
        if surfaces.meshes:
            written.append(histograms_png(folder / output_name(source, "surface_histograms"), surfaces.meshes,
                                          overwrite=overwrite, protect=protect, group=group))
            for value in PICTURES:
                if any(value in m.values and np.isfinite(m.values[value]).any() for m in surfaces.meshes):
                    written.append(mesh_png(folder / surface_picture_name(source, value), surfaces.meshes, value,
                                            overwrite=overwrite, protect=protect, group=group))
    return written


def measure_files(segmentation: str | os.PathLike, folder: str | os.PathLike, *,
                  tomogram: str | os.PathLike | None = None, components: str | os.PathLike | None = None,
                  voxel_size: float | None = None, options: Any = None, scale: float | None = None,
                  suffixes: Sequence[str] = MESH_SUFFIXES[:1], overwrite: bool = False) -> tuple[Any, list[Path]]:
    """``bilayer measure`` of one segmentation: :func:`~bilayer.surfaces.api.measure_surfaces`, then
    :func:`write_surfaces` into ``folder`` (inputs protected); returns the surfaces and the paths."""
    from bilayer.surfaces.api import measure_surfaces

    surfaces = measure_surfaces(segmentation, tomogram, components=components, voxel_size=voxel_size,
                                options=options, scale=scale)
    inputs = [p for p in (tomogram, components) if p is not None]
    return surfaces, write_surfaces(segmentation, surfaces, folder, suffixes, overwrite=overwrite, protect=inputs)
