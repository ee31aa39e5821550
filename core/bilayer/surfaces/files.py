"""Membrane surfaces as files: what ``bilayer mesh`` and ``bilayer measure`` write, in one place
for the command, the RELION job and anyone else.

A segmentation's files form one group of outputs (:func:`bilayer.io.output_group`): the meshes
(``<stem>_membrane<label>.<ext>`` per format) with their record ``<stem>_meshes.json`` (the
segmentation's and components' sha256, the mesh options, each mesh's file: what
:func:`read_meshes` checks before ``bilayer measure --meshes`` measures them instead of meshing
again), and for measures the table ``<stem>_surfaces.csv``
(:data:`~bilayer.surfaces.measures.SURFACE_COLUMNS`, empty where a value does not apply),
``<stem>_surface_histograms.png`` and ``<stem>_surface_<value>.png`` for each value of
:data:`PICTURES` the meshes carry; they appear together when all are written, or not at all.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilayer.errors import ConfigError, InputFileError
from bilayer.io import atomic_open, ensure_output_dir, file_sha256, output_group
from bilayer.io.naming import MESH_SUFFIXES, mesh_name, output_name, surface_picture_name
from bilayer.surfaces.mesh import Mesh

__all__ = ["PICTURES", "measure_files", "read_meshes", "write_meshes", "write_surfaces"]

#: Per-vertex values drawn as pictures of the meshes (when the meshes have them).
PICTURES = ("mean_curvature", "nearest_distance", "thickness")


def write_meshes(source: str | os.PathLike, meshes: Sequence[Mesh], folder: str | os.PathLike,
                 suffixes: Sequence[str] = MESH_SUFFIXES[:1], *, overwrite: bool = False,
                 protect: Iterable[str | os.PathLike] = (), group: Any = None, options: Any = None,
                 components: str | os.PathLike | None = None) -> list[Path]:
    """Every mesh of ``source`` in every format of ``suffixes`` into ``folder`` with their record
    ``<stem>_meshes.json`` (``options``: the :class:`~bilayer.surfaces.extract.MeshOptions` they were
    made with, ``components`` the labelled volume if one split the membranes), as one group of
    outputs (or into ``group``); returns the paths."""
    from bilayer.surfaces.mesh_io import write_mesh

    folder, protect = ensure_output_dir(folder), [source, *protect]

    def write(into: Any) -> list[Path]:
        written = [write_mesh(folder / mesh_name(source, mesh.label, suffix), mesh, overwrite=overwrite,
                              protect=protect, group=into) for mesh in meshes for suffix in suffixes]
        record = folder / output_name(source, "meshes")
        with atomic_open(record, overwrite=overwrite, protect=protect, group=into) as f:
            f.write(json.dumps(_mesh_record(source, meshes, suffixes, options, components), indent=1).encode())
        return [*written, record]

    if group is not None:
        return write(group)
    with output_group() as new:
        return write(new)


def read_meshes(source: str | os.PathLike, folder: str | os.PathLike, *, options: Any = None,
                components: str | os.PathLike | None = None) -> list[Mesh]:
    """The meshes :func:`write_meshes` wrote for the segmentation ``source`` into ``folder``, after
    checking they are this segmentation's (same bytes, same components) made with ``options``
    (``None``: any); with their per-vertex values, in label order.

    Raises:
        InputFileError: no record, a mesh file missing or unreadable, or the meshes were made from
            another segmentation or other components.
        ConfigError: they were made with other mesh options.
    """
    from bilayer.surfaces.mesh_io import read_mesh

    record_path = Path(folder) / output_name(source, "meshes")
    again = f"mesh it again (bilayer mesh {source} --out {folder} --overwrite)"
    try:
        record = json.loads(record_path.read_text())
        listed = [(int(m["label"]), str(m["file"])) for m in record["meshes"]]
    except FileNotFoundError:
        raise InputFileError(f"{record_path}: no such file, so {folder} holds no meshes of {source}; mesh it first "
                             f"(bilayer mesh {source} --out {folder})") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputFileError(f"{record_path}: not a mesh record written by bilayer mesh ({e}); {again}") from None
    now = _mesh_record(source, [], (), options, components)
    for what in ("segmentation", "components"):
        if record.get(what) != now[what]:
            raise InputFileError(f"{record_path}: the meshes were made from {_described(record.get(what))}, not from "
                                 f"{_described(now[what])}; {again}")
    made = record.get("options")
    if options is not None and made is not None and made != now["options"]:
        changed = ", ".join(f"{k} {made.get(k)!r}, not {v!r}" for k, v in now["options"].items() if made.get(k) != v)
        raise ConfigError(f"the meshes in {folder} were made with other mesh options ({changed}); give the same "
                          f"options, or {again}")
    return [read_mesh(Path(folder) / name, label=label) for label, name in listed]


def _mesh_record(source: str | os.PathLike, meshes: Sequence[Mesh], suffixes: Sequence[str], options: Any,
                 components: str | os.PathLike | None) -> dict[str, Any]:
    """What makes meshes the meshes of ``source``: its bytes, the components' and the options."""
    from dataclasses import asdict

    from bilayer import __version__

    def identity(path: str | os.PathLike | None) -> dict[str, str] | None:
        return None if path is None else {"name": Path(path).name, "sha256": file_sha256(path)}

    first = ".ply" if ".ply" in suffixes or not suffixes else suffixes[0]  # PLY carries the per-vertex values
    return {
        "bilayer": __version__,
        "segmentation": identity(source),
        "components": identity(components),
        "options": asdict(options) if options is not None else None,
        "meshes": [{"label": int(m.label), "file": mesh_name(source, m.label, first), "closed": bool(m.closed),
                    "vertices": m.vertex_count} for m in meshes],
    }


