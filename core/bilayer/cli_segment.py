"""``bilayer segment``, ``components`` and ``skeletonize``: the mask and what is made from it.

Options come from the engine's one contract (:class:`~bilayer.infer.config.SegmentOptions`):
defaults shown here are the engine's, ``--settings FILE`` (JSON or YAML) overrides them, and
options given on the command line override the file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from bilayer.cli_common import VOXEL_SIZE_HELP, echo_error, given_options
from bilayer.errors import OutputError
from bilayer.infer.config import InferenceConfig, OutputOptions, Padding, Precision, TtaGrid
from bilayer.io import output_name, write_volume

__all__ = ["components", "segment_command", "segment_options_from_args", "skeletonize_command", "threshold_command"]

_INFER = InferenceConfig()  # the engine's defaults, shown in --help
_OUTPUTS = OutputOptions()
#: Parameters of ``segment`` that are not segmentation options.
_NOT_OPTIONS = ("tomograms", "out_dir", "settings_file", "overwrite", "redo", "retry_failed", "workers", "devices",
                "tomogram_column", "slurm")


@click.command("segment")
@click.argument("tomograms", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tomogram-column", default="auto", show_default=True, metavar="LABEL",
              help="With a RELION STAR list: the column naming the tomograms (auto: the reconstructed tomogram, "
                   "or rlnMicrographName).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for <stem>_seg.mrc and the other outputs.")
@click.option("--settings", "settings_file", type=click.Path(path_type=Path), default=None,
              help="JSON or YAML file of segmentation options (the long option names with _, e.g. window: 192); "
                   "options given here override it.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Checkpoint: Bilayer's own, or a MemBrain-seg .ckpt (imported safely, no code runs). "
                   "[default: the embedded default model]")
@click.option("--tta/--no-tta", default=_INFER.tta, show_default=True,
              help="Average the 8 mirrored copies of every window (8x slower, slightly better).")
@click.option("--tta-grid", type=click.Choice([g.value for g in TtaGrid]), default=_INFER.tta_grid.value,
              show_default=True, help="membrain: MemBrain-seg's mirrored windows (its exact scores); window: mirror "
              "each window in place (one pass; eight with --uncertainty).")
@click.option("--window", type=click.IntRange(min=32), default=_INFER.window, show_default=True,
              help="Window edge in the model's voxels, a multiple of 32.")
@click.option("--fit-window/--fixed-window", default=_INFER.fit_window, show_default=True,
              help="Grow the window by up to 32 voxels where that predicts fewer voxels (e.g. one window "
                   "instead of eight for a 162³ tomogram; up to 1.7× the GPU memory of a 160³ window); "
                   "--fixed-window places MemBrain-seg's windows.")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=_INFER.overlap, show_default=True,
              help="Fraction of a window shared with its neighbours (MemBrain-seg uses 0.5).")
@click.option("--padding", type=click.Choice([p.value for p in Padding]), default=_INFER.padding.value,
              show_default=True, help="What fills a window along an axis the tomogram is shorter than: reflect: "
              "the tomogram mirrored; zeros: MemBrain-seg's (its exact scores; marks noise in thin tomograms).")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--rescale/--no-rescale", default=_INFER.rescale, show_default=True,
              help="Resample windows to the model's voxel size and back; --no-rescale only for tomograms already "
                   "at it.")
@click.option("--rescale-like-membrain", is_flag=True, default=_INFER.rescale_like_membrain,
              help="Resample exactly as MemBrain-seg, including its (old/new)³ intensity scaling.")
@click.option("--threshold", type=float, default=_INFER.threshold, show_default=True,
              help="Membrane where the network's score (a logit) exceeds this; higher gives thinner masks.")
@click.option("--scores", is_flag=True, default=_OUTPUTS.scores, help="Also write <stem>_scores.mrc (float32 logits).")
@click.option("--components", is_flag=True, default=_OUTPUTS.components,
              help="Also write <stem>_components.mrc (1 = largest membrane).")
@click.option("--min-size", type=click.IntRange(min=0), default=_OUTPUTS.min_size, show_default=True,
              help="With --components: drop membranes smaller than this many voxels.")
@click.option("--skeleton", is_flag=True, default=_OUTPUTS.skeleton,
              help="Also write <stem>_skeleton.mrc (one-voxel surface skeleton).")
@click.option("--uncertainty", is_flag=True, default=_OUTPUTS.uncertainty,
              help="Also write <stem>_uncertainty.mrc (float32): how much the 8 mirrored copies of --tta "
                   "disagree, the variance of their membrane probabilities (MemBrain-seg's --store-uncertainty-map). "
                   "Needs --tta.")
@click.option("--smooth-uncertainty/--raw-uncertainty", default=_OUTPUTS.smooth_uncertainty, show_default=True,
              help="MemBrain-seg's smoothing of the uncertainty map (mask voxels take their membrane core's value, "
                   "then a 5x5 median per section), or the raw variance.")
@click.option("--extra-threshold", "extra_thresholds", multiple=True, metavar="T",
              help="Also write <stem>_seg_t<T>.mrc, the mask at threshold T, from the same scores (as bilayer "
                   "threshold); repeat, or give several separated by commas.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--devices", default=None, metavar="LIST",
              help="One worker process per device, sharing the run's tomograms: e.g. cuda:0,cuda:1, or all "
                   "(every GPU); a device may repeat.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes on --device sharing the run's tomograms (on the CPU the cores are split "
                   "between them).")
@click.option("--slurm", default=None, metavar="KEY=VALUE,...",
              help="Submit the run to SLURM as one job array and return: e.g. partition=gpu,gpus_per_task=1,"
                   "time=4:00:00,tasks=8 (sbatch's settings with _ for -; tasks: the array's size, default up to 4). "
                   "Tasks share the tomograms through the run folder; rerun the command to resubmit what is left.")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_INFER.precision.value,
              show_default=True, help="Arithmetic of the network (auto: bfloat16 where the hardware has it).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_INFER.batch_size, show_default=True,
              help="Windows per forward pass (more is faster on a large GPU).")
@click.option("--preview/--no-preview", default=_OUTPUTS.preview, show_default=True, help="Write <stem>_preview.png.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs in a folder that is not yet a run "
              "folder (in a run folder, unfinished tomograms' outputs are the run's and are replaced anyway).")
@click.option("--redo", is_flag=True, help="Redo every tomogram of the run folder, with these settings.")
@click.option("--retry-failed", is_flag=True, help="Take the tomograms that failed in the run folder again.")
def segment_command(tomograms: tuple[Path, ...], out_dir: Path, settings_file: Path | None, overwrite: bool,
                    redo: bool, retry_failed: bool, workers: int | None, devices: str | None, tomogram_column: str,
                    slurm: str | None, **_: Any) -> int:
    """Segment membranes in tomograms: writes <stem>_seg.mrc (int8 0/1) per input.

    TOMOGRAMS: MRC files, globs ('tomos/*.mrc', quoted), text lists (.txt, .list or @file: one
    path or glob a line) and RELION tomogram STAR files, in any mix.

    Every input and output is checked before the first window (readable, 3-D, finite, a
    plausible voxel size, no output names shared or existing, memory and disk enough); any
    problem stops the run before it writes anything. The model is loaded once for all
    TOMOGRAMS. A tomogram that fails during the work leaves no outputs and the others go on;
    a full disk stops the run, keeping the tomograms finished before it. Exit status 2 if
    anything failed.

    --out is a run folder: bilayer_run.json (the settings and model), records/ (one per
    tomogram), summary.json and summary.csv. Rerun the same command to finish an interrupted
    run (finished tomograms are skipped; several processes may share the folder); other
    settings are refused unless --redo. 'bilayer status RUN' shows where a run stands.

    --workers N or --devices cuda:0,cuda:1 run one worker process per device on this machine;
    --slurm submits the run to a SLURM cluster as one job array and returns. Either way the
    workers share the tomograms through the run folder's claims.
    """
    from bilayer.batch.inputs import expand_inputs
    from bilayer.batch.runner import run_batch
    from bilayer.batch.workers import run_workers, worker_devices
    from bilayer.infer.config import segment_options
    from bilayer.infer.predictor import Predictor
    from bilayer.io import ensure_output_dir

    options = segment_options(settings_file, **given_options(exclude=_NOT_OPTIONS))
    inputs = expand_inputs(tomograms, tomogram_column=tomogram_column)
    folder = ensure_output_dir(out_dir)

    def started(report: Any, to_do: int) -> None:
        before = len(report.done_before) + len(report.failed_before)
        if before:
            failed = f" ({len(report.failed_before)} failed: --retry-failed takes them)" if report.failed_before else ""
            click.echo(f"{before} done before{failed}, {to_do} to do")

    def finished(outcome: Any) -> None:
        if outcome.status == "done":
            click.echo(f"[{outcome.worker}] {outcome.summary}" if outcome.worker else outcome.summary)
        elif outcome.status in ("failed", "stopped"):
            echo_error(outcome.error)
        elif outcome.status == "held":
            click.echo(f"{outcome.tomogram.name}: another process is segmenting it")

    if slurm is not None:
        return _submit(inputs, folder, options, slurm, workers, devices, redo=redo, retry_failed=retry_failed,
                       overwrite=overwrite, started=started)
    if workers is not None or devices is not None:
        chosen = worker_devices(devices, workers, options.device)
        if len(chosen) > 1:
            report = run_workers(inputs, folder, options, chosen, redo=redo, retry_failed=retry_failed,
                                 overwrite=overwrite, on_start=started, on_outcome=finished)
            for warning in report.warnings:
                click.echo(f"bilayer: warning: {warning}", err=True)
            if report.stopped is not None and not isinstance(report.stopped, OutputError):
                echo_error(report.stopped)
            return report.exit_status
        options = replace(options, device=chosen[0])
    predictor = Predictor.from_checkpoint(options.model, options.inference, options.device)
    report = run_batch(inputs, folder, options, predictor, redo=redo, retry_failed=retry_failed,
                       overwrite=overwrite, progress=lambda plan: _window_progress(plan.source.name),
                       on_start=started, on_outcome=finished)
    return report.exit_status


def _submit(inputs: Any, folder: Path, options: Any, slurm: str, workers: int | None, devices: str | None, *,
            redo: bool, retry_failed: bool, overwrite: bool, started: Any) -> int:
    """``--slurm``: check, submit one job array, say how to follow it."""
    from bilayer.batch.slurm import parse_slurm, submit_segment
    from bilayer.errors import ConfigError

    if workers is not None or devices is not None:
        raise ConfigError("--slurm runs one worker per array task; give tasks= (and gpus_per_task=) in --slurm "
                          "instead of --workers/--devices")
    submitted = submit_segment(inputs, folder, options, parse_slurm(slurm), redo=redo, retry_failed=retry_failed,
                               overwrite=overwrite)
    started(submitted.report, submitted.to_do)
    if submitted.job_id is None:
        click.echo("nothing to do: every tomogram is done")
        return submitted.report.exit_status
    click.echo(f"submitted SLURM job {submitted.job_id}: {submitted.tasks} task(s) for {submitted.to_do} "
               f"tomogram(s); follow it with: bilayer status {folder}  (logs in {submitted.log_folder})")
    return 0


def segment_options_from_args(args: Sequence[str]) -> Any:
    """The :class:`~bilayer.infer.config.SegmentOptions` ``bilayer segment ARGS`` runs with (the
    adapters' tests check with it that every option they set arrives)."""
    from bilayer.infer.config import segment_options

    with segment_command.make_context("segment", list(args)) as ctx:
        return segment_options(ctx.params["settings_file"], **given_options(exclude=_NOT_OPTIONS, ctx=ctx))


@click.command("components")
@click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <stem>_components.mrc. [default: beside each mask]")
@click.option("--min-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop membranes smaller than this many voxels.")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def components(masks: tuple[Path, ...], out_dir: Path | None, min_size: int, voxel_size: float | None,
               overwrite: bool) -> None:
    """Label connected membranes of binary masks (26-connectivity; 1 = the largest)."""
    from bilayer.postprocess import connected_components

    for path, volume, target in _each_mask(masks, out_dir, "components", overwrite, voxel_size):
        found = connected_components(np.asarray(volume.data) > 0, min_size=min_size)
        write_volume(target, volume.with_data(found.labels), dtype=found.mrc_dtype, overwrite=overwrite, protect=[path])
        click.echo(f"{target}  {found.count} components")


@click.command("skeletonize")
@click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <stem>_skeleton.mrc. [default: beside each mask]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def skeletonize_command(masks: tuple[Path, ...], out_dir: Path | None, voxel_size: float | None,
                        overwrite: bool) -> None:
    """One-voxel surface skeletons of membrane masks (MemBrain-seg's Hessian method)."""
    from bilayer.postprocess import skeletonize

    for path, volume, target in _each_mask(masks, out_dir, "skeleton", overwrite, voxel_size):
        skeleton = skeletonize(np.asarray(volume.data) > 0)
        write_volume(target, volume.with_data(skeleton.astype(np.int8)), overwrite=overwrite, protect=[path])
        click.echo(f"{target}  {int(skeleton.sum())} skeleton voxels")


@click.command("threshold")
@click.argument("scores", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-t", "--threshold", "thresholds", type=float, multiple=True, required=True,
              help="A threshold on the scores (logits; 0 is probability 0.5); repeat for several masks.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <stem>_seg_t<threshold>.mrc. [default: beside each scores file]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing masks.")
def threshold_command(scores: tuple[Path, ...], thresholds: tuple[float, ...], out_dir: Path | None,
                      voxel_size: float | None, overwrite: bool) -> None:
    """Masks from scores files (bilayer segment --scores) at other thresholds, without the network.

    Writes <stem>_seg_t<threshold>.mrc (int8 0/1) per scores file and threshold, with the scores'
    voxel size and origin; every input and output is checked before any is written.
    """
    from bilayer.errors import OutputError
    from bilayer.io import ensure_output_dir
    from bilayer.postprocess.threshold import plan_thresholds, write_thresholds

    folder = ensure_output_dir(out_dir) if out_dir is not None else None
    plans, claimed = [], {}
    for path in scores:  # all checked first: a refusal leaves nothing
        plan = plan_thresholds(path, thresholds, folder, voxel_size=voxel_size, overwrite=overwrite, protect=scores)
        for target in plan.paths.values():
            if claimed.setdefault(target, path) != path:
                raise OutputError(f"{claimed[target]} and {path} would both write {target}; rename one, or give "
                                  "separate output folders (--out)")
        plans.append(plan)
    for plan in plans:
        click.echo(write_thresholds(plan, overwrite=overwrite).summary())


def _each_mask(masks: Sequence[Path], out_dir: Path | None, kind: str, overwrite: bool,
               voxel_size: float | None = None) -> Any:
    """(path, volume, output path) per mask, after checking every input and output first; ``voxel_size``
    (Å) replaces the headers' and goes into the outputs."""
    from bilayer.errors import OutputError
    from bilayer.io import check_output_path, ensure_output_dir, read_volume

    targets: dict[Path, Path] = {}
    volumes = [read_volume(path, voxel_size=voxel_size) for path in masks]
    for path in masks:
        folder = ensure_output_dir(out_dir) if out_dir is not None else path.parent
        target = check_output_path(folder / output_name(path, kind), overwrite=overwrite, protect=masks)
        if target in targets:
            raise OutputError(f"{targets[target]} and {path} would both write {target}; rename one, or give "
                              "separate output folders")
        targets[target] = path
    for path, volume, target in zip(masks, volumes, targets):
        yield path, volume, target


def _window_progress(name: str) -> Any:
    """A window-progress callback: a bar on a terminal, else ``None``."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(desc=name, unit="window", leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update

