"""Local changes: erasing, brightness gradient and local gamma touch what they should and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.augment.local import (
    RandBrightnessGradient,
    RandEraseCuboids,
    RandEraseCuboidsd,
    RandLocalGamma,
    add_brightness_gradient,
    erase_cuboids,
    local_gamma,
)
from bilayer.errors import ConfigError


def _volume(rng, shape=(1, 20, 24, 22)) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


def test_erase_fills_cuboids_with_the_mean_and_nothing_else(rng):
    x = _volume(rng)
    before = x.clone()
    out = erase_cuboids(x, [((2, 3, 4), (5, 6, 7)), ((18, 20, 19), (9, 9, 9))])  # the second is cut at the border
    inside = torch.zeros_like(x, dtype=torch.bool)
    inside[:, 2:7, 3:9, 4:11] = True
    inside[:, 18:, 20:, 19:] = True
    assert torch.allclose(out[inside], x.mean().expand(int(inside.sum())))
    assert torch.equal(out[~inside], x[~inside])
    assert torch.equal(x, before)


def test_brightness_gradient_peaks_at_the_strength(rng):
    x = _volume(rng)
    out = add_brightness_gradient(x, -3.0, center=(5.0, 7.0, 30.0), scale=(4.0, 6.0, 8.0))
    added = out - x
    assert float(added.min()) == pytest.approx(-3.0, abs=1e-5)
    z, y, w = np.unravel_index(int(added[0].argmin()), added.shape[1:])
    assert (z, y, w) == (5, 7, 21)  # the nearest voxel to a centre outside the patch along x
    expected = np.exp(-0.5 * (((np.arange(20) - 5) / 4.0) ** 2))
    profile = added[0, :, 7, 21].numpy()
    np.testing.assert_allclose(profile / profile.min(), expected, rtol=1e-5)


def test_local_gamma_blends_from_full_curve_to_untouched(rng):
    x = _volume(rng)
    low, span = x.min(), x.max() - x.min()
    full = ((x - low) / span) ** 2.0 * span + low
    wide = local_gamma(x, 2.0, center=(10.0, 12.0, 11.0), scale=(1e6, 1e6, 1e6))
    assert torch.allclose(wide, full, atol=1e-5)
    far = local_gamma(x, 2.0, center=(-500.0, 12.0, 11.0), scale=(2.0, 2.0, 2.0))
    assert torch.allclose(far, x, atol=1e-6)


def test_random_cuboids_stay_within_their_ranges():
    shape = (40, 30, 60)
    transform = RandEraseCuboids(prob=1.0, size_range=(0.1, 1 / 3), max_cuboids=5).set_random_state(0)
    counts = set()
    for _ in range(30):
        transform.randomize(torch.zeros(1, *shape))
        counts.add(len(transform.cuboids))
        for start, size in transform.cuboids:
            for n, s, e in zip(shape, start, size, strict=True):
                assert n // 10 <= e <= n // 3 and 0 <= s <= n - e
    assert counts == {1, 2, 3, 4, 5}


def test_random_local_changes_repeat_with_a_seed(rng):
    x = _volume(rng, (1, 12, 12, 12))
    for transform in (RandEraseCuboids(prob=1.0), RandBrightnessGradient(prob=1.0), RandLocalGamma(prob=1.0)):
        first = transform.set_random_state(13)(x)
        assert torch.equal(transform.set_random_state(13)(x), first) and not torch.equal(first, x)


def test_gradient_strength_takes_both_signs():
    transform = RandBrightnessGradient(prob=1.0, strength_range=(1.0, 5.0)).set_random_state(0)
    strengths = []
    for _ in range(20):
        transform.randomize(torch.zeros(1, 8, 8, 8))
        strengths.append(transform.strength)
    assert all(1.0 <= abs(s) <= 5.0 for s in strengths) and min(strengths) < 0 < max(strengths)


def test_dict_variant_erases_only_the_image(rng):
    image, label = _volume(rng, (1, 16, 16, 16)), torch.ones(1, 16, 16, 16)
    out = RandEraseCuboidsd(prob=1.0).set_random_state(0)({"image": image, "label": label})
    assert out["label"] is label and not torch.equal(out["image"], image)


@pytest.mark.parametrize("call,name", [
    (lambda: RandEraseCuboids(size_range=(0.0, 0.5)), "size_range"),
    (lambda: RandEraseCuboids(max_cuboids=0), "max_cuboids"),
    (lambda: RandBrightnessGradient(strength_range=(-1.0, 2.0)), "strength_range"),
    (lambda: RandLocalGamma(low_gamma_range=(0.0, 0.8)), "low_gamma_range"),
    (lambda: local_gamma(torch.zeros(1, 2, 2, 2), -1.0, (0, 0, 0), (1, 1, 1)), "gamma"),
])
def test_invalid_parameters_are_named(call, name):
    with pytest.raises(ConfigError, match=name):
        call()
