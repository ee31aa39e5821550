"""``bilayer mesh`` and ``bilayer measure``: membrane surfaces and their measures, as files.

Both read a segmentation (``<stem>_seg.mrc``; non-zero voxels are membrane), split it into
membranes (connected components, or ``--components``), and mesh each membrane's midsurface
(:mod:`bilayer.surfaces.extract`). ``mesh`` writes the meshes; ``measure`` also writes the
per-membrane table (CSV), the meshes with their per-vertex values (PLY), histograms and pictures of
the meshes coloured by curvature, by distance to the nearest other membrane and by thickness. Every
input and output of a call is checked first, and a segmentation's files appear together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bilayer.cli_common import VOXEL_SIZE_HELP

__all__ = ["measure_command", "mesh_command"]

_FORMATS = ("ply", "obj", "stl", "glb")


def _mesh_options(command: Any) -> Any:
    """The options ``mesh`` and ``measure`` share."""
    from bilayer.surfaces.extract import MeshOptions

    defaults = MeshOptions()
    options = [
        click.option("--components", "components", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Labelled membranes on the mask's grid (bilayer segment --components): one mesh per label "
                          "instead of per connected component. Only with one SEGMENTATION."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Output folder. [default: beside each segmentation]"),
        click.option("--format", "formats", type=click.Choice(_FORMATS), multiple=True,
                     help="Mesh file format; repeat for several (PLY carries the per-vertex values, GLB is the "
                          "CryoET Data Portal's). [default: ply]"),
        click.option("--spacing", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Distance between mesh vertices, Å. [default: the voxel size]"),
        click.option("--smoothing", type=click.IntRange(min=0), default=defaults.smoothing, show_default=True,
                     help="Taubin smoothing iterations (0: none)."),
        click.option("--min-size", type=click.IntRange(min=0), default=defaults.min_size, show_default=True,
                     help="Leave out membranes of fewer voxels (specks of noise)."),
        click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Processes working on membranes side by side. [default: one per CPU core, as memory allows]"),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command("mesh")
@click.argument("segmentations", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_mesh_options
def mesh_command(segmentations: tuple[Path, ...], components: Path | None, out_dir: Path | None,
                 formats: tuple[str, ...], spacing: float | None, smoothing: int, min_size: int,
                 voxel_size: float | None, workers: int | None, overwrite: bool) -> None:
    """Mesh every membrane of each SEGMENTATION: <stem>_membrane<label>.ply (or --format), one
    smooth, evenly spaced triangle mesh of the membrane's midsurface, in Å in the tomogram's frame
    (it overlays the tomogram in ChimeraX, napari or Blender), closed for vesicles, open for sheets;
    and <stem>_meshes.json, their record, which lets bilayer measure --meshes measure them."""
    from bilayer.surfaces.api import load_membranes
    from bilayer.surfaces.extract import MeshOptions, membrane_meshes
    from bilayer.surfaces.files import write_meshes

    options = MeshOptions(spacing=spacing, smoothing=smoothing, min_size=min_size)
    suffixes = _suffixes(formats)
    _check_components(segmentations, components)
    for path in segmentations:
        membranes = load_membranes(path, components=components, voxel_size=voxel_size, min_size=min_size)
        meshes = membrane_meshes(membranes.labels, membranes.voxel_size, membranes.origin, options, workers=workers)
        written = write_meshes(path, meshes, _folder(path, out_dir), suffixes, overwrite=overwrite,
                               protect=[components] if components is not None else [], options=options,
                               components=components)
        closed, vertices = sum(m.closed for m in meshes), sum(m.vertex_count for m in meshes)
        click.echo(f"{path}: {len(meshes)} membrane(s) ({closed} closed), {vertices} vertices → {len(written)} "
                   f"file(s) in {_folder(path, out_dir)}")


@click.command("measure")
@click.argument("segmentations", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tomogram", "tomograms", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="The tomogram each SEGMENTATION was made from (same grid), in the same order, for the bilayer "
                   "thickness; without it thickness is left out.")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Å over which curvatures are estimated. [default: three vertex spacings]")
@click.option("--meshes", "meshes_from", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A folder where bilayer mesh wrote these segmentations' meshes: they are measured as they are "
                   "instead of meshed again (checked to be this segmentation's; the mesh options then do not apply).")
@_mesh_options
@click.pass_context
def measure_command(ctx: click.Context, segmentations: tuple[Path, ...], tomograms: tuple[Path, ...],
                    scale: float | None, meshes_from: Path | None, components: Path | None, out_dir: Path | None,
                    formats: tuple[str, ...], spacing: float | None, smoothing: int, min_size: int,
                    voxel_size: float | None, workers: int | None, overwrite: bool) -> None:
    """Measure every membrane of each SEGMENTATION: <stem>_surfaces.csv (per membrane: area nm²,
    enclosed volume nm³ where closed, mean and Gaussian curvature, distance to the nearest other
    membrane, bilayer thickness with --tomogram), the meshes with those values per vertex
    (<stem>_membrane<label>.ply), <stem>_surface_histograms.png and pictures of the meshes coloured
    by each value (<stem>_surface_<value>.png)."""
    from bilayer.errors import ConfigError
    from bilayer.surfaces.extract import MeshOptions
    from bilayer.surfaces.files import measure_files

    if tomograms and len(tomograms) != len(segmentations):
        raise ConfigError(f"{len(tomograms)} --tomogram given for {len(segmentations)} segmentation(s); give one "
                          "per segmentation, in the same order, or none")
    _check_components(segmentations, components)
    if meshes_from is not None:
        given = [f"--{name.replace('_', '-')}" for name in ("spacing", "smoothing", "min_size")
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if given:
            raise ConfigError(f"{', '.join(given)} set how membranes are meshed, but --meshes measures the meshes "
                              f"in {meshes_from} as they were made; leave {', '.join(given)} out, or mesh again")
    options = MeshOptions(spacing=spacing, smoothing=smoothing, min_size=min_size)
    suffixes = _suffixes(formats)
    for index, path in enumerate(segmentations):
        tomogram = tomograms[index] if tomograms else None
        folder = _folder(path, out_dir)
        surfaces, written = measure_files(path, folder, tomogram=tomogram, components=components,
                                          voxel_size=voxel_size, options=options, scale=scale, suffixes=suffixes,
                                          overwrite=overwrite, meshes_from=meshes_from, workers=workers)
        click.echo(f"{path}: {len(surfaces.meshes)} membrane(s) measured → {len(written)} file(s) in {folder}")


def _suffixes(formats: Sequence[str]) -> tuple[str, ...]:
    return tuple(f".{f}" for f in dict.fromkeys(formats or ("ply",)))


def _check_components(segmentations: Sequence[Path], components: Path | None) -> None:
    from bilayer.errors import ConfigError

    if components is not None and len(segmentations) != 1:
        raise ConfigError("--components labels the membranes of one segmentation; give one SEGMENTATION with it")


def _folder(path: Path, out_dir: Path | None) -> Path:
    from bilayer.io import ensure_output_dir

    return ensure_output_dir(out_dir) if out_dir is not None else (path.parent if str(path.parent) else Path("."))
