"""Training and validation patches for a run, from a dataset folder or the synthetic generator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from bilayer.data.folder import find_pairs
from bilayer.data.layout import VAL_SEED_OFFSET, Split
from bilayer.data.patches import FolderPatches, SyntheticPatches, Transform
from bilayer.data.synthetic import SynthConfig

__all__ = ["augmentation", "training_data"]

log = logging.getLogger(__name__)


def training_data(config: Any, dataset: str | Path | None, *, synthetic: int | None = None, synthetic_val: int = 8,
                  synth_settings: Mapping[str, Any] | None = None) -> tuple[Dataset, Dataset | None]:
    """(training patches, validation patches or None) for ``config`` (a TrainConfig).

    Args:
        config: patch size, seed, voxel size and augmentation of the run.
        dataset: a dataset folder (``imagesTr/``, ``labelsTr/``, optional ``imagesVal/``,
            ``labelsVal/``); every pair is checked up front.
        synthetic: instead of a folder, this many generated patches per epoch.
        synthetic_val: fixed generated validation patches (0: no validation).
        synth_settings: generator settings (SynthConfig fields); the voxel size defaults to
            the run's.

    Raises:
        InputFileError: the folder has bad files (all listed in one message).
    """
    transform = augmentation(config.augment)
    if synthetic is not None:
        settings = {"voxel_size": config.voxel_size, **(synth_settings or {})}
        synth = SynthConfig.from_dict({**settings, "shape": [config.patch_size] * 3})
        train = SyntheticPatches(synth, synthetic, config.patch_size, transform=transform, seed=config.seed)
        # the validation seed shift of bilayer.data.layout, as scripts/make_synthetic_dataset.py uses; patch
        # seeds are hashed from (base seed, epoch, index), so these draws are independent of the training ones
        val = SyntheticPatches(synth, synthetic_val, config.patch_size, seed=config.seed + VAL_SEED_OFFSET,
                               fixed=True) if synthetic_val else None
        return train, val
    root = Path(dataset)  # type: ignore[arg-type]
    train = FolderPatches(find_pairs(root, Split.TRAIN), config.patch_size, transform=transform, seed=config.seed)
    if not any((root / name).exists() for name in Split.VAL.folders):
        log.info("%s has no imagesVal/ and labelsVal/: training without validation", root)
        return train, None
    val = FolderPatches(find_pairs(root, Split.VAL), config.patch_size, seed=config.seed, random_crop=False)
    return train, val


def augmentation(augment_config: Any) -> Transform | None:
    """A seeded augmentation ``(sample, seed) -> sample`` from an AugmentConfig, or None."""
    if augment_config is None:
        return None
    from bilayer.augment import build_augmentation, reseed

    pipeline = build_augmentation(augment_config, seed=0)

    def apply(sample: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        return dict(reseed(pipeline, seed)(dict(sample)))  # per-sample seed: same draws in any worker

    return apply
