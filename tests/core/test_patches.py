"""bilayer.data.patches: crops and generated scenes, reproducible per (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.data.folder import PatchPair
from bilayer.data.patches import FolderPatches, SyntheticPatches, sample_seed
from bilayer.data.synthetic import SynthConfig
from bilayer.errors import ConfigError
from bilayer.io import write_volume


def _pair(tmp_path, name: str, shape, seed: int = 0) -> tuple[PatchPair, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = (rng.normal(size=shape) * 4 + 7).astype(np.float32)
    label = rng.integers(0, 3, size=shape).astype(np.int8)
    write_volume(tmp_path / f"{name}_0000.mrc", image, voxel_size=10.0)
    write_volume(tmp_path / f"{name}.mrc", label, voxel_size=10.0)
    return PatchPair(name, tmp_path / f"{name}_0000.mrc", tmp_path / f"{name}.mrc", shape), image, label


def _located(crop: np.ndarray, full: np.ndarray) -> tuple[int, ...]:
    """Where ``crop`` sits in ``full`` (exhaustive search; the arrays are tiny)."""
    shape = crop.shape
    for start in np.ndindex(*(n - c + 1 for n, c in zip(full.shape, shape))):
        window = tuple(slice(s, s + c) for s, c in zip(start, shape))
        if np.array_equal(full[window], crop):
            return start
    raise AssertionError("crop not found")


def test_crops_come_from_the_pair_with_image_and_label_aligned(tmp_path):
    pair, image, label = _pair(tmp_path, "a", (24, 20, 18))
    data = FolderPatches([pair], 16, seed=3)
    sample = data[0]
    assert sample["image"].shape == (1, 16, 16, 16) and sample["image"].dtype == torch.float32
    standardised = (image - image.mean(dtype=np.float64)) / image.std(dtype=np.float64)
    where = _located(sample["label"][0].numpy().astype(np.int8), label)
    window = tuple(slice(s, s + 16) for s in where)
    np.testing.assert_allclose(sample["image"][0].numpy(), standardised[window], rtol=1e-5, atol=1e-5)


def test_draws_repeat_for_the_same_epoch_and_change_between_epochs(tmp_path):
    pair, _, _ = _pair(tmp_path, "a", (40, 40, 40))
    data = FolderPatches([pair], 16, seed=5)
    data.set_epoch(1)
    first, again = data[0]["image"], data[0]["image"]
    data.set_epoch(2)
    other = data[0]["image"]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    fresh = FolderPatches([pair], 16, seed=5, in_memory=False)
    fresh.set_epoch(1)
    assert torch.equal(fresh[0]["image"], first)  # reading on demand gives the same patch


def test_small_pairs_are_padded_with_zero_image_and_ignore_label(tmp_path):
    pair, _, _ = _pair(tmp_path, "small", (8, 16, 10))
    sample = FolderPatches([pair], 16, seed=0)[0]
    image, label = sample["image"][0].numpy(), sample["label"][0].numpy()
    assert image.shape == label.shape == (16, 16, 16)
    assert (label[:4] == 2).all() and (label[12:] == 2).all() and (image[:4] == 0).all()
    assert (label[:, :, :3] == 2).all() and (label[:, :, 13:] == 2).all()


def test_validation_crops_are_central_and_fixed(tmp_path):
    pair, _, label = _pair(tmp_path, "v", (30, 20, 24))
    data = FolderPatches([pair], 16, random_crop=False)
    assert _located(data[0]["label"][0].numpy().astype(np.int8), label) == (7, 2, 4)
    data.set_epoch(9)
    assert _located(data[0]["label"][0].numpy().astype(np.int8), label) == (7, 2, 4)


def test_the_transform_gets_the_sample_seed(tmp_path):
    pair, _, _ = _pair(tmp_path, "t", (16, 16, 16))
    seen = []

    def transform(sample, seed):
        seen.append(seed)
        return {"image": sample["image"] * 0 + 1, "label": sample["label"]}

    data = FolderPatches([pair], 16, seed=11, transform=transform)
    data.set_epoch(4)
    assert (data[0]["image"] == 1).all()
    assert seen == [sample_seed(11, 4, 0)]


def test_synthetic_patches_are_new_each_epoch_unless_fixed():
    config = SynthConfig(voxel_size=10.0)
    data = SyntheticPatches(config, 2, 32, seed=1)
    a = data[0]
    data.set_epoch(1)
    b = data[0]
    assert a["image"].shape == a["label"].shape == (1, 32, 32, 32)
    assert set(torch.unique(a["label"]).tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(a["image"], b["image"])
    fixed = SyntheticPatches(config, 2, 32, seed=1, fixed=True)
    first = fixed[1]["image"]
    fixed.set_epoch(7)
    assert torch.equal(fixed[1]["image"], first)


@pytest.mark.parametrize("bad", [0, -1, (16, 16)])
def test_bad_patch_sizes_are_refused(bad):
    with pytest.raises(ConfigError, match="patch_size"):
        SyntheticPatches(SynthConfig(voxel_size=10.0), 1, bad)
