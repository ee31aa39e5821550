"""``bilayer-relion-segment``: membrane segmentation as a RELION External job.

For each tomogram of the list given with ``--in_mics`` it writes ``<stem>_seg.mrc`` (int8 0/1,
with the voxel size from the STAR file) and, on request, scores, components, skeleton, the
uncertainty map, masks at extra thresholds and a preview, into the job folder, below the input's
own folders as RELION's jobs do
(``Tomograms/job007/tomograms/rec_TS_01.mrc`` → ``External/job012/tomograms/rec_TS_01_seg.mrc``).
It then writes the input STAR file again with columns naming the outputs that have one
(:data:`~bilayer_relion.star.MEMBRANE_COLUMNS`), and the output nodes: that STAR file and every
mask (those at extra thresholds too). A tomogram whose outputs are all there is skipped, so
continuing a killed or aborted job does the rest. The tomograms to do are checked before the
first window (files, voxel sizes, memory, disk: a problem fails the job before any work); one that
fails during the work leaves no outputs and the others go on (the job then ends FAILURE).

Options are the engine's (:func:`bilayer.infer.config.segment_options`): each ``--<name>``
parameter is the option of that name, ``--settings FILE`` reads a JSON or YAML file of them, and
``--gpu`` is RELION's device field.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bilayer.checks import choices_text
from bilayer.errors import ConfigError
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, SegmentOptions, TtaGrid, \
    segment_options
from bilayer.io import atomic_open
from bilayer_relion._job import Job, JobFailed, JobParser, Node, NodeType, check_distinct, device_from_gpu, \
    keep_settings, output_folder, run_program, yes_no
from bilayer_relion.star import AUTO, MEMBRANE_COLUMNS, ListKind, Tomogram, TomogramList, read_tomogram_list, star_text

__all__ = ["PROG", "SETTINGS_FILE", "build_parser", "main", "run"]

PROG = "bilayer-relion-segment"
#: The settings a job's outputs were made with; a continued job must use the same.
SETTINGS_FILE = "bilayer_segment.json"
_INFER = InferenceConfig()
_OUTPUTS = OutputOptions()
#: Options that do not change the outputs, so a continued job may change them.
_NOT_RECORDED = ("batch_size", "device")


@dataclass(frozen=True)
class _Item:
    """One tomogram and where its outputs go."""

    tomogram: Tomogram
    folder: Path
    outputs: dict[str, Path]

    @property
    def finished(self) -> bool:
        return all(p.is_file() for p in self.outputs.values())


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
        BilayerError: a bad list, option or model; JobFailed when tomograms failed.
    """
    if not args.in_mics:
        raise ConfigError("give the tomograms with --in_mics STAR (RELION: 'Input micrographs' on the I/O tab)")
    options = job_options(args)
    outputs = options.outputs
    tomograms = read_tomogram_list(args.in_mics, column=args.tomogram_column or AUTO, voxel_size=options.voxel_size)
    items = _plan(tomograms, job.folder, outputs)
    made = any(path.exists() for item in items for path in item.outputs.values())
    recorded = {k: v for k, v in options.to_dict().items() if k not in _NOT_RECORDED}
    keep_settings(job.folder, SETTINGS_FILE, made, {**recorded, "model": options.model or "default",
                                      "tomogram_column": tomograms.column})
    todo = [item for item in items if not item.finished]
    print(f"{len(items)} tomogram(s) in {tomograms.source} ({tomograms.kind.value}, column {tomograms.column}); "
          f"{len(items) - len(todo)} finished before, {len(todo)} to do")
    _segment(todo, options, job)
    star = job.folder / tomograms.source.name
    columns = {MEMBRANE_COLUMNS[kind]: [str(item.outputs[kind]) for item in items]
               for kind in items[0].outputs if kind in MEMBRANE_COLUMNS}
    with atomic_open(star, overwrite=True, protect=[tomograms.source]) as f:
        f.write(star_text(tomograms.with_columns(columns), tomograms.version).encode())
    print(f"wrote {star}")
    star_type = NodeType.TOMOGRAM_SET if tomograms.kind is ListKind.TOMOGRAM_SET else NodeType.MICROGRAPH_SET
    masks = ("mask", *outputs.extra_mask_kinds.values())
    return [Node(star, star_type), *(Node(item.outputs[kind], NodeType.MASK) for item in items for kind in masks)]


def job_options(args: argparse.Namespace) -> SegmentOptions:
    """The engine's options from the job's parameters (through its one merge point)."""
    given = {name: getattr(args, name) for name in SegmentOptions.names() if name != "device" and hasattr(args, name)}
    device = device_from_gpu(args.gpu) if args.gpu is not None else None
    return segment_options(args.settings or None, device=device, **given)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit status."""
    return run_program(argv, build_parser(), run)


def _segment(todo: list[_Item], options: SegmentOptions, job: Job) -> None:
    """Check, then segment ``todo`` with one loaded model, polling for an abort between tomograms and windows."""
    if not todo:
        return
    from bilayer.infer.predictor import Predictor
    from bilayer.infer.preflight import plan_segmentation
    from bilayer.infer.segmentation import segment_plans

    job.check_abort()
    predictor = Predictor.from_checkpoint(options.model, options.inference, options.device)
    dtype = str(predictor.compute_dtype).removeprefix("torch.")
    print(f"model {predictor.source} ({predictor.info.voxel_size:g} Å) on {predictor.device}, {dtype}")
    for item in todo:
        item.folder.mkdir(parents=True, exist_ok=True)
    plans = plan_segmentation([item.tomogram.path for item in todo], [item.folder for item in todo], predictor,
                              options.outputs, overwrite=True,
                              voxel_size=[item.tomogram.voxel_size for item in todo])  # the STAR's, else the header's
    names = {item.tomogram.path: item.tomogram.ts_id for item in todo}
    started: list[Path] = []

    def announce(plan: Any) -> Any:
        """Before each tomogram: poll for an abort and say what is next; the window progress polls too."""
        job.check_abort()
        started.append(plan.source)
        print(f"[{len(started)}/{len(plans)}] {names[plan.source]}: {plan.source} at "
              f"{plan.volume.isotropic_voxel_size:g} Å")
        return job.check_abort

    failed = []
    for plan, result in segment_plans(plans, predictor, options.outputs, overwrite=True, progress=announce):
        if isinstance(result, Exception):
            failed.append(names[plan.source])
            print(f"{PROG}: error: {failed[-1]}: {' '.join(str(result).split())}", file=sys.stderr, flush=True)
        else:
            print(f"  {result.summary()}")
    if failed:
        raise JobFailed(f"{len(failed)} of {len(todo)} tomogram(s) failed ({', '.join(failed)}; see the errors "
                        "above); fix them and continue the job: finished tomograms are kept")


def _plan(tomograms: TomogramList, job_folder: Path, outputs: OutputOptions) -> list[_Item]:
    """Each tomogram with its output folder and files; two tomograms may not share an output."""
    items = []
    for tomo in tomograms.tomograms:
        folder = output_folder(job_folder, tomo.path)
        items.append(_Item(tomo, folder, outputs.paths(tomo.path, folder)))
    check_distinct([(item.tomogram.ts_id, item.outputs["mask"]) for item in items], tomograms.source)
    return items


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
