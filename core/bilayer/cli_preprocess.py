"""``bilayer preprocess``: the tools MemBrain-seg offers before the network (``tomo_preprocessing``).

So far ``spectrum`` (the radially averaged amplitude spectrum, MemBrain-seg's TSV) and
``match-spectrum`` (a tomogram filtered so its spectrum follows another's).
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
    from bilayer.preprocess.spectrum import read_spectrum, spectrum_file

    target = spectrum_file(tomogram, out_path, voxel_size=voxel_size, overwrite=overwrite)
    click.echo(f"{target}  {len(read_spectrum(target))} bins")


@preprocess.command("match-spectrum")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--target", "target_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The spectrum to match (a TSV from bilayer preprocess spectrum or MemBrain-seg's extract_spectrum).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The filtered tomogram (float32, z-scored). [default: TOMOGRAM's stem + _matched.mrc, beside it]")
@click.option("--cutoff", type=click.IntRange(min=1), default=None,
              help="Low-pass: no gain from this bin on (it can only lower the automatic cutoff). [default: automatic]")
@click.option("--smoothen", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Width in bins of the sigmoid roll-off before the cutoff (0: a sharp cut).")
@click.option("--almost-zero-cutoff/--no-almost-zero-cutoff", default=True, show_default=True,
              help="Cut 4 bins before either spectrum nears zero (MemBrain-seg's default).")
@click.option("--shrink-excessive-value", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True, help="Clip gains above this.")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def match_spectrum(tomogram: Path, target_path: Path, out_path: Path | None, cutoff: int | None, smoothen: float,
                   almost_zero_cutoff: bool, shrink_excessive_value: float, voxel_size: float | None,
                   overwrite: bool) -> None:
    """Filter TOMOGRAM so its amplitude spectrum follows --target (MemBrain-seg's match_spectrum, keeping
    the real part of the result where MemBrain-seg takes its absolute value)."""
    from bilayer.preprocess.spectrum import SpectrumMatching, match_spectrum_file

    options = SpectrumMatching(cutoff=cutoff, smoothen=smoothen, almost_zero_cutoff=almost_zero_cutoff,
                               shrink_excessive_value=shrink_excessive_value)
    destination = match_spectrum_file(tomogram, target_path, out_path, options=options, voxel_size=voxel_size,
                                      overwrite=overwrite)
    echo_volume(destination)


def echo_volume(path: Path) -> None:
    """One line for a volume written: its path, (z, y, x) shape and voxel size (from its header)."""
    from bilayer.io import read_volume

    volume = read_volume(path, check_finite=False)
    click.echo(f"{path}  {'x'.join(map(str, volume.shape))}  voxel {volume.voxel_size[0]:g} A")
