"""The Python door to membrane surfaces: meshes and measures from a segmentation, nothing written.

``bilayer.surfaces.mesh_membranes(seg)`` gives one :class:`~bilayer.surfaces.mesh.Mesh` per membrane;
``bilayer.surfaces.measure_surfaces(seg, tomogram)`` adds the per-vertex measures (curvatures,
distance to the nearest other membrane, bilayer thickness where a tomogram is given) and the
per-membrane table. A segmentation is a file, a :class:`~bilayer.io.Volume` or an array (then give
``voxel_size``); its non-zero voxels are membrane, split into connected components (26-connected,
as ``bilayer components``) unless ``components`` (a labelled volume on the same grid, e.g.
``<stem>_components.mrc``) says which voxel belongs to which membrane. ``bilayer mesh`` and
``bilayer measure`` are these functions plus the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bilayer.errors import ConfigError, InputFileError
from bilayer.io import Volume, read_volume
from bilayer.surfaces.extract import MeshOptions, membrane_meshes
from bilayer.surfaces.mesh import Mesh

__all__ = ["Membranes", "Surfaces", "load_membranes", "measure_surfaces", "mesh_membranes"]

_MEASURE_BYTES_PER_VERTEX = 2000  # peak memory of measuring a membrane, per vertex (profiles, patches, operators)



@dataclass(frozen=True)
class Membranes:
    """A segmentation's membranes: ``labels`` (0 background, one value per membrane) with the
    mask's voxel size and origin (Å, (z, y, x))."""

    labels: np.ndarray
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    source: str = ""


@dataclass(frozen=True)
class Surfaces:
    """Meshes with their per-vertex values, one table row per membrane (see
    :data:`bilayer.surfaces.measures.SURFACE_COLUMNS`) and, with a tomogram, each membrane's mean
    density profile across it (label → (positions Å, values)) for plots."""

    meshes: list[Mesh]
    table: list[dict[str, Any]]
    profiles: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def load_membranes(segmentation: Any, *, components: Any = None, voxel_size: float | None = None,
                   min_size: int = 0) -> Membranes:
    """The membranes of ``segmentation`` (see the module docstring); ``voxel_size`` (Å) replaces the
    headers' and is needed for arrays. Membranes of fewer than ``min_size`` voxels are left out.

    Raises:
        InputFileError, ConfigError: unreadable files, no voxel size, components on another grid.
    """
    from bilayer.postprocess import connected_components

    mask = _volume(segmentation, voxel_size, "segmentation")
    if components is not None:
        labelled = _volume(components, voxel_size if voxel_size is not None else mask.voxel_size, "components")
        if labelled.shape != mask.shape:
            raise InputFileError(f"components {labelled.path or ''} have shape {labelled.shape}, the segmentation "
                                 f"{mask.shape}; give the components of this segmentation (bilayer components)")
        labels = np.asarray(labelled.data)
        if labels.dtype.kind not in "iub":
            if not np.array_equal(labels, np.round(labels)):
                raise InputFileError(f"components {labelled.path or ''} are not whole numbers; give a labelled volume "
                                     "(bilayer segment --components, or bilayer components)")
            labels = labels.astype(np.int64)
        labels = np.where(np.asarray(mask.data) != 0, labels, 0)
        if min_size:
            sizes = np.bincount(labels.ravel().astype(np.int64))
            labels = np.where(sizes[labels] >= min_size, labels, 0)
    else:
        labels = connected_components(np.asarray(mask.data) != 0, min_size=min_size).labels
    return Membranes(labels, mask.voxel_size, mask.origin, str(mask.path or ""))


def mesh_membranes(segmentation: Any, *, components: Any = None, voxel_size: float | None = None,
                   options: MeshOptions | None = None, workers: int | None = None, **values: Any) -> list[Mesh]:
    """One mesh per membrane of ``segmentation``, in Å in its frame (:mod:`bilayer.surfaces.extract`).
    ``options`` or option values by name (``spacing``, ``smoothing``, ``sigma``, ``min_size``, ``remesh``);
    ``workers``: processes working on membranes side by side (``None``: one per core, as memory allows)."""
    options = _options(options, values)
    membranes = load_membranes(segmentation, components=components, voxel_size=voxel_size,
                               min_size=options.min_size)
    return membrane_meshes(membranes.labels, membranes.voxel_size, membranes.origin, options, workers=workers)


