"""Geometry augmentation: one resampling that matches SciPy, keeps labels exact and aligned with the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bilayer.augment.spatial import Outside, RandSpatial, RandSpatiald, affine_resample, rotation_matrix
from bilayer.errors import ConfigError

NO_MOVES = {"rotation_prob": 0.0, "zoom_prob": 0.0, "rot90_prob": 0.0, "axis_swap_prob": 0.0, "flip_prob": 0.0}


def _scipy_resample(volume: np.ndarray, matrix: np.ndarray, order: int, **kwargs) -> np.ndarray:
    """Independent reference: output o reads input c + M (o - c), c the centre in voxels."""
    centre = (np.asarray(volume.shape) - 1) / 2.0
    return ndimage.affine_transform(volume, matrix, offset=centre - matrix @ centre, order=order, **kwargs)


def _ball_label(shape: tuple[int, int, int], radius: float) -> torch.Tensor:
    grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
    inside = sum(g**2 for g in grids) <= radius**2
    slab = np.abs(grids[0] - 3) < 2  # a flat membrane through the ball
    return torch.from_numpy((inside ^ slab).astype(np.float32))[None]


def test_identity_reproduces_input_on_both_paths(rng):
    x = torch.from_numpy(rng.normal(size=(1, 17, 20, 23)).astype(np.float32))
    same = affine_resample(x, np.eye(3))
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()
    nearly = np.eye(3) * (1 + 1e-7)  # not a permutation: goes through grid_sample
    assert torch.allclose(affine_resample(x, nearly), x, atol=1e-4)
    assert torch.equal(affine_resample(x, nearly, nearest=True), x)


@pytest.mark.parametrize("shape", [(24, 24, 24), (19, 26, 23)])
def test_rotation_and_zoom_match_scipy(rng, shape):
    x = rng.normal(size=shape).astype(np.float32)
    matrix = rotation_matrix((17.0, -25.0, 8.0)) / 1.3
    ours = affine_resample(torch.from_numpy(x)[None], matrix)[0].numpy()
    expected = _scipy_resample(x.astype(np.float64), matrix, order=1, mode="nearest")
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_fill_matches_scipy_constant_padding(rng):
    labels = rng.integers(0, 2, size=(20, 20, 20)).astype(np.float32)
    matrix = np.eye(3) * 1.6  # zoom out: the rim samples outside
    ours = affine_resample(torch.from_numpy(labels)[None], matrix, nearest=True, fill=2.0)[0].numpy()
    expected = _scipy_resample(labels, matrix, order=0, mode="constant", cval=2.0)
    assert ours[0, 0, 0] == 2.0 and (ours == 2.0).sum() > 1000
    assert np.mean(ours == expected) > 0.995  # ties at exactly .5 may round differently


@pytest.mark.parametrize("plane,k", [((1, 2), 1), ((0, 2), 3), ((0, 1), 2)])
def test_quarter_turns_are_exact(rng, plane, k):
    x = rng.normal(size=(16, 16, 16)).astype(np.float32)
    a, b = plane
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    ours = affine_resample(torch.from_numpy(x)[None], matrix)[0].numpy()
    np.testing.assert_array_equal(ours, _scipy_resample(x, matrix, order=0))


def test_flip_and_swap_are_exact(rng):
    x = torch.from_numpy(rng.normal(size=(1, 8, 8, 8)).astype(np.float32))
    assert torch.equal(affine_resample(x, np.diag([1.0, -1.0, 1.0])), torch.flip(x, [2]))
    swap_zx = np.eye(3)[[2, 1, 0]]
    assert torch.equal(affine_resample(x, swap_zx), x.permute(0, 3, 2, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_and_label_stay_aligned(seed):
    label = _ball_label((28, 28, 28), 10.0)
    value = 5.0
    transform = RandSpatiald(rotation_prob=1.0, zoom_prob=1.0, rot90_prob=1.0, axis_swap_prob=1.0, flip_prob=1.0)
    transform.set_random_state(seed)
    out = transform({"image": label * value, "label": label})
    assert set(out["label"].unique().tolist()) <= {0.0, 1.0}
    assert out["label"].sum() > 100
    # trilinear gives the nearest voxel a weight of at least 1/8, so the image agrees with the label
    assert bool((out["image"][out["label"] == 1] >= value / 8 - 1e-4).all())
    assert bool((out["image"][out["label"] == 0] <= value * 7 / 8 + 1e-4).all())


def test_label_values_stay_exact_and_outside_is_as_configured(rng):
    label = torch.from_numpy(rng.integers(0, 3, size=(1, 20, 20, 20)).astype(np.float32))
    image = torch.from_numpy(rng.normal(size=(1, 20, 20, 20)).astype(np.float32))
    zoom_out = dict(NO_MOVES, zoom_prob=1.0, zoom_range=(0.5, 0.5))
    ignore = RandSpatiald(outside=Outside.IGNORE, **zoom_out).set_random_state(0)({"image": image, "label": label})
    border = RandSpatiald(outside="border", **zoom_out).set_random_state(0)({"image": image, "label": label})
    assert bool((ignore["label"][:, :3, :3, :3] == 2).all())
    assert torch.equal(border["label"][:, :3, :3, :3], label[:, :1, :1, :1].expand(1, 3, 3, 3))
    assert torch.equal(ignore["image"], border["image"])
    for out in (ignore, border):
        assert set(out["label"].unique().tolist()) <= {0.0, 1.0, 2.0}


def test_integer_labels_keep_their_dtype(rng):
    label = torch.from_numpy(rng.integers(0, 3, size=(1, 12, 12, 12)))
    out = RandSpatial(rotation_prob=1.0, nearest=True).set_random_state(3)(label)
    assert out.dtype == label.dtype and set(out.unique().tolist()) <= {0, 1, 2}


def test_same_seed_same_result_and_inputs_untouched(rng):
    image = torch.from_numpy(rng.normal(size=(1, 16, 16, 16)).astype(np.float32))
    label = (image > 0).float()
    data = {"image": image, "label": label, "name": "patch-3"}
    before = {k: v.clone() for k, v in data.items() if isinstance(v, torch.Tensor)}
    outs = [RandSpatiald(rotation_prob=1.0).set_random_state(seed)(data) for seed in (7, 7, 8)]
    assert torch.equal(outs[0]["image"], outs[1]["image"]) and torch.equal(outs[0]["label"], outs[1]["label"])
    assert not torch.equal(outs[0]["image"], outs[2]["image"])
    assert outs[0] is not data and outs[0]["name"] == "patch-3"
    assert all(torch.equal(data[k], before[k]) for k in before)


def test_unequal_axes_are_never_swapped():
    x = torch.arange(12 * 16 * 16, dtype=torch.float32).reshape(1, 12, 16, 16)
    transform = RandSpatial(rotation_prob=0.0, zoom_prob=0.0, rot90_prob=1.0, axis_swap_prob=1.0, flip_prob=1.0)
    transform.set_random_state(0)
    for _ in range(10):
        out = transform(x)
        assert out.shape == x.shape
        assert bool((np.abs(transform.matrix[0]) == [1, 0, 0]).all())  # z only maps to z


def test_randomize_false_reuses_the_draw(rng):
    x = torch.from_numpy(rng.normal(size=(1, 12, 12, 12)).astype(np.float32))
    transform = RandSpatial(rotation_prob=1.0).set_random_state(5)
    first = transform(x)
    assert torch.equal(transform(x, randomize=False), first)


@pytest.mark.parametrize("kwargs,name", [
    ({"zoom_range": (0.0, 1.2)}, "zoom_range"),
    ({"zoom_range": (1.4, 0.7)}, "zoom_range"),
    ({"rotation_prob": 1.5}, "rotation_prob"),
    ({"max_rotation_deg": -5.0}, "max_rotation_deg"),
    ({"prob": float("nan")}, "prob"),
    ({"outside": "zeros"}, "outside"),
])
def test_invalid_parameters_are_named(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        RandSpatiald(**kwargs)


def test_mismatched_shapes_and_bad_matrix_raise():
    transform = RandSpatiald(rotation_prob=1.0)
    with pytest.raises(ConfigError, match="one spatial shape"):
        transform({"image": torch.zeros(1, 8, 8, 8), "label": torch.zeros(1, 8, 8, 9)})
    with pytest.raises(ConfigError, match="3×3"):
        affine_resample(torch.zeros(1, 4, 4, 4), np.eye(2))
    with pytest.raises(ConfigError, match="channel"):
        affine_resample(torch.zeros(4, 4, 4), np.eye(3))
