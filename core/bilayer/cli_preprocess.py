"""``bilayer preprocess``: the tools MemBrain-seg offers before the network (``tomo_preprocessing``).

``spectrum`` (the radially averaged amplitude spectrum, MemBrain-seg's TSV); the steps ``rescale``
(pixel-size matching out of core, ``match_pixel_size``), ``match-spectrum`` (a tomogram filtered so its
spectrum follows another's) and ``deconvolve`` (Warp's Wiener-like filter with one CTF), which run through
the engine's one merge point (:func:`bilayer.preprocess.steps.preprocess_tomogram`: defaults ← ``--settings``
← options given here); and ``match-mask`` (a mask back onto the original grid, ``match_seg_to_tomo``).
"""

from __future__ import annotations

from pathlib import Path

import click

from bilayer.cli_common import VOXEL_SIZE_HELP, given_options
from bilayer.preprocess.deconvolve import DeconvolutionOptions, Frequencies
from bilayer.preprocess.spectrum import SpectrumMatching
from bilayer.preprocess.steps import PreprocessOptions

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


SETTINGS_HELP = ("JSON or YAML file of preprocessing options (bilayer.preprocess.steps.PreprocessOptions' names, "
                 "as the RELION job's parameters); options given here override it.")
_MATCHING = SpectrumMatching()
_DECONV = DeconvolutionOptions()  # the engine's defaults, shown in --help


@preprocess.command("match-spectrum")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--target", "target_spectrum", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The spectrum to match (a TSV from bilayer preprocess spectrum or MemBrain-seg's extract_spectrum); "
                   "required here or in --settings.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="The filtered tomogram (float32, z-scored), or an existing folder to write it into. "
                   "[default: TOMOGRAM's stem + _matched.mrc, beside it]")
@click.option("--cutoff", type=click.IntRange(min=1), default=None,
              help="Low-pass: no gain from this bin on (it can only lower the automatic cutoff). [default: automatic]")
@click.option("--smoothen", type=float, default=_MATCHING.smoothen, show_default=True,
              help="Width in bins of the sigmoid roll-off before the cutoff (0: a sharp cut).")
@click.option("--almost-zero-cutoff/--no-almost-zero-cutoff", default=_MATCHING.almost_zero_cutoff,
              show_default=True, help="Cut 4 bins before either spectrum nears zero (MemBrain-seg's default).")
@click.option("--shrink-excessive-value", type=float, default=_MATCHING.shrink_excessive_value,
              show_default=True, help="Clip gains above this.")
@click.option("--voxel-size", type=float, default=None, help=VOXEL_SIZE_HELP)
@click.option("--settings", type=click.Path(dir_okay=False, path_type=Path), default=None, help=SETTINGS_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def match_spectrum(tomogram: Path, out_path: Path | None, settings: Path | None, overwrite: bool,
                   **_: object) -> None:
    """Filter TOMOGRAM so its amplitude spectrum follows --target (MemBrain-seg's match_spectrum, keeping
    the real part of the result where MemBrain-seg takes its absolute value)."""
    _run_step("match-spectrum", tomogram, out_path, settings, overwrite)


@preprocess.command("deconvolve")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--defocus", type=float, default=_DECONV.defocus, show_default=True,
              help="Defocus in Å, underfocus positive (typically the zero tilt's).")
@click.option("--voxel-size", type=float, default=None, help=VOXEL_SIZE_HELP)
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
@click.option("--phase-flip/--no-phase-flip", default=_DECONV.phase_flip, show_default=True,
              help="Only flip the phases where the CTF is negative (no Wiener filter; the SSNR options are unused).")
@click.option("--frequencies", type=click.Choice([f.value for f in Frequencies]), default=_DECONV.frequencies.value,
              show_default=True, help="membrain: MemBrain-seg's frequency grid (its exact output; anisotropic on "
              "non-cubic tomograms); physical: the true frequency along each axis.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="The deconvolved tomogram (float32), or an existing folder to write it into. "
                   "[default: TOMOGRAM's stem + _deconv.mrc, beside it]")
@click.option("--settings", type=click.Path(dir_okay=False, path_type=Path), default=None, help=SETTINGS_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def deconvolve(tomogram: Path, out_path: Path | None, settings: Path | None, overwrite: bool, **_: object) -> None:
    """Deconvolve TOMOGRAM with one CTF: Warp's Wiener-like filter with an ad-hoc SSNR, as MemBrain-seg's
    tomo_preprocessing deconvolve computes it (same defaults, same numbers)."""
    _run_step("deconvolve", tomogram, out_path, settings, overwrite)


@preprocess.command("rescale")
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--voxel-size", "target_voxel_size", type=float, default=PreprocessOptions.target_voxel_size,
              show_default=True, help="The voxel size to resample to, in Å (MemBrain-seg's models work at about 10 Å).")
@click.option("--input-voxel-size", "voxel_size", type=float, default=None,
              help="TOMOGRAM's voxel size in Å, replacing its header's (needed when the header has 0 or is wrong).")
@click.option("--smooth-edge/--no-smooth-edge", default=PreprocessOptions.smooth_edge, show_default=True,
              help="Taper the kept spectrum with MemBrain-seg's ellipsoid and 12-voxel cosine edge (its default; "
                   "its --disable-smooth is --no-smooth-edge).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="The rescaled tomogram (float32, z-scored), or an existing folder to write it into. "
                   "[default: TOMOGRAM's stem + _rescaled.mrc, beside it]")
@click.option("--temp-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the temporary half spectrum (about 4 bytes per voxel of the smaller grid; "
                   "gone when done). [default: the output's folder]")
@click.option("--settings", type=click.Path(dir_okay=False, path_type=Path), default=None, help=SETTINGS_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def rescale(tomogram: Path, out_path: Path | None, temp_dir: Path | None, settings: Path | None, overwrite: bool,
            **_: object) -> None:
    """Resample TOMOGRAM to --voxel-size by Fourier cropping or padding, as MemBrain-seg's match_pixel_size
    (same numbers), a slab at a time: memory stays bounded whatever the tomogram's size."""
    _run_step("rescale", tomogram, out_path, settings, overwrite, temp_dir=temp_dir)


def _run_step(step: str, tomogram: Path, out_path: Path | None, settings: Path | None, overwrite: bool,
              temp_dir: Path | None = None) -> None:
    """Run one preprocessing step through the engine's merge point with the options given on the command
    line (each named as the engine's option), and print the result's line."""
    from bilayer.preprocess.steps import preprocess_tomogram

    given = given_options(exclude=("tomogram", "out_path", "settings", "overwrite", "temp_dir"))
    echo_volume(preprocess_tomogram(tomogram, out_path, settings=settings, overwrite=overwrite, temp_dir=temp_dir,
                                    step=step, **given))


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
    from bilayer.preprocess.match_mask import match_mask_file

    echo_volume(match_mask_file(segmentation, like, out_path, voxel_size=voxel_size, overwrite=overwrite))


def echo_volume(path: Path) -> None:
    """One line for a volume written: its path, (z, y, x) shape and voxel size (from its header)."""
    from bilayer.io import read_volume

    volume = read_volume(path, check_finite=False)
    click.echo(f"{path}  {'x'.join(map(str, volume.shape))}  voxel {volume.voxel_size[0]:g} A")
