"""Mesh files: a membrane's :class:`~bilayer.surfaces.mesh.Mesh` written as OBJ, PLY, STL or GLB, and read back.

Every format is written by trimesh's exporters (no hand-written writers) into an atomic output
(:func:`bilayer.io.atomic_open`): a file appears complete under its name or not at all, an existing
file is replaced only with ``overwrite``, and an input is never replaced.

Coordinates are written as they are in the mesh: **(x, y, z) in Å in the tomogram's frame** (voxel
size and origin from the MRC header honoured), with no scaling and no axis swap. A mesh file carries
no unit, so each viewer takes the numbers in its own:

- ChimeraX opens ``.obj``, ``.stl`` and ``.glb`` surfaces and reads their x, y, z as scene
  coordinates, which are Å; an MRC opened beside them is placed by its own header the same way,
  so the mesh overlays the tomogram with no transform.
- glTF nominally means metres, y up; the GLB is written in Å like the rest and says so in its
  ``extras`` (``"units": "angstrom"``). The CryoET Data Portal converts contributed meshes to GLB
  with a per-dataset scale factor, so state Å when depositing. Blender's glTF and OBJ importers
  turn y-up files to z-up (a 90° turn about x) unless told otherwise; 1 Å becomes one Blender unit.
- napari has no mesh reader of its own: give ``Surface((vertices[:, ::-1], faces, values))``,
  (z, y, x) like its image layers, with the tomogram added at ``scale=voxel_size``,
  ``translate=origin``.

What each format holds:

- ``.ply`` (binary): vertices (float32), faces, vertex normals, and every per-vertex value in
  ``mesh.values`` as a float32 vertex property of the same name (NaN kept) — the file that
  carries the measures (``bilayer measure``) and that :func:`read_mesh` reads them back from.
- ``.obj`` (text): vertices (8 decimals), faces and vertex normals; OBJ has no per-vertex scalars.
- ``.stl`` (binary): triangles only (float32); shared vertices are found again on reading.
- ``.glb`` (glTF 2.0 binary): vertices (float32), faces, vertex normals, and each per-vertex value
  that is finite everywhere as an application-specific float32 attribute ``_NAME`` (glTF's rule for
  custom attributes; a value with NaN, such as a thickness unresolved somewhere, is left out of the
  GLB and kept in the PLY: glTF has no NaN, and trimesh would write its accessor's min/max as
  invalid JSON); the label and whether the
  surface is closed go in the mesh's ``extras``.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bilayer.errors import ConfigError, InputFileError
from bilayer.io.atomic import OutputGroup, atomic_open
from bilayer.io.naming import MESH_SUFFIXES, mesh_label
from bilayer.surfaces.mesh import Mesh, edge_face_counts

__all__ = ["MESH_FORMATS", "mesh_format", "read_mesh", "write_mesh"]

log = logging.getLogger(__name__)

#: The mesh file suffixes written and read here (the first is the default: it carries the values).
MESH_FORMATS: tuple[str, ...] = MESH_SUFFIXES

#: Names a PLY vertex already uses for position, normal, colour and texture coordinates.
_PLY_RESERVED = frozenset({"x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha", "s", "t"})


def mesh_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix (lower case, e.g. ``".ply"``).

    Raises:
        ConfigError: the suffix is not one of :data:`MESH_FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_FORMATS:
        raise ConfigError(f"{path}: unknown mesh format {suffix or '(no suffix)'!r}; "
                          f"name the file with one of {', '.join(MESH_FORMATS)}")
    return suffix


def write_mesh(
    path: str | os.PathLike, mesh: Mesh, *, overwrite: bool = False, protect: Iterable[str | os.PathLike] = (),
    group: OutputGroup | None = None,
) -> Path:
    """Write ``mesh`` to ``path`` in the format its suffix names, atomically.

    Args:
        path: the output file; its suffix (one of :data:`MESH_FORMATS`) picks the format.
        mesh: the surface, (x, y, z) in Å; written as it is.
        overwrite: replace an existing ``path``.
        protect: inputs that must never be replaced.
        group: publish with a group's other outputs (:func:`bilayer.io.output_group`).

    Returns:
        ``path``.

    Raises:
        ConfigError: unknown suffix, or a value name a PLY property cannot have.
        OutputError: ``path`` exists (without ``overwrite``), is an input, or cannot be written.
    """
    suffix = mesh_format(path)
    if suffix == ".ply":
        _check_ply_names(path, mesh.values)
    tm = _to_trimesh(mesh, suffix)
    with atomic_open(path, overwrite=overwrite, protect=protect, group=group) as f:
        _export(tm, suffix, f)
    return Path(path)


def read_mesh(path: str | os.PathLike, *, label: int | None = None) -> Mesh:
    """Read a mesh written by :func:`write_mesh` (or any OBJ/PLY/STL/GLB triangle mesh).

    Vertices come back in float64 with the file's precision (float32 for PLY, STL and GLB); faces
    as written, except STL, whose shared vertices are found again (in a new order). PLY vertex
    properties other than position, normal, colour and texture, and GLB ``_NAME`` attributes, come
    back as ``values`` (GLB names lower-cased).

    Args:
        path: the mesh file.
        label: the membrane's label; by default taken from a name made by
            :func:`bilayer.io.naming.mesh_name` (``..._membrane3.ply`` → 3), else 1.

    Raises:
        ConfigError: unknown suffix.
        InputFileError: the file is missing, unreadable or holds no triangles.
    """
    import trimesh

    suffix = mesh_format(path)
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such mesh file; check the path")
    try:
        tm = trimesh.load_mesh(path, file_type=suffix[1:], process=False)
    except Exception as e:  # trimesh raises many kinds for a damaged file
        raise InputFileError(f"{path}: not a readable {suffix[1:].upper()} mesh ({e}); write it again") from e
    if not isinstance(tm, trimesh.Trimesh) or len(tm.faces) == 0:
        raise InputFileError(f"{path}: holds no triangles; give a triangle mesh")
    if suffix == ".stl":
        tm.merge_vertices()
    values = _read_values(tm, suffix)
    if label is None:
        label = mesh_label(path)
    closed = _is_closed(np.asarray(tm.faces))
    return Mesh(np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int64),
                label=1 if label is None else int(label), closed=closed, values=values)


def _to_trimesh(mesh: Mesh, suffix: str) -> Any:
    """The trimesh to export: the mesh's own vertex normals, and its values where the format takes them."""
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    if suffix != ".stl":
        tm.vertex_normals = mesh.vertex_normals()
    if suffix == ".ply":
        for name, array in mesh.values.items():
            tm.vertex_attributes[name] = array.astype(np.float32)
    elif suffix == ".glb":
        tm.units = "angstrom"
        tm.metadata.update({"label": int(mesh.label), "closed": bool(mesh.closed)})
        for name, array in mesh.values.items():
            if np.isfinite(array).all():
                tm.vertex_attributes["_" + name.upper()] = array.astype(np.float32)
            else:
                log.info("%s is not finite everywhere: left out of the GLB (kept in the PLY)", name)
    return tm


