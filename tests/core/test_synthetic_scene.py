"""bilayer.data.synthetic.scene: generated scenes repeat per seed, keep the output contract, refuse bad seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bilayer.data.synthetic import (
    DistractorKind,
    MembraneKind,
    SceneType,
    SynthConfig,
    generate_patches,
    generate_tomogram,
)
from bilayer.errors import ConfigError


SMALL = SynthConfig(shape=(40, 40, 40))


def test_same_seed_gives_identical_tomograms():
    a = generate_tomogram(SMALL, seed=7)
    b = generate_tomogram(SMALL, seed=7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.labels, b.labels)
    assert a.params == b.params


def test_different_seeds_give_different_scenes():
    a = generate_tomogram(SMALL, seed=1)
    b = generate_tomogram(SMALL, seed=2)
    assert not np.array_equal(a.image, b.image)
    assert a.params != b.params


def test_patches_are_independent_of_n_and_differ():
    first = list(generate_patches(SMALL, 3, seed=11))
    again = list(generate_patches(SMALL, 2, seed=11))
    for p, q in zip(first[:2], again, strict=True):
        assert np.array_equal(p.image, q.image)
        assert np.array_equal(p.labels, q.labels)
    assert not np.array_equal(first[0].image, first[1].image)
    assert [p.params["patch"] for p in first] == [0, 1, 2]


def test_generation_does_not_touch_global_random_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    generate_tomogram(SMALL, seed=3)
    assert np.random.random() == expected


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("scene", [SceneType.LAMELLA, SceneType.IN_VITRO])
def test_output_contract(seed, scene):
    config = SynthConfig(shape=(36, 40, 44), scene_type=scene)
    t = generate_tomogram(config, seed=seed)
    assert t.image.shape == t.labels.shape == (36, 40, 44)
    assert t.image.dtype == np.float32 and np.all(np.isfinite(t.image))
    assert abs(float(t.image.mean())) < 1e-3 and abs(float(t.image.std()) - 1) < 1e-3
    assert t.labels.dtype == np.uint8 and set(np.unique(t.labels)) <= {0, 1, 2}
    assert config.voxel_size_range[0] <= t.voxel_size <= config.voxel_size_range[1]
    params = json.loads(json.dumps(t.params))
    assert params["voxel_size"] == pytest.approx(t.voxel_size, abs=1e-3)
    assert params["scene_type"] == scene.value
    assert {"defocus", "tilt_min", "tilt_max", "snr", "ctf_mode"} <= set(params["imaging"])
    lo, hi = config.snr_range
    assert lo <= params["imaging"]["snr"] <= hi


def test_fixed_voxel_size_is_used_and_recorded():
    t = generate_tomogram(SynthConfig(shape=(32, 32, 32), voxel_size=13.5), seed=4)
    assert t.voxel_size == 13.5
    assert t.params["voxel_size"] == 13.5


def test_ignore_label_is_sparse_and_membranes_present_over_seeds():
    membrane, ignore = [], []
    for t in generate_patches(SynthConfig(shape=(40, 40, 40)), 12, seed=21):
        membrane.append(np.mean(t.labels == 1))
        ignore.append(np.mean(t.labels == 2))
    assert np.mean(membrane) > 0.01
    assert np.mean(ignore) < 0.1 * np.mean(membrane)


def test_every_geometry_and_distractor_kind_appears():
    seen = set()
    for t in generate_patches(SMALL, 60, seed=0):
        seen |= {m["kind"] for m in t.params["membranes"]}
        seen |= {d["kind"] for d in t.params["distractors"] if d.get("count", 1) > 0}
    expected = {k.value for k in MembraneKind} | {k.value for k in DistractorKind}
    assert expected <= seen, f"never drawn: {sorted(expected - seen)}"


def test_empty_scenes_have_no_membrane_labels():
    t = generate_tomogram(SynthConfig(shape=(32, 32, 32), empty_probability=1.0), seed=2)
    assert t.params["membranes"] == []
    assert not np.any(t.labels == 1)


@pytest.mark.parametrize("seed", [-1, 1.5, "3"])
def test_bad_seeds_are_config_errors(seed):
    with pytest.raises(ConfigError, match="seed"):
        generate_tomogram(SMALL, seed=seed)
    with pytest.raises(ConfigError, match="seed"):
        next(generate_patches(SMALL, 1, seed=seed))
