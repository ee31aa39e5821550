"""Filters: each equals its scipy.ndimage counterpart; the random variants draw within their ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from bilayer.augment import filters
from bilayer.augment.filters import (
    RandGaussianBlur,
    RandLowResolution,
    RandMedianFilter,
    RandMedianFilterd,
    RandSharpen,
    gaussian_blur,
    median_filter,
    sharpen,
    simulate_low_resolution,
)
from bilayer.errors import ConfigError


def _volume(rng, shape=(1, 15, 18, 13)) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("size", [2, 3, 4])
def test_exact_median_matches_scipy(rng, size):
    x = _volume(rng)
    expected = ndimage.median_filter(x[0].numpy(), size=size, mode="reflect")
    np.testing.assert_array_equal(median_filter(x, size)[0].numpy(), expected)


@pytest.mark.parametrize("size", [2, 3])
def test_unfolded_median_for_gpus_matches_scipy(rng, monkeypatch, size):
    monkeypatch.setattr(filters, "_CHUNK_ELEMENTS", 2000)  # several slabs
    x = _volume(rng)
    expected = ndimage.median_filter(x[0].numpy(), size=size, mode="reflect")
    np.testing.assert_array_equal(filters._median_unfolded(x, size)[0].numpy(), expected)


def test_separable_median_is_three_1d_medians(rng):
    x = _volume(rng)
    expected = x[0].numpy()
    for window in ((5, 1, 1), (1, 5, 1), (1, 1, 5)):
        expected = ndimage.median_filter(expected, size=window, mode="reflect")
    np.testing.assert_array_equal(median_filter(x, 5, separable=True)[0].numpy(), expected)


@pytest.mark.parametrize("sigma", [(0.3, 0.9, 1.5), (1.2, 1.2, 1.2), (0.0, 2.0, 0.5)])
def test_gaussian_blur_matches_scipy(rng, sigma):
    x = _volume(rng)
    expected = ndimage.gaussian_filter(x[0].numpy().astype(np.float64), sigma, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(gaussian_blur(x, sigma)[0].numpy(), expected, atol=2e-5)


def test_sharpen_matches_scipy_convolution(rng):
    x = _volume(rng)
    kernel = np.zeros((3, 3, 3))
    kernel[1, 1, 1] = 6.0
    for offset in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[offset] = -1.0
    kernel *= 0.4
    kernel[1, 1, 1] += 1.0
    expected = ndimage.convolve(x[0].numpy().astype(np.float64), kernel, mode="reflect")
    np.testing.assert_allclose(sharpen(x, 0.4)[0].numpy(), expected, atol=1e-5)


def test_low_resolution_keeps_only_the_sampled_voxels(rng):
    x = _volume(rng, (1, 16, 16, 16))
    assert torch.equal(simulate_low_resolution(x, 1.0), x)
    changed = x.clone()
    changed[:, ::2, ::2, ::2] = 100.0  # at scale 0.5 nearest-exact reads the odd voxels only
    out = simulate_low_resolution(x, 0.5)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.equal(simulate_low_resolution(changed, 0.5), out)
    flat = torch.full((1, 12, 12, 12), 3.0)
    assert torch.allclose(simulate_low_resolution(flat, 0.3), flat)


def test_random_filters_draw_within_range_and_repeat_with_seed(rng):
    x = _volume(rng, (1, 12, 12, 12))
    median = RandMedianFilter(prob=1.0, size_range=(2, 4)).set_random_state(0)
    sizes = set()
    for _ in range(20):
        median.randomize(x)
        sizes.add(median.size)
    assert sizes == {2, 3, 4}
    blur = RandGaussianBlur(prob=1.0, sigma_range=(0.5, 0.7)).set_random_state(1)
    blur.randomize(x)
    assert all(0.5 <= s <= 0.7 for s in blur.sigma) and len(set(blur.sigma)) == 3
    for transform in (RandSharpen(prob=1.0), RandLowResolution(prob=1.0), RandGaussianBlur(prob=1.0)):
        first = transform.set_random_state(9)(x)
        assert torch.equal(transform.set_random_state(9)(x), first) and not torch.equal(first, x)


def test_dict_variant_filters_only_the_image(rng):
    image, label = _volume(rng, (1, 10, 10, 10)), torch.ones(1, 10, 10, 10)
    data = {"image": image, "label": label}
    out = RandMedianFilterd(prob=1.0, size_range=(3, 3)).set_random_state(0)(data)
    assert out["label"] is label and data["image"] is image
    assert torch.equal(out["image"], median_filter(image, 3))


@pytest.mark.parametrize("call,name", [
    (lambda: RandMedianFilter(size_range=(0, 3)), "size_range"),
    (lambda: RandMedianFilter(size_range=(2.5, 3)), "size_range"),
    (lambda: RandGaussianBlur(sigma_range=(-1.0, 1.0)), "sigma_range"),
    (lambda: RandLowResolution(scale_range=(0.0, 0.5)), "scale_range"),
    (lambda: RandSharpen(prob=-0.1), "prob"),
    (lambda: median_filter(torch.zeros(1, 4, 4, 4), 5), "size"),
    (lambda: gaussian_blur(torch.zeros(1, 4, 4, 4), (1.0, 1.0)), "sigma"),
    (lambda: simulate_low_resolution(torch.zeros(1, 4, 4, 4), 1.5), "scale"),
])
def test_invalid_parameters_are_named(call, name):
    with pytest.raises(ConfigError, match=name):
        call()
