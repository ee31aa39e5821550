"""``bilayer preprocess``: the tools MemBrain-seg offers before the network (``tomo_preprocessing``).

So far ``spectrum`` (the radially averaged amplitude spectrum, MemBrain-seg's TSV) and
``match-spectrum`` (a tomogram filtered so its spectrum follows another's).
``deconvolve``: Warp's Wiener-like filter with one CTF, MemBrain-seg's numbers (``tomo_preprocessing deconvolve``).
``rescale`` / ``match-mask``: pixel-size matching out of core, masks back (``match_pixel_size``, ``match_seg_to_tomo``).
"""

from __future__ import annotations

from pathlib import Path

import click

from bilayer.cli_common import VOXEL_SIZE_HELP
from bilayer.preprocess.deconvolve import DeconvolutionOptions, Frequencies

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


_DECONV = DeconvolutionOptions()  # the engine's defaults, shown in --help


@preprocess.command("deconvolve")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--defocus", type=float, default=_DECONV.defocus, show_default=True,
              help="Defocus in Å, underfocus positive (typically the zero tilt's).")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--amplitude-contrast", type=float, default=_DECONV.amplitude_contrast,
              show_default=True, help="Amplitude contrast fraction.")
@click.option("--cs", type=float, default=_DECONV.cs, show_default=True,
              help="Spherical aberration in mm.")
@click.option("--voltage", type=float, default=_DECONV.voltage, show_default=True,
              help="Acceleration voltage in kV.")
@click.option("--strength", type=float, default=_DECONV.strength, show_default=True,
              help="Deconvolution strength: the SSNR is 10^(3 x strength) at low frequency.")
@click.option("--falloff", type=float, default=_DECONV.falloff, show_default=True,
              help="How fast the SSNR falls with frequency (higher: smoother result).")
@click.option("--highpass-fraction", type=float, default=_DECONV.highpass_fraction,
              show_default=True, help="Where the high-pass ends, in cycles per voxel as MemBrain-seg applies it "
              "(0: no high-pass).")
@click.option("--lowpass/--skip-lowpass", default=_DECONV.lowpass, show_default=True,
              help="Roll the SSNR off to 0 at the first CTF zero (MemBrain-seg's --skip-lowpass turns it off).")
@click.option("--phase-flip", is_flag=True, default=_DECONV.phase_flip,
              help="Only flip the phases where the CTF is negative (no Wiener filter; the SSNR options are unused).")
@click.option("--frequencies", type=click.Choice([f.value for f in Frequencies]), default=_DECONV.frequencies.value,
              show_default=True, help="membrain: MemBrain-seg's frequency grid (its exact output; anisotropic on "
              "non-cubic tomograms); physical: the true frequency along each axis.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The deconvolved tomogram (float32). [default: TOMOGRAM's stem + _deconv.mrc, beside it]")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def deconvolve(tomogram: Path, defocus: float, voxel_size: float | None, amplitude_contrast: float, cs: float,
               voltage: float, strength: float, falloff: float, highpass_fraction: float, lowpass: bool,
               phase_flip: bool, frequencies: str, out_path: Path | None, overwrite: bool) -> None:
    """Deconvolve TOMOGRAM with one CTF: Warp's Wiener-like filter with an ad-hoc SSNR, as MemBrain-seg's
    tomo_preprocessing deconvolve computes it (same defaults, same numbers)."""
    from bilayer.preprocess.deconvolve import deconvolve_file

    options = DeconvolutionOptions(defocus=defocus, amplitude_contrast=amplitude_contrast, cs=cs, voltage=voltage,
                                   strength=strength, falloff=falloff, highpass_fraction=highpass_fraction,
                                   lowpass=lowpass, phase_flip=phase_flip,
                                   frequencies=frequencies)  # type: ignore[arg-type]
    echo_volume(deconvolve_file(tomogram, out_path, options, voxel_size=voxel_size, overwrite=overwrite))


@preprocess.command("rescale")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="The voxel size to resample to, in Å (MemBrain-seg's models work at about 10 Å).")
@click.option("--input-voxel-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="TOMOGRAM's voxel size in Å, replacing its header's (needed when the header has 0 or is wrong).")
@click.option("--smooth-edge/--no-smooth-edge", default=True, show_default=True,
              help="Taper the kept spectrum with MemBrain-seg's ellipsoid and 12-voxel cosine edge (its default; "
                   "its --disable-smooth is --no-smooth-edge).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="The rescaled tomogram (float32, z-scored), or an existing folder to write it into. "
                   "[default: TOMOGRAM's stem + _rescaled.mrc, beside it]")
@click.option("--temp-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the temporary half spectrum (about 4 bytes per voxel of the smaller grid; "
                   "gone when done). [default: the output's folder]")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def rescale(tomogram: Path, voxel_size: float, input_voxel_size: float | None, smooth_edge: bool,
            out_path: Path | None, temp_dir: Path | None, overwrite: bool) -> None:
    """Resample TOMOGRAM to --voxel-size by Fourier cropping or padding, as MemBrain-seg's match_pixel_size
    (same numbers), a slab at a time: memory stays bounded whatever the tomogram's size."""
    from bilayer.preprocess.rescale import rescale_file

    echo_volume(rescale_file(tomogram, out_path, voxel_size, input_voxel_size=input_voxel_size,
                             smooth_edge=smooth_edge, overwrite=overwrite, temp_dir=temp_dir))


@preprocess.command("match-mask")
@click.argument("segmentation", type=click.Path(path_type=Path))
@click.option("--like", "like", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The original tomogram: the mask goes onto its grid, with its voxel size and origin.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="The mask on the original grid (SEGMENTATION's dtype), or an existing folder to write it into. "
                   "[default: LIKE's stem + _seg.mrc, beside SEGMENTATION]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="LIKE's voxel size in Å, replacing its header's (needed when the header has 0 or is wrong).")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def match_mask(segmentation: Path, like: Path, out_path: Path | None, voxel_size: float | None,
               overwrite: bool) -> None:
    """Put SEGMENTATION, made on a rescaled tomogram, back onto the original tomogram's grid by nearest
    neighbour (MemBrain-seg's match_seg_to_tomo), with the original's header."""
    from bilayer.preprocess.rescale import match_mask_file

    echo_volume(match_mask_file(segmentation, like, out_path, voxel_size=voxel_size, overwrite=overwrite))
