"""The training commands of ``bilayer``: ``train``, ``finetune`` and ``evaluate``.

Settings come, later winning, from the engine's defaults (MemBrain-seg's recipe), the
fine-tuning defaults, a ``--config`` file (JSON or YAML, :class:`TrainConfig` fields) and the
command-line options. Data-parallel training: ``torchrun --nproc-per-node N -m bilayer train ...``.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from bilayer.data.layout import IMAGE_TAG
from bilayer.errors import ConfigError
from bilayer.io.naming import OUTPUT_SUFFIXES

__all__ = ["evaluate", "finetune", "train"]

_PATH = click.Path(path_type=Path)


def _training_options(command: Callable) -> Callable:
    """The options ``train`` and ``finetune`` share."""
    options = [
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Run folder: checkpoints, metrics.csv, curves.png, state.pt (a run there is continued)."),
        click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="JSON or YAML file of training settings; the options below override it."),
        click.option("--synthetic", type=click.IntRange(min=1), default=None,
                     help="Train on this many synthetic patches per epoch, generated on the fly, "
                          "instead of (or when no) DATASET."),
        click.option("--synthetic-val", type=click.IntRange(min=0), default=8, show_default=True,
                     help="With --synthetic: fixed synthetic validation patches (other seeds)."),
        click.option("--synth-config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                     help="JSON file of generator settings (SynthConfig fields) for --synthetic."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (poly schedule ends there)."),
        click.option("--steps-per-epoch", type=click.IntRange(min=0), default=None,
                     help="Optimiser steps per epoch (0: one pass over the training set)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Patches per step and process."),
        click.option("--patch-size", type=click.IntRange(min=32), default=None,
                     help="Patch edge in voxels, a multiple of 32."),
        click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate (SGD, Nesterov momentum 0.99, poly-0.9 schedule)."),
        click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Voxel size of the training data in Å, stored in the model."),
        click.option("--time-limit", type=click.FloatRange(min=0), default=None, metavar="MINUTES",
                     help="Wall-clock minutes the run may take (a job's wall time, a borrowed GPU); the learning "
                          "rate then decays over them and the run stops, validated and saved, once they are "
                          "spent. 0: no limit."),
        click.option("--validate-every", type=click.IntRange(min=1), default=None, help="Validate every N epochs."),
        click.option("--surface-dice/--no-surface-dice", default=None,
                     help="Add the Surface-Dice loss (MemBrain v2)."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="MemBrain-seg's augmentations, incl. Fourier amplitude and missing wedge."),
        click.option("--workers", "num_workers", type=click.IntRange(min=0), default=None,
                     help="Data-loading processes."),
        click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default=None,
                     help="Arithmetic of the forward pass (auto: bfloat16 where the hardware has it)."),
        click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of weights, data and augmentation."),
        click.option("--compile/--no-compile", "compile_network", default=None,
                     help="torch.compile the network (faster steps after a minute or two of compiling; default on)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--restart", is_flag=True, help="Start afresh instead of continuing a run in --out."),
        click.option("--slurm", default=None, metavar="KEY=VALUE,...",
                     help="Submit the training to SLURM as one job and return: e.g. partition=gpu,gpus_per_node=4,"
                          "time=24:00:00 (one data-parallel process per GPU; tasks= sets the processes per node, "
                          "nodes= the nodes). Resubmit the same command to continue a run that was stopped."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("dataset", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@_training_options
def train(dataset: Path | None, **options: Any) -> None:
    """Train a membrane model on DATASET (imagesTr/, labelsTr/, imagesVal/, labelsVal/) or on
    synthetic patches (--synthetic N)."""
    _run_training(dataset, None, options)


@click.command()
@click.argument("dataset", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_path", type=_PATH, required=True,
              help="Checkpoint to start from: Bilayer's own or a MemBrain-seg .ckpt.")
@_training_options
def finetune(dataset: Path | None, model_path: Path, **options: Any) -> None:
    """Fine-tune a model (Bilayer's or MemBrain-seg's) on DATASET or synthetic patches;
    MemBrain-seg's fine-tuning defaults: learning rate 1e-5, 100 epochs."""
    _run_training(dataset, model_path, options)


