"""``bilayer-relion-train``: training or fine-tuning a membrane model as a RELION External job.

The tomograms come from a tomogram list (``--in_mics``) whose rows also name a label volume
(``--labels_column``, by default the masks column a segmentation job writes: segment, correct
the masks, train). Labels hold 0 background, 1 membrane, 2 ignore. The pairs are linked into a
MemBrain-seg-style dataset folder in the job folder (``dataset/imagesTr``, ``labelsTr`` and, with
``--validation``, ``imagesVal``, ``labelsVal``), every pair is checked before training starts,
and the run goes to ``training/`` (checkpoints, ``metrics.csv``, ``curves.png``). The output node
is the best checkpoint. A continued job resumes the run after its last finished epoch; the
abort file is checked after every epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from bilayer.data import Split
from bilayer.data.layout import case_id, link_pairs
from bilayer.errors import ConfigError, InputFileError
from bilayer.io import read_volume
from bilayer.train import training_config
from bilayer.train.config import FINETUNE_DEFAULTS, TrainConfig, TrainPrecision
from bilayer_relion._job import Job, JobParser, Node, NodeType, device_from_gpu, run_program, yes_no
from bilayer_relion.star import AUTO, MEMBRANE_COLUMNS, TomogramList, read_tomogram_list

__all__ = ["DATASET_FOLDER", "PROG", "RUN_FOLDER", "build_parser", "main", "run"]

PROG = "bilayer-relion-train"
DATASET_FOLDER = "dataset"
RUN_FOLDER = "training"
_DEFAULTS = TrainConfig()


def build_parser() -> JobParser:
    """The job's arguments: RELION's, and the parameters (``--<label> <value>``)."""
    p = JobParser(PROG, "Train or fine-tune a membrane segmentation model (MemBrain v2 method) as a RELION "
                        "External job.")
    p.add_option("model", metavar="CHECKPOINT", help="Fine-tune this checkpoint (Bilayer's or a MemBrain-seg .ckpt), "
                 "or 'default' for the embedded default model. [default: train a new network]")
    p.add_option("labels_column", metavar="LABEL", help="STAR column naming each tomogram's labels (0 background, "
                 f"1 membrane, 2 ignore). [default: {MEMBRANE_COLUMNS['mask']}]")
    p.add_option("validation", metavar="STAR", help="A second tomogram list with labels, for validation Dice and "
                 "the best checkpoint. [default: no validation; best = last]")
    p.add_option("config", metavar="FILE", help="JSON or YAML training settings (TrainConfig fields); the "
                 "parameters below override it.")
    p.add_option("epochs", kind=int, help=f"Epochs. [default: {_DEFAULTS.epochs}; "
                 f"fine-tuning {FINETUNE_DEFAULTS['epochs']}]")
    p.add_option("steps_per_epoch", kind=int, help="Optimiser steps per epoch (0: one crop per tomogram). "
                 f"[default: {_DEFAULTS.steps_per_epoch}]")
    p.add_option("time_limit", kind=float, metavar="MINUTES", help="Wall-clock minutes the training may take (the "
                 "queue's wall time, less a margin): the learning rate decays over them and the job stops, with its "
                 "checkpoints, once they are spent; a continued job counts the time already spent. [default: 0, "
                 "no limit]")
    p.add_option("batch_size", kind=int, help=f"Patches per step. [default: {_DEFAULTS.batch_size}]")
    p.add_option("patch_size", kind=int, help="Patch edge in voxels, a multiple of 32. "
                 f"[default: {_DEFAULTS.patch_size}]")
    p.add_option("lr", kind=float, help=f"Initial learning rate. [default: {_DEFAULTS.learning_rate:g}; "
                 f"fine-tuning {FINETUNE_DEFAULTS['learning_rate']:g}]")
    p.add_option("surface_dice", kind=yes_no, help="Add the Surface-Dice loss (MemBrain v2). [default: "
                 f"{'yes' if _DEFAULTS.loss.surface_dice else 'no'}]")
    p.add_option("augment", kind=yes_no, help="MemBrain-seg's augmentations. [default: yes]")
    p.add_option("precision", help=f"Arithmetic: {', '.join(x.value for x in TrainPrecision)}. "
                 f"[default: {_DEFAULTS.precision.value}]")
    p.add_option("compile", kind=yes_no, help="torch.compile the network. "
                 f"[default: {'yes' if _DEFAULTS.compile else 'no'}]")
    p.add_option("workers", kind=int, help=f"Data-loading processes. [default: {_DEFAULTS.num_workers}]")
    p.add_option("seed", kind=int, help=f"Seed of weights, crops and augmentation. [default: {_DEFAULTS.seed}]")
    p.add_option("gpu", metavar="ID", help="GPU to use (e.g. 0), or cpu. [default: the first GPU if any, else the CPU]")
    p.add_option("tomogram_column", metavar="LABEL", help=f"STAR column naming the tomograms. [default: {AUTO}]")
    p.add_option("voxel_size", kind=float, metavar="A", help="Voxel size in Å of every tomogram, replacing the "
                 "STAR file's. [default: from the STAR file, else the MRC header]")
    return p


def run(args: argparse.Namespace, job: Job) -> list[Node]:
    """Train on the pairs of ``args.in_mics``; returns the output node (the best checkpoint).

    Raises:
        BilayerError: a bad list, pair, setting or checkpoint.
    """
    from bilayer.data import training_data
    from bilayer.model import default_model_path, load_checkpoint
    from bilayer.train import train

    if not args.in_mics:
        raise ConfigError("give the tomograms and labels with --in_mics STAR (RELION: 'Input micrographs')")
    labels_column = args.labels_column or MEMBRANE_COLUMNS["mask"]
    lists = {Split.TRAIN: _read(args.in_mics, args)}
    if args.validation:
        lists[Split.VAL] = _read(args.validation, args)
    pairs = {split: list(zip(found.tomograms, found.paths(found.column, "tomogram"),
                             found.paths(labels_column, "label"))) for split, found in lists.items()}
    voxel_size = _common_voxel_size([tomo for split in pairs.values() for tomo, _, _ in split])
    cases = {split: [(case_id(tomo.ts_id), image, label) for tomo, image, label in items]
             for split, items in pairs.items()}
    dataset = link_pairs(job.folder / DATASET_FOLDER, cases, prune=True)  # a continued job drops stale links
    init = None
    if args.model:
        init = load_checkpoint(default_model_path() if args.model == "default" else Path(args.model))
    config = _config(args, init is not None, voxel_size)
    train_data, val_data = training_data(config, dataset)
    counts = ", ".join(f"{len(p)} {s.value}" for s, p in pairs.items())
    start = f"fine-tuning {init.path}" if init is not None else "training a new network"
    limit = f" or {config.time_limit:g} minutes, whichever ends first" if config.time_limit else ""
    print(f"{start} on {counts} tomogram(s) at {voxel_size:g} Å: {config.epochs} epochs{limit}, patches of "
          f"{config.patch_size}, batches of {config.batch_size}")

    def report(epoch: int, row: dict[str, Any]) -> None:
        values = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "seconds")
        print(f"epoch {epoch}/{config.epochs}  {values}  {row['seconds']:.1f} s")
        job.check_abort()

    job.check_abort()
    result = train(config, train_data, job.folder / RUN_FOLDER, val_data=val_data, init=init,
                   device=device_from_gpu(args.gpu), resume=True, on_epoch=report)
    print(f"best: {result.best}\nlast: {result.last}\nmetrics: {result.folder / 'metrics.csv'}")
    return [Node(result.best, NodeType.MODEL)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit status."""
    return run_program(argv, build_parser(), run)


