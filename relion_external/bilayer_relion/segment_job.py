"""``bilayer-relion-segment``: membrane segmentation as a RELION External job.

For each tomogram of the list given with ``--in_mics`` it writes ``<stem>_seg.mrc`` (int8 0/1,
with the voxel size from the STAR file) and, on request, scores, components, skeleton, the
uncertainty map, masks at extra thresholds and a preview, into the job folder, below the input's
own folders as RELION's jobs do
(``Tomograms/job007/tomograms/rec_TS_01.mrc`` → ``External/job012/tomograms/rec_TS_01_seg.mrc``).
It then writes the input STAR file again with columns naming the outputs that have one
(:data:`~bilayer_relion.star.MEMBRANE_COLUMNS`), and the output nodes: that STAR file and every
mask (those at extra thresholds too).

The job folder is a resumable run of the engine (:func:`bilayer.batch.runner.run_batch`, what
``bilayer segment --out`` runs): ``bilayer_run.json`` holds the settings and the model, each
tomogram is claimed (``claims/``) and recorded when done or failed (``records/``), and
``summary.json`` / ``summary.csv`` list them. Continuing the job skips the tomograms recorded done,
redoes one a killed job left unfinished, takes failed ones again, and refuses other settings;
two runs of the job at once never do one tomogram twice. A job folder of an earlier Bilayer
(``bilayer_segment.json``, no run record) is continued by segmenting its tomograms again. The
tomograms to do are checked before the first window (files, voxel sizes, memory, disk: a problem
fails the job before any work); one that fails during the work leaves no outputs and the others
go on (the job then ends FAILURE). Several GPU ids (``--gpu 0,1``) run one worker process per GPU
(:func:`bilayer.batch.workers.run_workers`).

Options are the engine's (:func:`bilayer.infer.config.segment_options`): each ``--<name>``
parameter is the option of that name, ``--settings FILE`` reads a JSON or YAML file of them, and
``--gpu`` is RELION's device field.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from bilayer.batch.inputs import BatchInput
from bilayer.batch.records import RUN_FILE
from bilayer.batch.runner import BatchReport, Outcome, changed_run_settings
from bilayer.checks import choices_text
from bilayer.errors import ConfigError
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, SegmentOptions, TtaGrid, \
    segment_options
from bilayer.io import atomic_open, file_identity
from bilayer_relion._job import Job, JobFailed, JobParser, Node, NodeType, check_distinct, gpu_devices, \
    output_folder, run_program, yes_no
from bilayer_relion.star import AUTO, MEMBRANE_COLUMNS, ListKind, TomogramList, read_tomogram_list, star_text

__all__ = ["OLD_SETTINGS_FILE", "PROG", "build_parser", "job_devices", "job_options", "main", "run"]

PROG = "bilayer-relion-segment"
#: Where the job of an earlier Bilayer (before runs were recorded) kept its settings.
OLD_SETTINGS_FILE = "bilayer_segment.json"
_INFER = InferenceConfig()
_OUTPUTS = OutputOptions()
#: How often the job looks for RELION's abort file while worker processes segment (seconds).
_ABORT_POLL = 1.0


def build_parser() -> JobParser:
    """The job's arguments: RELION's, and the parameters (``--<label> <value>``)."""
    p = JobParser(PROG, "Segment membranes in tomograms (MemBrain v2 method) as a RELION External job.")
    p.add_option("settings", metavar="FILE", help="JSON or YAML file of segmentation options (these parameters' "
                 "names); parameters given here override it.")
    p.add_option("model", metavar="CHECKPOINT", help="Bilayer checkpoint or MemBrain-seg .ckpt (read safely). "
                 "[default: the embedded default model]")
    p.add_option("threshold", kind=float, help="Membrane where the network's score (a logit) exceeds this; "
                 f"higher gives thinner masks. [default: {_INFER.threshold:g}]")
    p.add_option("tta", kind=yes_no, help="Average the 8 mirrored copies of every window (8x slower, slightly "
                 f"better). [default: {_yes(_INFER.tta)}]")
    p.add_option("tta_grid", help=f"Where the mirrored copies' windows go: {choices_text(TtaGrid)} (membrain gives "
                 f"MemBrain-seg's exact scores). [default: {_INFER.tta_grid.value}]")
    p.add_option("window", kind=int, help="Window edge in the model's voxels, a multiple of 32. "
                 f"[default: {_INFER.window}]")
    p.add_option("fit_window", kind=yes_no, help="Grow the window by up to 32 voxels where that predicts fewer "
                 f"voxels; no places MemBrain-seg's windows. [default: {_yes(_INFER.fit_window)}]")
    p.add_option("overlap", kind=float, help="Fraction of a window shared with its neighbours. "
                 f"[default: {_INFER.overlap:g}]")
    p.add_option("padding", help="What fills a window past the faces of a tomogram thinner than it: "
                 f"{choices_text(Padding)} (zeros is MemBrain-seg's). [default: {_INFER.padding.value}]")
    p.add_option("rescale", kind=yes_no, help="Resample windows to the model's voxel size and back; no only for "
                 f"tomograms already at it. [default: {_yes(_INFER.rescale)}]")
    p.add_option("rescale_like_membrain", kind=yes_no, help="Resample exactly as MemBrain-seg, including its "
                 f"(old/new)^3 intensity scaling. [default: {_yes(_INFER.rescale_like_membrain)}]")
    p.add_option("scores", kind=yes_no, help="Also write <stem>_scores.mrc (float32 logits). "
                 f"[default: {_yes(_OUTPUTS.scores)}]")
    p.add_option("components", kind=yes_no, help="Also write <stem>_components.mrc (connected membranes, 1 = "
                 f"largest). [default: {_yes(_OUTPUTS.components)}]")
    p.add_option("min_size", kind=int, help="With components: drop membranes smaller than this many voxels. "
                 f"[default: {_OUTPUTS.min_size}]")
    p.add_option("skeleton", kind=yes_no, help="Also write <stem>_skeleton.mrc (one-voxel surface skeleton). "
                 f"[default: {_yes(_OUTPUTS.skeleton)}]")
    p.add_option("uncertainty", kind=yes_no, help="Also write <stem>_uncertainty.mrc: how much the 8 mirrored copies "
                 "of test-time augmentation disagree (variance of their membrane probabilities, as MemBrain-seg's "
                 f"uncertainty map); needs tta yes. [default: {_yes(_OUTPUTS.uncertainty)}]")
    p.add_option("smooth_uncertainty", kind=yes_no, help="MemBrain-seg's smoothing of the uncertainty map (mask "
                 "voxels take their membrane core's value, then a 5x5 median per section); no: the raw variance. "
                 f"[default: {_yes(_OUTPUTS.smooth_uncertainty)}]")
    p.add_option("extra_thresholds", metavar="T,T,...", help="Also write <stem>_seg_t<T>.mrc, the mask at each of "
                 "these thresholds (logits, e.g. 0.5,1.5), from the same scores. [default: none]")
    p.add_option("preview", kind=yes_no, help=f"Write <stem>_preview.png. [default: {_yes(_OUTPUTS.preview)}]")
    p.add_option("gpu", metavar="ID", help="GPU to use (e.g. 0), or cpu. [default: the first GPU if any, else the CPU]")
    p.add_option("precision", help=f"Arithmetic of the network: {choices_text(Precision)}. "
                 f"[default: {_INFER.precision.value}]")
    p.add_option("batch_size", kind=int, help=f"Windows per forward pass. [default: {_INFER.batch_size}]")
    p.add_option("tomogram_column", metavar="LABEL", help="STAR column naming the tomograms, e.g. "
                 f"rlnTomoReconstructedTomogramDenoised. [default: {AUTO}: the reconstructed tomogram]")
    p.add_option("voxel_size", kind=float, metavar="A", help="Voxel size in Å for every tomogram, replacing the "
                 "STAR file's. [default: from the STAR file, else the MRC header]")
    return p


def run(args: argparse.Namespace, job: Job) -> list[Node]:
    """Segment every tomogram of ``args.in_mics`` not done yet; returns the output nodes.

    Raises:
        BilayerError: a bad list, option or model; changed settings; JobFailed when tomograms failed
            or another run of this job still holds some.
    """
    if not args.in_mics:
        raise ConfigError("give the tomograms with --in_mics STAR (RELION: 'Input micrographs' on the I/O tab)")
    options = job_options(args)
    devices = job_devices(args, options)
    outputs = options.outputs
    tomograms = read_tomogram_list(args.in_mics, column=args.tomogram_column or AUTO, voxel_size=options.voxel_size)
    folders = [output_folder(job.folder, tomo.path) for tomo in tomograms.tomograms]
    paths = [outputs.paths(tomo.path, folder) for tomo, folder in zip(tomograms.tomograms, folders)]
    check_distinct([(tomo.ts_id, p["mask"]) for tomo, p in zip(tomograms.tomograms, paths)], tomograms.source)
    old = (job.folder / OLD_SETTINGS_FILE).is_file() and not (job.folder / RUN_FILE).is_file()
    if old:
        print(f"note: {job.folder} was made by an earlier Bilayer, which kept no records of its tomograms: "
              "every tomogram is segmented again and recorded")
    job.check_abort()
    report = _segment(tomograms, folders, options, devices, job)
    _check(report, tomograms)
    star = job.folder / tomograms.source.name
    columns = {MEMBRANE_COLUMNS[kind]: [str(p[kind]) for p in paths] for kind in paths[0] if kind in MEMBRANE_COLUMNS}
    with atomic_open(star, overwrite=True, protect=[tomograms.source]) as f:
        f.write(star_text(tomograms.with_columns(columns), tomograms.version).encode())
    print(f"wrote {star}")
    star_type = NodeType.TOMOGRAM_SET if tomograms.kind is ListKind.TOMOGRAM_SET else NodeType.MICROGRAPH_SET
    masks = ("mask", *outputs.extra_mask_kinds.values())
    return [Node(star, star_type), *(Node(p[kind], NodeType.MASK) for p in paths for kind in masks)]


def job_options(args: argparse.Namespace) -> SegmentOptions:
    """The engine's options from the job's parameters (through its one merge point); the device
    is the GPU field's first."""
    given = {name: getattr(args, name) for name in SegmentOptions.names() if name != "device" and hasattr(args, name)}
    device = gpu_devices(args.gpu)[0] if args.gpu is not None else None
    return segment_options(args.settings or None, device=device, **given)