def measure_surfaces(segmentation: Any, tomogram: Any = None, *, components: Any = None,
                     voxel_size: float | None = None, meshes: list[Mesh] | None = None,
                     options: MeshOptions | None = None, scale: float | None = None, workers: int | None = None,
                     **values: Any) -> Surfaces:
    """Meshes (or the ``meshes`` given) of ``segmentation`` with their measures and table; bilayer
    thickness needs the ``tomogram`` the segmentation was made from (same grid). ``scale``: Å over
    which curvatures are estimated (:func:`bilayer.surfaces.measures.measure_meshes`); ``workers``:
    processes working on membranes side by side (``None``: one per core, as memory allows).

    Raises:
        InputFileError: the tomogram is on another grid than the segmentation.
    """
    from bilayer.surfaces.distance import MembraneScene
    from bilayer.surfaces.measures import PROFILE_COLUMNS, surface_table
    from bilayer.surfaces.parallel import map_membranes
    from bilayer.surfaces.thickness import tomogram_box

    mask = _volume(segmentation, voxel_size, "segmentation")  # read once; the tomogram checked before any work
    density = None
    if tomogram is not None:
        density = _volume(tomogram, voxel_size if voxel_size is not None else mask.voxel_size, "tomogram")
        if density.shape != mask.shape:
            raise InputFileError(f"the tomogram {density.path or ''} has shape {density.shape}, the segmentation "
                                 f"{mask.shape}; give the tomogram it was segmented from (or bring the mask onto "
                                 "its grid with bilayer preprocess match-mask)")
        density = Volume(density.data, density.voxel_size, mask.origin, density.path)  # the mask's frame
    if meshes is None:
        meshes = mesh_membranes(mask, components=components, options=options, workers=workers, **values)
    # each worker gets its mesh, the part of the tomogram its profiles reach (not the whole tomogram)
    # and, once, every membrane's surface for the distances
    tasks = [(index, mesh, None if density is None else tomogram_box(mesh, density), scale)
             for index, mesh in enumerate(meshes)]
    task_bytes = [_MEASURE_BYTES_PER_VERTEX * mesh.vertex_count + (0 if box is None else 3 * box.data.nbytes)
                  for _, mesh, box, _ in tasks]
    measured = map_membranes(_measure_membrane, tasks, workers=workers, task_bytes=task_bytes,
                             shared={"scene": MembraneScene.of(meshes)})
    meshes = [mesh.with_values(**found[0]) for mesh, found in zip(meshes, measured)]
    profiles = {mesh.label: found[1] for mesh, found in zip(meshes, measured) if found[1] is not None}
    rows = {mesh.label: dict(zip(PROFILE_COLUMNS, found[2])) for mesh, found in zip(meshes, measured)
            if found[2] is not None}
    table = [{**row, **rows.get(row["label"], {})} for row in surface_table(meshes)]
    return Surfaces(meshes, table, profiles)


def _measure_membrane(index: int, mesh: Mesh, box: Volume | None, scale: float | None, *, scene: Any) -> tuple[
        dict[str, np.ndarray], tuple[np.ndarray, np.ndarray] | None, tuple[Any, ...] | None]:
    """One membrane's measures: its curvatures, its distances to the other membranes of ``scene``
    (:class:`~bilayer.surfaces.distance.MembraneScene`; this mesh is its ``index``-th) and, with the
    tomogram's ``box`` around it, its thickness (per-vertex values, the mean profile, the table's
    profile columns)."""
    from bilayer.surfaces.measures import curvature_values, distance_values

    values = {**curvature_values(mesh, scale), **distance_values(scene.nearest(index))}
    if box is None:
        return values, None, None
    from bilayer.surfaces.thickness import membrane_thickness

    result = membrane_thickness(mesh, box)
    values.update(result.vertex_values())
    row = (None if not result.membrane_resolved else result.membrane_thickness / 10.0,
           bool(result.membrane_resolved), float(result.membrane_quality))
    return values, (result.profile_positions, result.profile), row


def _options(options: MeshOptions | None, values: dict[str, Any]) -> MeshOptions:
    if options is not None and values:
        raise ConfigError("give mesh options as options=MeshOptions(...) or by name, not both")
    try:
        return options or MeshOptions(**values)
    except TypeError as e:
        raise ConfigError(f"unknown mesh option ({e}); known ones: spacing, smoothing, sigma, min_size, remesh") \
            from None


def _volume(value: Any, voxel_size: Any, what: str) -> Volume:
    if isinstance(value, Volume):
        return value if voxel_size is None else Volume(value.data, voxel_size, value.origin, value.path)
    if isinstance(value, (str, os.PathLike)):
        return read_volume(value, voxel_size=voxel_size)
    if isinstance(value, np.ndarray):
        if voxel_size is None:
            raise ConfigError(f"an array as the {what} needs voxel_size= (Å)")
        return Volume(value, voxel_size)
    raise ConfigError(f"the {what} must be a file, a Volume or an array, not {type(value).__name__}")
