"""bilayer.data.sources: training and validation patches from a folder or the generator, seeded augmentation."""

from __future__ import annotations

import logging

import numpy as np
import torch

from bilayer.augment import AugmentConfig
from bilayer.data import training_data
from bilayer.data.layout import VAL_SEED_OFFSET
from bilayer.data.patches import FolderPatches, SyntheticPatches
from bilayer.data.sources import augmentation
from bilayer.io import write_volume
from bilayer.train import TrainConfig
from tiny_training import FAST


def test_training_data_from_a_folder_without_validation_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bilayer")
    for split in ("imagesTr", "labelsTr"):
        (tmp_path / split).mkdir()
    write_volume(tmp_path / "imagesTr" / "a_0000.mrc", np.ones((8, 8, 8), np.float32) * np.arange(8), voxel_size=10)
    write_volume(tmp_path / "labelsTr" / "a.mrc", np.zeros((8, 8, 8), np.int8), voxel_size=10)
    train_set, val_set = training_data(TrainConfig(**FAST, augment=None), tmp_path)
    assert val_set is None and len(train_set) == 1 and "without validation" in caplog.text
    assert train_set[0]["label"].shape == (1, 32, 32, 32)


def test_a_folder_with_validation_folders_gives_central_validation_crops(tmp_path):
    for split in ("imagesTr", "labelsTr", "imagesVal", "labelsVal"):
        (tmp_path / split).mkdir()
    image = np.ones((8, 8, 8), np.float32) * np.arange(8)
    for images, labels, name in (("imagesTr", "labelsTr", "a"), ("imagesTr", "labelsTr", "b"),
                                 ("imagesVal", "labelsVal", "c")):
        write_volume(tmp_path / images / f"{name}_0000.mrc", image, voxel_size=10)
        write_volume(tmp_path / labels / f"{name}.mrc", np.zeros((8, 8, 8), np.int8), voxel_size=10)
    train_set, val_set = training_data(TrainConfig(**FAST, augment=None, seed=3), tmp_path)
    assert isinstance(train_set, FolderPatches) and isinstance(val_set, FolderPatches)
    assert len(train_set) == 2 and len(val_set) == 1
    assert train_set.random_crop and not val_set.random_crop and train_set.seed == val_set.seed == 3
    assert train_set.transform is None and val_set.transform is None


def test_generated_patches_take_the_runs_size_voxel_size_and_seed():
    config = TrainConfig(**FAST, voxel_size=14.0, seed=5)
    train_set, val_set = training_data(config, None, synthetic=6, synthetic_val=2,
                                       synth_settings={"empty_probability": 0.5})
    assert isinstance(train_set, SyntheticPatches) and isinstance(val_set, SyntheticPatches)
    assert (len(train_set), len(val_set)) == (6, 2) and val_set.fixed and not train_set.fixed
    for patches in (train_set, val_set):
        assert patches.config.shape == (32, 32, 32) and patches.config.voxel_size == 14.0
        assert patches.config.empty_probability == 0.5
    assert train_set.seed == 5 and val_set.seed == 5 + VAL_SEED_OFFSET  # validation draws of their own
    assert train_set.transform is not None and val_set.transform is None  # only training patches are augmented
    assert training_data(config, None, synthetic=6, synthetic_val=0)[1] is None


def test_augmentation_is_seeded_per_sample_and_absent_without_a_config():
    assert augmentation(None) is None
    augment = augmentation(AugmentConfig())
    rng = np.random.default_rng(0)
    sample = {"image": torch.from_numpy(rng.normal(size=(1, 32, 32, 32)).astype(np.float32)),
              "label": torch.from_numpy(rng.integers(0, 3, (1, 32, 32, 32)).astype(np.float32))}
    first, again, other = augment(sample, 11), augment(sample, 11), augment(sample, 12)
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["label"], again["label"])
    assert not torch.equal(first["image"], other["image"])
    assert set(first["label"].unique().tolist()) <= {0.0, 1.0, 2.0}
