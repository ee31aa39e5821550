"""``bilayer preprocess``: the tools MemBrain-seg offers before the network (``tomo_preprocessing``).

So far ``spectrum`` (the radially averaged amplitude spectrum, MemBrain-seg's TSV).
"""

from __future__ import annotations

from pathlib import Path

import click

from bilayer.cli_common import VOXEL_SIZE_HELP

__all__ = ["preprocess"]


@click.group("preprocess")
def preprocess() -> None:
    """Prepare tomograms before segmenting them (MemBrain-seg's tomo_preprocessing)."""


@preprocess.command("spectrum")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TSV to write (columns freq, intensity, as MemBrain-seg's extract_spectrum). "
                   "[default: TOMOGRAM's stem + _spectrum.tsv, beside it]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def spectrum(tomogram: Path, out_path: Path | None, voxel_size: float | None, overwrite: bool) -> None:
    """The radially averaged amplitude spectrum of TOMOGRAM, for matching others to it
    (MemBrain-seg's extract_spectrum; its files and these are interchangeable)."""
    from bilayer.io import check_output_path, ensure_output_dir, output_name, read_volume
    from bilayer.preprocess.spectrum import amplitude_spectrum, write_spectrum

    target = out_path or tomogram.with_name(output_name(tomogram, "spectrum"))
    ensure_output_dir(target.parent)
    check_output_path(target, overwrite=overwrite, protect=[tomogram])
    volume = read_volume(tomogram, voxel_size=voxel_size)
    values = amplitude_spectrum(volume.data)
    write_spectrum(target, values, overwrite=overwrite, protect=[tomogram])
    click.echo(f"{target}  {len(values)} bins")
