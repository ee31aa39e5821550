"""Intensity changes: noise, brightness, contrast and gamma keep what they promise and repeat with a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bilayer.augment.intensity import (
    RandBrightness,
    RandContrast,
    RandGammaContrast,
    RandGaussianNoise,
    RandGaussianNoised,
    add_gaussian_noise,
    gamma_contrast,
    scale_contrast,
    shift_brightness,
)
from bilayer.errors import ConfigError


def _volume(rng, shape=(1, 32, 32, 32)) -> torch.Tensor:
    return torch.from_numpy((rng.normal(size=shape) * 2.0 + 1.0).astype(np.float32))


def test_noise_is_seeded_and_has_the_asked_spread(rng):
    x = _volume(rng)
    before = x.clone()
    first, again, other = (add_gaussian_noise(x, 0.7, seed) for seed in (11, 11, 12))
    assert torch.equal(first, again) and not torch.equal(first, other)
    noise = (first - x).double()
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(noise.std()) == pytest.approx(0.7, abs=0.02)
    assert torch.equal(x, before)


def test_brightness_and_contrast(rng):
    x = _volume(rng)
    assert torch.allclose(shift_brightness(x, -0.25), x - 0.25)
    mean = x.mean()
    stretched = scale_contrast(x, 1.7)
    assert torch.allclose(stretched - mean, 1.7 * (x - mean), atol=1e-5)
    clipped = scale_contrast(x, 1.7, preserve_range=True)
    assert float(clipped.min()) == float(x.min()) and float(clipped.max()) == float(x.max())
    inside = (stretched >= x.min()) & (stretched <= x.max())
    assert torch.equal(clipped[inside], stretched[inside])


@pytest.mark.parametrize("gamma", [0.5, 2.5])
@pytest.mark.parametrize("invert", [False, True])
def test_gamma_keeps_mean_and_std(rng, gamma, invert):
    x = _volume(rng)
    out = gamma_contrast(x, gamma, invert=invert)
    assert float(out.mean()) == pytest.approx(float(x.mean()), abs=1e-4)
    assert float(out.std()) == pytest.approx(float(x.std()), rel=1e-4)
    assert not torch.allclose(out, x, atol=1e-2)


def test_gamma_curve_and_inversion(rng):
    x = _volume(rng, (1, 10, 10, 10))
    assert torch.allclose(gamma_contrast(x, 1.0), x, atol=1e-5)
    assert torch.allclose(gamma_contrast(x, 2.0, invert=True), -gamma_contrast(-x, 2.0), atol=1e-6)
    # independent: rescale to [0, 1], square, rescale, restore mean and std
    v = x.double()
    curve = ((v - v.min()) / (v.max() - v.min())) ** 2.0
    expected = (curve - curve.mean()) / curve.std() * v.std() + v.mean()
    assert torch.allclose(gamma_contrast(x, 2.0).double(), expected, atol=1e-4)


def test_random_gamma_applies_both_curves(rng):
    x = _volume(rng, (1, 12, 12, 12))
    transform = RandGammaContrast(prob=1.0).set_random_state(3)
    out = transform(x)
    g1, g2 = transform.gammas
    assert all(0.5 <= g <= 4.5 for g in (g1, g2))
    assert torch.allclose(out, gamma_contrast(gamma_contrast(x, g1), g2, invert=True))


def test_random_variants_repeat_with_a_seed_and_skip_by_probability(rng):
    x = _volume(rng, (1, 12, 12, 12))
    for transform in (RandGaussianNoise(prob=1.0), RandBrightness(prob=1.0), RandContrast(prob=1.0),
                      RandGammaContrast(prob=1.0)):
        first = transform.set_random_state(21)(x)
        assert torch.equal(transform.set_random_state(21)(x), first) and not torch.equal(first, x)
    assert RandGaussianNoise(prob=0.0).set_random_state(0)(x) is x


def test_contrast_draws_both_modes(rng):
    transform = RandContrast(prob=1.0).set_random_state(0)
    modes = set()
    for _ in range(20):
        transform.randomize(torch.zeros(1, 2, 2, 2))
        modes.add(transform.preserve_range)
        assert 0.5 <= transform.factor <= 2.0
    assert modes == {False, True}


def test_dict_variant_leaves_the_label_alone(rng):
    image, label = _volume(rng, (1, 8, 8, 8)), torch.ones(1, 8, 8, 8)
    out = RandGaussianNoised(prob=1.0).set_random_state(0)({"image": image, "label": label})
    assert out["label"] is label and not torch.equal(out["image"], image)


@pytest.mark.parametrize("call,name", [
    (lambda: RandGaussianNoise(max_std=-0.1), "max_std"),
    (lambda: RandBrightness(sigma=float("inf")), "sigma"),
    (lambda: RandContrast(factor_range=(0.0, 2.0)), "factor_range"),
    (lambda: RandContrast(preserve_range_prob=1.1), "preserve_range_prob"),
    (lambda: RandGammaContrast(gamma_range=(2.0, 1.0)), "gamma_range"),
    (lambda: gamma_contrast(torch.zeros(1, 2, 2, 2), 0.0), "gamma"),
    (lambda: add_gaussian_noise(torch.zeros(1, 2, 2, 2, dtype=torch.int32), 1.0, 0), "float32"),
])
def test_invalid_parameters_are_named(call, name):
    with pytest.raises(ConfigError, match=name):
        call()