def _export(tm: Any, suffix: str, f: io.BufferedIOBase) -> None:
    """Write ``tm`` into the open file ``f`` with trimesh's exporter for ``suffix``."""
    options: dict[str, Any] = {
        ".ply": {"encoding": "binary", "vertex_normal": True},
        ".obj": {"include_normals": True, "include_color": False, "include_texture": False},
        ".stl": {},
        ".glb": {"include_normals": True},
    }[suffix]
    tm.export(file_obj=f, file_type=suffix[1:], **options)


def _check_ply_names(path: str | os.PathLike, values: dict[str, np.ndarray]) -> None:
    for name in values:
        if not name.isidentifier() or not name.isascii() or name in _PLY_RESERVED:
            raise ConfigError(f"{path}: per-vertex value {name!r} cannot be a PLY property; name it with letters, "
                              f"digits and underscores, not one of {', '.join(sorted(_PLY_RESERVED))}")


def _read_values(tm: Any, suffix: str) -> dict[str, np.ndarray]:
    """Per-vertex values of a loaded mesh: PLY's extra vertex properties, GLB's ``_NAME`` attributes."""
    if suffix == ".ply":
        raw = tm.metadata.get("_ply_raw", {}).get("vertex", {}).get("data")
        if raw is None or raw.dtype.names is None:
            return {}
        return {name: np.asarray(raw[name], np.float64).reshape(-1) for name in raw.dtype.names
                if name not in _PLY_RESERVED and raw[name].ndim == 1}
    if suffix == ".glb":
        return {name[1:].lower(): np.asarray(array, np.float64).reshape(len(tm.vertices), -1)[:, 0]
                for name, array in tm.vertex_attributes.items() if name.startswith("_")}
    return {}


def _is_closed(faces: np.ndarray) -> bool:
    """Whether every edge is shared by exactly two faces (no boundary)."""
    shared = edge_face_counts(faces, int(faces.max(initial=-1)) + 1)[2]
    return bool(len(shared)) and bool((shared == 2).all())