def _read(star: str, args: argparse.Namespace) -> TomogramList:
    return read_tomogram_list(star, column=args.tomogram_column or AUTO, voxel_size=args.voxel_size)


def _common_voxel_size(tomograms: Sequence[Any]) -> float:
    """The one voxel size of all tomograms (STAR file, else MRC header): a model is trained at one."""
    sizes = {t.ts_id: t.voxel_size or read_volume(t.path, check_finite=False).isotropic_voxel_size
             for t in tomograms}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name} {size:g} Å" for name, size in sizes.items())
        raise InputFileError(f"the tomograms have different voxel sizes ({listed}); a model is trained at one: "
                             "give tomograms of one voxel size (bin them alike), or train one model per size")
    return next(iter(sizes.values()))


def _config(args: argparse.Namespace, finetune: bool, voxel_size: float) -> TrainConfig:
    """Settings, later winning: the engine's defaults, fine-tuning's, the settings file, the parameters;
    the voxel size is the data's."""
    return training_config(args.config, finetune=finetune, augment=args.augment is not False,
                           surface_dice=args.surface_dice, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                           batch_size=args.batch_size, patch_size=args.patch_size, learning_rate=args.lr,
                           precision=args.precision, compile=args.compile, num_workers=args.workers, seed=args.seed,
                           time_limit=args.time_limit, voxel_size=voxel_size)


if __name__ == "__main__":
    sys.exit(main())