def job_devices(args: argparse.Namespace, options: SegmentOptions) -> list[str]:
    """One device per worker: each GPU of the GPU field (``0,1`` → ``cuda:0``, ``cuda:1``), else
    ``options.device`` (a settings file's, or ``auto``)."""
    return gpu_devices(args.gpu) if args.gpu is not None else [options.device]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit status."""
    return run_program(argv, build_parser(), run)


def _segment(tomograms: TomogramList, folders: list[Path], options: SegmentOptions, devices: list[str],
             job: Job) -> BatchReport:
    """Run the engine's resumable run in the job folder: in this process on one device, polling for
    an abort between tomograms and windows, or with one worker process per device."""
    sources = [BatchInput(tomo.path, tomo.ts_id, tomo.voxel_size, f"{tomograms.source} row {tomo.row}")
               for tomo in tomograms.tomograms]
    names = {file_identity(tomo.path): tomo.ts_id for tomo in tomograms.tomograms}
    counts = {"to do": 0, "started": 0, "finished": 0}

    def started(report: BatchReport, to_do: int) -> None:
        (job.folder / OLD_SETTINGS_FILE).unlink(missing_ok=True)  # the run record (bilayer_run.json) replaces it
        job.check_abort()
        counts["to do"] = to_do
        failed = f", {len(report.failed_before)} failed before" if report.failed_before else ""
        print(f"{len(sources)} tomogram(s) in {tomograms.source} ({tomograms.kind.value}, column {tomograms.column}); "
              f"{len(report.done_before)} finished before{failed}, {to_do} to do")

    def announce(plan: Any) -> Any:
        """Before each tomogram: poll for an abort and say what is next; the window progress polls too."""
        job.check_abort()
        counts["started"] += 1
        print(f"[{counts['started']}/{counts['to do']}] {names[file_identity(plan.source)]}: {plan.source} at "
              f"{plan.volume.isotropic_voxel_size:g} Å")
        return job.check_abort

    def tell(outcome: Outcome) -> None:
        name = names.get(file_identity(outcome.tomogram), outcome.tomogram.name)
        if outcome.status == "done" and outcome.worker:
            counts["finished"] += 1
            print(f"[{counts['finished']}/{counts['to do']}] {name} ({outcome.worker}): {outcome.summary}")
        elif outcome.status == "done":
            print(f"  {outcome.summary}")
        elif outcome.status in ("failed", "stopped"):
            print(f"{PROG}: error: {name}: {' '.join(str(outcome.error).split())}", file=sys.stderr, flush=True)
        elif outcome.status == "held":
            print(f"  {name}: another run of this job is segmenting it")

    folder_of = [str(f) for f in folders]
    try:
        if len(devices) > 1:
            from bilayer.batch.workers import run_workers

            print(f"one worker per device: {', '.join(devices)}")
            with job.abort_watch(_ABORT_POLL):
                return run_workers(sources, job.folder, options, devices, folders=folder_of, retry_failed=True,
                                   overwrite=True, on_start=started, on_outcome=tell)
        from bilayer.batch.runner import run_batch
        from bilayer.infer.predictor import Predictor

        options = replace(options, device=devices[0])
        predictor = Predictor.from_checkpoint(options.model, options.inference, options.device)
        dtype = str(predictor.compute_dtype).removeprefix("torch.")
        print(f"model {predictor.source} ({predictor.info.voxel_size:g} Å) on {predictor.device}, {dtype}")
        return run_batch(sources, job.folder, options, predictor, folders=folder_of, retry_failed=True,
                         overwrite=True, progress=announce, on_start=started, on_outcome=tell)
    except ConfigError:
        changed = changed_run_settings(job.folder, options)
        if changed:
            raise ConfigError(f"{job.folder} holds results made with other settings ({', '.join(changed)}; see "
                              f"{job.folder / RUN_FILE}); continue it with the same settings, or run a new job") \
                from None
        raise


def _check(report: BatchReport, tomograms: TomogramList) -> None:
    """Fail the job where tomograms failed, the run was stopped or another run holds tomograms."""
    names = {file_identity(tomo.path): tomo.ts_id for tomo in tomograms.tomograms}

    def listed(paths: list[Path]) -> str:
        return ", ".join(names.get(file_identity(p), p.name) for p in paths)

    if report.stopped is not None:
        raise JobFailed(f"the job stopped: {' '.join(str(report.stopped).split())}; fix it and continue the job: "
                        "finished tomograms are kept")
    failed = report.failed + report.failed_before
    if failed:
        raise JobFailed(f"{len(failed)} of {len(tomograms.tomograms)} tomogram(s) failed ({listed(failed)}; see the "
                        "errors above and summary.csv in the job folder); fix them and continue the job: finished "
                        "tomograms are kept")
    if report.held:
        raise JobFailed(f"{len(report.held)} tomogram(s) ({listed(report.held)}) are being segmented by another run "
                        "of this job; continue the job when it has finished")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