def _run_training(dataset: Path | None, model_path: Path | None, options: dict[str, Any]) -> None:
    slurm = options.pop("slurm", None)
    if slurm is not None:
        _submit_training(dataset, model_path, options, slurm)
        return
    from bilayer.data import training_data
    from bilayer.model import load_checkpoint
    from bilayer.train import read_settings, training_config
    from bilayer.train import train as run

    if dataset is None and options["synthetic"] is None:
        raise click.UsageError("give a DATASET folder or --synthetic N")
    if dataset is not None and options["synthetic"] is not None:
        raise click.UsageError("give either a DATASET folder or --synthetic N, not both")
    init = load_checkpoint(model_path) if model_path is not None else None
    fields = ("epochs", "steps_per_epoch", "batch_size", "patch_size", "learning_rate", "voxel_size",
              "validate_every", "num_workers", "precision", "seed", "time_limit")
    config = training_config(options["config_path"], finetune=init is not None, augment=options["augment"],
                             surface_dice=options["surface_dice"], compile=options["compile_network"],
                             **{k: options[k] for k in fields})
    synth = read_settings(options["synth_config"])
    train_data, val_data = training_data(config, dataset, synthetic=options["synthetic"],
                                         synthetic_val=options["synthetic_val"], synth_settings=synth)

    def report(epoch: int, row: dict[str, Any]) -> None:
        click.echo(f"epoch {epoch}/{config.epochs}  " + "  ".join(
            f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "seconds")
            + f"  {row['seconds']:.1f} s")

    with _training_progress_on_stderr():
        result = run(config, train_data, options["out_dir"], val_data=val_data, init=init,
                     device=options["device"], resume=not options["restart"], on_epoch=report)
    click.echo(f"best: {result.best}\nlast: {result.last}\nmetrics: {result.folder / 'metrics.csv'}")


def _submit_training(dataset: Path | None, model_path: Path | None, options: dict[str, Any], slurm: str) -> None:
    """``--slurm``: submit this training (every option but --slurm) as one data-parallel SLURM job."""
    from bilayer.batch.slurm import SLURM_FOLDER, parse_slurm, submit_distributed
    from bilayer.io import ensure_output_dir

    if dataset is None and options["synthetic"] is None:
        raise click.UsageError("give a DATASET folder or --synthetic N")
    dataset = None if dataset is None else dataset.absolute()
    model_path = None if model_path is None else model_path.absolute()
    options = {**options, "out_dir": ensure_output_dir(options["out_dir"]).absolute(),  # the nodes' paths
               **{k: Path(options[k]).absolute() for k in ("config_path", "synth_config") if options[k] is not None}}
    job = submit_distributed(_training_task, (dataset, model_path, options), parse_slurm(slurm), options["out_dir"])
    click.echo(f"submitted SLURM job {job.job_id}: training into {options['out_dir']} (logs in "
               f"{options['out_dir'] / SLURM_FOLDER}); follow it with squeue -j {job.job_id} and "
               f"{options['out_dir'] / 'metrics.csv'}")


def _training_task(dataset: Path | None, model_path: Path | None, options: dict[str, Any]) -> None:
    """What each process of a ``--slurm`` training job runs (torch.distributed's variables are set)."""
    _run_training(dataset, model_path, options)


@contextlib.contextmanager
def _training_progress_on_stderr() -> Iterator[None]:
    """The trainer's progress lines (every tenth of an epoch) on stderr while training, for logs of long runs.

    The logger is restored afterwards, so a command run in-process (notebook, tests) leaves no handler behind.
    """
    import logging

    logger = logging.getLogger("bilayer.train")
    if logger.getEffectiveLevel() <= logging.INFO:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@click.command()