def _described(identity: dict[str, str] | None) -> str:
    return "no components file" if identity is None else f"{identity.get('name')} ({identity.get('sha256', '')[:19]}…)"


def write_surfaces(source: str | os.PathLike, surfaces: Any, folder: str | os.PathLike,
                   suffixes: Sequence[str] = MESH_SUFFIXES[:1], *, overwrite: bool = False,
                   protect: Iterable[str | os.PathLike] = (), options: Any = None,
                   components: str | os.PathLike | None = None, workers: int | None = None) -> list[Path]:
    """The table, the meshes with their values (and record, see :func:`write_meshes`), the histograms
    and the pictures of :func:`~bilayer.surfaces.api.measure_surfaces`'s result, as one group;
    returns the paths. ``workers``: processes drawing the pictures side by side
    (:func:`~bilayer.surfaces.plots.render_pictures`)."""
    from bilayer.surfaces.measures import SURFACE_COLUMNS
    from bilayer.surfaces.plots import render_pictures

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
                                group=group, options=options, components=components)
        if surfaces.meshes:
            values = [value for value in PICTURES
                      if any(value in m.values and np.isfinite(m.values[value]).any() for m in surfaces.meshes)]
            histograms, pictures = render_pictures(surfaces.meshes, values, workers=workers)
            pngs = [(folder / output_name(source, "surface_histograms"), histograms)]
            pngs += [(folder / surface_picture_name(source, value), pictures[value]) for value in values]
            for path, png in pngs:
                with atomic_open(path, overwrite=overwrite, protect=protect, group=group) as f:
                    f.write(png)
                written.append(path)
    return written


def measure_files(segmentation: str | os.PathLike, folder: str | os.PathLike, *,
                  tomogram: str | os.PathLike | None = None, components: str | os.PathLike | None = None,
                  voxel_size: float | None = None, options: Any = None, scale: float | None = None,
                  suffixes: Sequence[str] = MESH_SUFFIXES[:1], overwrite: bool = False,
                  meshes_from: str | os.PathLike | None = None, workers: int | None = None) -> tuple[Any, list[Path]]:
    """``bilayer measure`` of one segmentation: :func:`~bilayer.surfaces.api.measure_surfaces` (on the
    meshes :func:`write_meshes` left in ``meshes_from``, checked by :func:`read_meshes`, instead of
    meshing again), then :func:`write_surfaces` into ``folder`` (inputs protected); returns the
    surfaces and the paths."""
    from bilayer.surfaces.api import measure_surfaces

    meshes = None
    inputs = [p for p in (tomogram, components) if p is not None]
    if meshes_from is not None:
        meshes = read_meshes(segmentation, meshes_from, components=components)
        inputs += [Path(meshes_from) / mesh_name(segmentation, m.label, s) for m in meshes for s in MESH_SUFFIXES]
        inputs.append(Path(meshes_from) / output_name(segmentation, "meshes"))
    surfaces = measure_surfaces(segmentation, tomogram, components=components, voxel_size=voxel_size, meshes=meshes,
                                options=options if meshes is None else None, scale=scale, workers=workers)
    return surfaces, write_surfaces(segmentation, surfaces, folder, suffixes, overwrite=overwrite, protect=inputs,
                                    options=options if meshes is None else _made_with(segmentation, meshes_from),
                                    components=components, workers=workers)


def _made_with(source: str | os.PathLike, folder: str | os.PathLike) -> Any:
    """The mesh options recorded with ``source``'s meshes in ``folder`` (None where not recorded)."""
    from bilayer.surfaces.extract import MeshOptions

    made = json.loads((Path(folder) / output_name(source, "meshes")).read_text()).get("options")
    return None if made is None else MeshOptions(**made)
