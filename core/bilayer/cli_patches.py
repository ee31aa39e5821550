"""``bilayer patches``: the annotation loop (MemBrain-seg's ``patch_corrections``).

``suggest`` proposes where the model is least sure, ``extract`` cuts training patches there into
a dataset folder, ``merge`` applies an annotator's Add/Remove/Ignore masks to them; ``bilayer
finetune`` then trains on the folder. No numerical code here: the engine is
:mod:`bilayer.annotation`.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from bilayer.annotation.extract import DEFAULT_BORDER, DEFAULT_SIZE
from bilayer.cli_common import VOXEL_SIZE_HELP

__all__ = ["patches"]

_POSITION = re.compile(r"^\s*[+-]?[\d.eE+-]+\s*,\s*[+-]?[\d.eE+-]+\s*,\s*[+-]?[\d.eE+-]+\s*$")


@click.group("patches")
def patches() -> None:
    """The annotation loop: suggest patches, extract them, merge corrections (MemBrain-seg's patch_corrections)."""


@patches.command("extract")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), required=True,
              help="Labels of TOMOGRAM, same shape: a mask (bilayer segment's _seg.mrc) or 0/1/2 labels.")
@click.option("--at", "positions", multiple=True, required=True, metavar="FILE|X,Y,Z",
              help="Patch centres in voxels (from 0): a CSV (x,y,z per line, header optional), a RELION STAR "
                   "file (rlnCoordinateX/Y/Z) or one x,y,z. Repeatable.")
@click.option("--out", "out_dataset", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder (imagesTr/, labelsTr/, ...) that bilayer train and finetune read.")
@click.option("--size", type=click.IntRange(min=1), default=DEFAULT_SIZE, show_default=True,
              help="Patch edge in voxels (MemBrain-seg's).")
@click.option("--border", type=click.IntRange(min=0), default=DEFAULT_BORDER, show_default=True,
              help="Voxels of each face labelled ignore (MemBrain-seg's).")
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True,
              help="Training or validation part of the dataset.")
@click.option("--format", "fmt", type=click.Choice(["mrc", "nifti"]), default="mrc", show_default=True,
              help="File format of the patches (nifti: .nii.gz, for MITK as in MemBrain-seg).")
@click.option("--tomo-name", default=None,
              help="This tomogram's rlnTomoName in a STAR file of several tomograms; also names the patches. "
                   "[default: TOMOGRAM's stem, where the STAR file has it]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace patches of the same names.")
def extract(tomogram: Path, labels_path: Path, positions: tuple[str, ...], out_dataset: Path, size: int, border: int,
            split: str, fmt: str, tomo_name: str | None, voxel_size: float | None, overwrite: bool) -> None:
    """Cut SIZE³ patches of TOMOGRAM and its labels around each position into a training dataset.

    A position nearer the border than half a patch gives the patch shifted inside the tomogram.
    Patches are named <tomogram>_x<X>_y<Y>_z<Z> after the position given; all appear or none.
    """
    import numpy as np

    from bilayer.annotation.extract import extract_patches, patch_start
    from bilayer.annotation.positions import parse_position, read_positions
    from bilayer.io import read_volume

    centres = np.concatenate([
        np.asarray([parse_position(p)]) if _POSITION.match(p) and not Path(p).exists()
        else read_positions(p, tomo_name=tomo_name, fallback_name=tomogram.stem) for p in positions])
    volume = read_volume(tomogram, voxel_size=voxel_size)
    written = extract_patches(volume, labels_path, centres, out_dataset, size=size, border=border, split=split,
                              fmt=fmt, name=tomo_name, overwrite=overwrite)
    for (z, y, x), image, label in zip(centres.tolist(), written[::2], written[1::2]):
        start = patch_start(volume.shape, (z, y, x), size)
        box = " ".join(f"{a} {s}-{s + size - 1}" for a, s in zip("xyz", start[::-1]))
        moved = "" if start == tuple(c - size // 2 for c in (z, y, x)) else "  (shifted inside the tomogram)"
        click.echo(f"{image}  centre x {x} y {y} z {z}  box {box}{moved}")
        click.echo(f"{label}")


@patches.command("merge")
@click.argument("dataset", type=click.Path(file_okay=False, path_type=Path))
@click.option("--corrections", "corrections_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder with one <patch>/ folder per patch holding Add*, Remove*, Ignore* masks (.nrrd, "
                   ".nii.gz or .mrc), as MemBrain-seg's MITK workflow saves them.")
@click.option("--patch", default=None, help="Merge only this patch (its label file's name without ending).")
@click.option("--border", type=click.IntRange(min=0), default=None,
              help=f"Ignore border re-applied after merging. [default: the patch's own, else {DEFAULT_BORDER}]")
def merge(dataset: Path, corrections_dir: Path, patch: str | None, border: int | None) -> None:
    """Apply corrections to the patches' labels in DATASET: 0 where Remove, then 1 where Add, then 2
    where Ignore (MemBrain-seg's order); each label file is replaced, all together."""
    from bilayer.annotation.merge import merge_dataset

    for path in merge_dataset(dataset, corrections_dir, patch=patch, border=border):
        click.echo(str(path))


@patches.command("suggest")
@click.argument("volume_path", metavar="UNCERTAINTY", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Positions to write: .csv (x,y,z per line, which MemBrain-seg reads too) or .star (RELION).")
@click.option("--count", type=click.IntRange(min=1), default=5, show_default=True, help="How many patches.")
@click.option("--size", type=click.IntRange(min=1), default=DEFAULT_SIZE, show_default=True,
              help="Patch edge in voxels.")
@click.option("--from-scores", is_flag=True,
              help="UNCERTAINTY is a scores file (bilayer segment --scores): use -|score - threshold|.")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="With --from-scores: the mask's threshold (bilayer segment's --threshold).")
@click.option("--tomo-name", default=None, help="rlnTomoName in a STAR output. [default: from UNCERTAINTY's name]")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def suggest(volume_path: Path, out_path: Path, count: int, size: int, from_scores: bool, threshold: float,
            tomo_name: str | None, overwrite: bool) -> None:
    """Propose the COUNT non-overlapping SIZE³ patches of highest mean uncertainty (for bilayer patches
    extract --at)."""
    from bilayer.annotation.positions import write_positions
    from bilayer.annotation.suggest import suggest_patches
    from bilayer.io import check_output_path, ensure_output_dir, read_volume
    from bilayer.io.naming import OUTPUT_SUFFIXES

    ensure_output_dir(out_path.parent)
    check_output_path(out_path, overwrite=overwrite, protect=[volume_path])
    volume = read_volume(volume_path, voxel_size=1.0)  # positions are voxels: the voxel size plays no part
    found = suggest_patches(volume.data, size=size, count=count, scores_threshold=threshold if from_scores else None)
    name = tomo_name or _tomogram_stem(volume_path, [OUTPUT_SUFFIXES["uncertainty"], OUTPUT_SUFFIXES["scores"]])
    write_positions(out_path, [s.centre for s in found], tomo_name=name, overwrite=overwrite, protect=[volume_path])
    means = ", ".join(f"{s.mean:.4g}" for s in found)
    click.echo(f"{out_path}  {len(found)} patches of {size}³, mean {'-|score|' if from_scores else 'uncertainty'} "
               f"{means}")


def _tomogram_stem(path: Path, suffixes: list[str]) -> str:
    for suffix in suffixes:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem
