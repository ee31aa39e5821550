"""``bilayer-relion-preprocess``: one of MemBrain-seg's preprocessing steps as a RELION External job.

For each tomogram of the list given with ``--in_mics`` it writes the preprocessed tomogram into
the job folder, below the input's own folders as RELION's jobs do
(``Tomograms/job007/tomograms/rec_TS_01.mrc`` → ``External/job013/tomograms/rec_TS_01_deconv.mrc``),
then the input STAR file again with the tomogram column pointing at the new files (and, after a
rescale, the new voxel size: ``rlnTomoTomogramBinning`` of a RELION 5 tomogram set, or
``rlnMicrographPixelSize`` of a micrograph list), so a segmentation job can take it as its input.
That STAR file is the job's output node.

The step and its options are the engine's (:func:`bilayer.preprocess.steps.preprocess_options`):
each ``--<name>`` parameter is the option of that name, ``--settings FILE`` reads a JSON or YAML
file of them. Every tomogram is checked before the first is processed; a tomogram whose output is
there is skipped, so continuing a killed or aborted job does the rest (with the same settings).
"""

from __future__ import annotations

import argparse
import enum
import sys
from pathlib import Path
from typing import Sequence

from bilayer.checks import choices_text
from bilayer.errors import ConfigError
from bilayer.io import atomic_open
from bilayer.preprocess.deconvolve import DeconvolutionOptions
from bilayer.preprocess.spectrum import SpectrumMatching
from bilayer.preprocess.steps import PreprocessOptions, Step, default_destination, plan_preprocessing, \
    preprocess_file, preprocess_options
from bilayer_relion._job import Job, JobParser, Node, NodeType, check_distinct, keep_settings, output_folder, \
    run_program, yes_no
from bilayer_relion.star import AUTO, MICROGRAPH_PIXEL_SIZE, TILT_SERIES_PIXEL_SIZE, TOMOGRAM_BINNING, ListKind, \
    TomogramList, read_tomogram_list, star_text

__all__ = ["PROG", "SETTINGS_FILE", "build_parser", "job_options", "main", "run"]

PROG = "bilayer-relion-preprocess"
#: The settings a job's outputs were made with; a continued job must use the same.
SETTINGS_FILE = "bilayer_preprocess.json"
_MATCHING = SpectrumMatching()
_DECONV = DeconvolutionOptions()


def build_parser() -> JobParser:
    """The job's arguments: RELION's, and the parameters (``--<label> <value>``)."""
    p = JobParser(PROG, "Preprocess tomograms as MemBrain-seg's tomo_preprocessing does (rescale, match "
                  "spectrum, deconvolve) as a RELION External job.")
    p.add_option("settings", metavar="FILE", help="JSON or YAML file of preprocessing options (these parameters' "
                 "names); parameters given here override it.")
    p.add_option("step", help=f"What to do: {choices_text(Step)}.")
    p.add_option("voxel_size", kind=float, metavar="A", help="Voxel size in Å of every input, replacing the STAR "
                 "file's. [default: from the STAR file, else the MRC header]")
    p.add_option("tomogram_column", metavar="LABEL", help="STAR column naming the tomograms; the output STAR names "
                 f"the new files in the same column. [default: {AUTO}: the reconstructed tomogram]")
    p.add_option("target_voxel_size", kind=float, metavar="A", help="rescale: the voxel size to resample to (Å), "
                 "e.g. 10 for MemBrain-seg's models.")
    p.add_option("smooth_edge", kind=yes_no, help="rescale: taper the kept spectrum with MemBrain-seg's ellipsoid "
                 f"and cosine edge, against ringing. [default: {_yes(PreprocessOptions.smooth_edge)}]")
    p.add_option("target_spectrum", metavar="TSV", help="match-spectrum: the spectrum to match (from bilayer "
                 "preprocess spectrum or MemBrain-seg's extract_spectrum).")
    p.add_option("cutoff", kind=int, help="match-spectrum: no gain from this frequency bin on (can only lower the "
                 "automatic cutoff). [default: automatic]")
    p.add_option("smoothen", kind=float, help="match-spectrum: width in bins of the roll-off before the cutoff. "
                 f"[default: {_MATCHING.smoothen:g}]")
    p.add_option("almost_zero_cutoff", kind=yes_no, help="match-spectrum: cut before either spectrum nears zero. "
                 f"[default: {_yes(_MATCHING.almost_zero_cutoff)}]")
    p.add_option("shrink_excessive_value", kind=float, help="match-spectrum: clip gains above this. "
                 f"[default: {_MATCHING.shrink_excessive_value:g}]")
    for name, text in _DECONV_HELP.items():
        default = getattr(_DECONV, name)
        if isinstance(default, bool):
            kind, shown = yes_no, _yes(default)
        elif isinstance(default, enum.Enum):
            kind, shown, text = str, default.value, f"{text} {choices_text(type(default))}."
        else:
            kind, shown = float, f"{default:g}"
        p.add_option(name, kind=kind, help=f"deconvolve: {text} [default: {shown}]")
    return p