@click.argument("predictions", nargs=-1, required=True, type=_PATH)
@click.option("--gt", "truths", multiple=True, type=_PATH,
              help="Ground-truth labels (0, 1, 2 = ignore), one per prediction, in the same order.")
@click.option("--gt-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Instead of --gt: the folder of labels, found by name (tomo_seg.mrc or tomo_0000_seg.mrc: "
                   "tomo.mrc, as bilayer segment and nnU-Net-style datasets name them).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as CSV here.")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="Membrane where a prediction exceeds this (masks 0/1, or scores/logits).")
@click.option("--overwrite", is_flag=True, help="Replace an existing CSV.")
def evaluate(predictions: Sequence[Path], truths: Sequence[Path], gt_dir: Path | None, csv_path: Path | None,
             threshold: float, overwrite: bool) -> None:
    """Dice, Surface-Dice, precision and recall of PREDICTIONS against --gt labels (or those in
    --gt-dir), per tomogram."""
    import numpy as np

    from bilayer.io import read_volume
    from bilayer.io.atomic import atomic_open, check_output_path
    from bilayer.metrics import segmentation_scores

    if bool(truths) == (gt_dir is not None):
        raise click.UsageError("give the labels either as --gt files (one per prediction) or as --gt-dir")
    if gt_dir is not None:
        truths = _labels_in(gt_dir, predictions)
    if len(truths) != len(predictions):
        raise click.UsageError(f"{len(predictions)} predictions but {len(truths)} --gt files; give one --gt each")
    if csv_path is not None:
        check_output_path(csv_path, overwrite=overwrite, protect=[*predictions, *truths])
    rows = []
    for prediction, truth in zip(predictions, truths):
        pred, labels = read_volume(prediction), read_volume(truth)
        if pred.shape != labels.shape:
            raise ConfigError(f"{prediction} has shape {pred.shape} but {truth} has {labels.shape}; "
                              "compare a prediction with the labels of the same tomogram")
        scores = segmentation_scores(np.asarray(pred.data) > threshold, np.asarray(labels.data))
        rows.append({"prediction": str(prediction), "ground_truth": str(truth), **scores})
        click.echo(f"{prediction.name}: " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    if len(rows) > 1:
        keys = [k for k in rows[0] if k not in ("prediction", "ground_truth")]
        click.echo("mean: " + "  ".join(f"{k} {sum(r[k] for r in rows) / len(rows):.4f}" for k in keys))
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        with atomic_open(csv_path, overwrite=overwrite) as f:
            f.write(buffer.getvalue().encode())
        click.echo(f"wrote {csv_path}")


#: What ``bilayer segment`` appends to a tomogram's stem (its mask and scores).
_OUTPUT_TAGS = tuple(OUTPUT_SUFFIXES[k].removesuffix(".mrc") for k in ("mask", "scores"))


def _labels_in(folder: Path, predictions: Sequence[Path]) -> list[Path]:
    """The label file in ``folder`` of each prediction, by name: ``<stem>.mrc`` where the stem is
    the prediction's without ``_seg``/``_scores``, or without nnU-Net's ``_0000`` as well.

    Raises:
        click.UsageError: some prediction has no label there (all of them are named).
    """
    found, missing = [], []
    for prediction in predictions:
        stem = prediction.name.split(".")[0]
        for tag in _OUTPUT_TAGS:
            stem = stem.removesuffix(tag)
        candidates = [folder / f"{stem}.mrc"]
        if stem.endswith(IMAGE_TAG):
            candidates.append(folder / f"{stem.removesuffix(IMAGE_TAG)}.mrc")
        match = next((c for c in candidates if c.is_file()), None)
        if match is None:
            missing.append(f"{prediction.name} (no {' or '.join(c.name for c in candidates)})")
        found.append(match)
    if missing:
        raise click.UsageError(f"{folder} lacks the labels of {'; '.join(missing)}; name each label after its "
                               "tomogram, or give --gt files in the order of the predictions")
    return found
