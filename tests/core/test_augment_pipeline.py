"""The augmentation pipeline: seeded and reproducible, labels exact, inputs untouched (the config's own
tests are in test_augment_config.py)."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from bilayer.augment import AugmentConfig, build_augmentation, reseed, worker_seed
from bilayer.errors import ConfigError

ALWAYS = {field.name: 1.0 for field in dataclasses.fields(AugmentConfig) if field.name.endswith("_prob")}


def _sample(rng, n: int = 32) -> dict:
    label = torch.from_numpy(rng.integers(0, 3, size=(1, n, n, n)).astype(np.float32))
    image = torch.from_numpy(rng.normal(size=(1, n, n, n)).astype(np.float32)) + label
    return {"image": image, "label": label}


def test_same_seed_same_augmentations(rng):
    sample = _sample(rng)
    config = AugmentConfig(**ALWAYS)
    first, second, other = (build_augmentation(config, seed) for seed in (5, 5, 6))
    for _ in range(2):  # the streams stay in step over consecutive samples
        a, b, c = first(sample), second(sample), other(sample)
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert not torch.equal(a["image"], c["image"])


def test_everything_on_keeps_labels_exact_and_inputs_untouched(rng):
    sample = dict(_sample(rng), name="tomo_01")
    before = {key: sample[key].clone() for key in ("image", "label")}
    out = build_augmentation(AugmentConfig(**ALWAYS, median_size=(3, 3)), seed=0)(sample)
    assert out is not sample and out["name"] == "tomo_01"
    assert out["image"].shape == out["label"].shape == (1, 32, 32, 32)
    assert out["image"].dtype == torch.float32 and bool(torch.isfinite(out["image"]).all())
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert not torch.equal(out["image"], before["image"]) and not torch.equal(out["label"], before["label"])
    assert all(torch.equal(sample[key], before[key]) for key in before)


def test_nothing_on_is_the_identity(rng):
    sample = _sample(rng, 16)
    off = {name: 0.0 for name in ALWAYS}
    out = build_augmentation(AugmentConfig(**off), seed=0)(sample)
    assert torch.equal(out["image"], sample["image"]) and torch.equal(out["label"], sample["label"])


def test_workers_get_distinct_reproducible_streams(rng):
    sample = _sample(rng, 16)
    config = AugmentConfig(**ALWAYS, median_size=(2, 2))
    seeds = {worker_seed(7, worker, epoch) for worker in range(4) for epoch in range(3)}
    assert len(seeds) == 12 and worker_seed(7, 2, 1) == worker_seed(7, 2, 1)
    outs = [reseed(build_augmentation(config, 7), 7, worker_id=w)(sample)["image"] for w in (0, 0, 1)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_pipeline_pickles_for_worker_processes(rng):
    sample = _sample(rng, 16)
    augmentation = build_augmentation(AugmentConfig(**ALWAYS, median_size=(2, 2)), seed=3)
    copy = pickle.loads(pickle.dumps(augmentation))  # what a spawned DataLoader worker receives
    assert torch.equal(copy(sample)["image"], augmentation(sample)["image"])


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_bad_seed_is_named(seed):
    with pytest.raises(ConfigError, match="seed"):
        build_augmentation(AugmentConfig(), seed)