_DECONV_HELP = {
    "defocus": "defocus in Å (positive underfocus) of the tilt series.",
    "amplitude_contrast": "amplitude contrast fraction.",
    "cs": "spherical aberration in mm.",
    "voltage": "acceleration voltage in kV.",
    "strength": "strength of the filter (SNR falloff offset).",
    "falloff": "how fast the SNR falls with frequency.",
    "highpass_fraction": "high-pass cut-on as a fraction of Nyquist.",
    "lowpass": "roll the SNR off to zero at the first CTF zero.",
    "phase_flip": "only flip the phases where the CTF is negative, instead of the Wiener-like filter.",
    "frequencies": "the frequency grid: membrain (MemBrain-seg's exact output) or physical:",
}


def job_options(args: argparse.Namespace) -> PreprocessOptions:
    """The engine's options from the job's parameters (through its one merge point)."""
    given = {name: getattr(args, name) for name in PreprocessOptions.names() if hasattr(args, name)}
    return preprocess_options(args.settings or None, **given)


def run(args: argparse.Namespace, job: Job) -> list[Node]:
    """Preprocess every tomogram of ``args.in_mics`` not done yet; returns the output node.

    Raises:
        BilayerError: a bad list, option or tomogram (before any work).
    """
    if not args.in_mics:
        raise ConfigError("give the tomograms with --in_mics STAR (RELION: 'Input micrographs' on the I/O tab)")
    options = job_options(args)
    tomograms = read_tomogram_list(args.in_mics, column=args.tomogram_column or AUTO, voxel_size=options.voxel_size)
    outputs = [default_destination(t.path, output_folder(job.folder, t.path), options.step)
               for t in tomograms.tomograms]
    check_distinct([(t.ts_id, out) for t, out in zip(tomograms.tomograms, outputs)], tomograms.source)
    keep_settings(job.folder, SETTINGS_FILE, any(p.exists() for p in outputs),
                  {**options.to_dict(), "tomogram_column": tomograms.column})
    todo = [(t, out) for t, out in zip(tomograms.tomograms, outputs) if not out.is_file()]
    print(f"{len(outputs)} tomogram(s) in {tomograms.source} ({tomograms.kind.value}, column {tomograms.column}); "
          f"{len(outputs) - len(todo)} finished before, {len(todo)} to do: {options.step.value}")
    for _, out in todo:
        out.parent.mkdir(parents=True, exist_ok=True)
    plans = plan_preprocessing([t.path for t, _ in todo], [out for _, out in todo], options,
                               voxel_sizes=[t.voxel_size for t, _ in todo], overwrite=True)
    for i, ((tomogram, _), plan) in enumerate(zip(todo, plans), 1):
        job.check_abort()
        print(f"[{i}/{len(plans)}] {tomogram.ts_id}: {plan.source} at {plan.voxel_size:g} Å")
        written = preprocess_file(plan, options, overwrite=True)
        print(f"  {written} at {plan.output_voxel_size:g} Å")
    star = job.folder / tomograms.source.name
    with atomic_open(star, overwrite=True, protect=[tomograms.source]) as f:
        f.write(star_text(_output_table(tomograms, outputs, options), tomograms.version).encode())
    print(f"wrote {star}")
    kind = NodeType.TOMOGRAM_SET if tomograms.kind is ListKind.TOMOGRAM_SET else NodeType.MICROGRAPH_SET
    return [Node(star, kind)]


def _output_table(tomograms: TomogramList, outputs: Sequence[Path], options: PreprocessOptions) -> dict:
    """The input's tables with the tomogram column naming ``outputs`` and, after a rescale, the new voxel size."""
    columns: dict[str, list[str]] = {tomograms.column: [str(p) for p in outputs]}
    if options.step is Step.RESCALE:
        size = float(options.target_voxel_size)  # type: ignore[arg-type]
        if tomograms.kind is ListKind.TOMOGRAM_SET:
            pixel = [float(v) for v in tomograms.table[TILT_SERIES_PIXEL_SIZE]]
            columns[TOMOGRAM_BINNING] = [f"{size / p:.6f}" for p in pixel]
        else:
            columns[MICROGRAPH_PIXEL_SIZE] = [f"{size:.6f}"] * len(outputs)
    return tomograms.with_columns(columns)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit status."""
    return run_program(argv, build_parser(), run)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
