"""Voxel-wise intensity changes: Gaussian noise, brightness, contrast and gamma.

The image only; labels are untouched. Statistics (mean, range) are taken per channel. Noise is
drawn on the tensor's device from a ``torch.Generator`` seeded by the transform's ``self.R``, so
it is reproducible, escapes no seeding, and needs no host-to-device copy of a 160³ noise volume.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

from bilayer.augment._common import (
    IMAGE_KEYS,
    RandImageTransform,
    RandMapped,
    Shape3,
    check_image,
)
from bilayer.checks import number, number_pair, probability

__all__ = [
    "RandBrightness", "RandBrightnessd", "RandContrast", "RandContrastd", "RandGammaContrast", "RandGammaContrastd",
    "RandGaussianNoise", "RandGaussianNoised", "add_gaussian_noise", "gamma_contrast", "scale_contrast",
    "shift_brightness",
]

_SEED_LIMIT = 2**31 - 1
_RANGE_EPS = 1e-7  # MONAI AdjustContrast's guard against a zero intensity range
_STD_EPS = 1e-8


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def add_gaussian_noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """``x`` plus zero-mean Gaussian noise of standard deviation ``std``, drawn from ``seed`` on ``x``'s device."""
    check_image(x)
    generator = torch.Generator(device=x.device)
    generator.manual_seed(int(seed))
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return noise.mul_(float(std)).add_(x)


def shift_brightness(x: torch.Tensor, offset: float) -> torch.Tensor:
    """``x + offset``."""
    check_image(x)
    return x + float(offset)


def scale_contrast(x: torch.Tensor, factor: float, *, preserve_range: bool = False) -> torch.Tensor:
    """``x`` stretched by ``factor`` about its mean; with ``preserve_range`` clipped to its old [min, max]."""
    check_image(x)
    dims = _spatial_dims(x)
    mean = x.mean(dim=dims, keepdim=True)
    out = (x - mean).mul_(float(factor)).add_(mean)
    if preserve_range:
        out = torch.clamp(out, min=x.amin(dim=dims, keepdim=True), max=x.amax(dim=dims, keepdim=True))
    return out


def gamma_contrast(x: torch.Tensor, gamma: float, *, invert: bool = False) -> torch.Tensor:
    """``x`` through a gamma curve on its [min, max] range, then given back its mean and standard deviation.

    With ``invert`` the curve is applied to ``-x`` and the result negated, which bends the dark
    end instead of the bright one (MemBrain-seg's ``RandAdjustContrastWithInversionAndStats``).

    Raises:
        ConfigError: bad ``x`` or ``gamma`` ≤ 0.
    """
    check_image(x)
    gamma = number("gamma", gamma, 0.0, open_low=True)
    dims = _spatial_dims(x)
    y = -x if invert else x
    low = y.amin(dim=dims, keepdim=True)
    span = y.amax(dim=dims, keepdim=True) - low
    curved = ((y - low) / (span + _RANGE_EPS)).pow_(gamma).mul_(span).add_(low)
    curved_std = curved.std(dim=dims, keepdim=True, correction=0).clamp_min(_STD_EPS)
    scale = y.std(dim=dims, keepdim=True, correction=0) / curved_std
    out = (curved - curved.mean(dim=dims, keepdim=True)).mul_(scale).add_(y.mean(dim=dims, keepdim=True))
    return out.neg_() if invert else out


class RandGaussianNoise(RandImageTransform):
    """Gaussian noise with a standard deviation drawn from U(0, ``max_std``) (MemBrain-seg: 0.7, p 0.4)."""

    def __init__(self, prob: float = 0.4, max_std: float = 0.7) -> None:
        super().__init__(prob)
        self.max_std = number("max_std", max_std, 0.0)
        self.std, self.seed = 0.0, 0

    def _draw(self, shape: Shape3) -> None:
        self.std = float(self.R.uniform(0.0, self.max_std))
        self.seed = int(self.R.randint(_SEED_LIMIT))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return add_gaussian_noise(img, self.std, self.seed)


class RandBrightness(RandImageTransform):
    """An additive offset drawn from N(0, ``sigma``²) (MemBrain-seg: σ 0.5, p 0.3)."""

    def __init__(self, prob: float = 0.3, sigma: float = 0.5) -> None:
        super().__init__(prob)
        self.sigma = number("sigma", sigma, 0.0)
        self.offset = 0.0

    def _draw(self, shape: Shape3) -> None:
        self.offset = float(self.R.normal(0.0, self.sigma))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return shift_brightness(img, self.offset)


class RandContrast(RandImageTransform):
    """Contrast stretch by a factor from ``factor_range``, range-preserving with ``preserve_range_prob``.

    MemBrain-seg picks one of two contrast transforms (range preserved or not) with equal odds,
    each applied with p 0.3; that is this transform with ``prob=0.3, preserve_range_prob=0.5``.
    """

    def __init__(self, prob: float = 0.3, factor_range: tuple[float, float] = (0.5, 2.0),
                 preserve_range_prob: float = 0.5) -> None:
        super().__init__(prob)
        self.factor_range = number_pair("factor_range", factor_range, 0.0, open_low=True)
        self.preserve_range_prob = probability("preserve_range_prob", preserve_range_prob)
        self.factor, self.preserve_range = 1.0, False

    def _draw(self, shape: Shape3) -> None:
        self.preserve_range = bool(self.R.rand() < self.preserve_range_prob)
        self.factor = float(self.R.uniform(*self.factor_range))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return scale_contrast(img, self.factor, preserve_range=self.preserve_range)


class RandGammaContrast(RandImageTransform):
    """A gamma curve, then a gamma curve on the inverted image, each γ from ``gamma_range``.

    This is MemBrain-seg's pair of ``RandAdjustContrastWithInversionAndStats`` (γ from MONAI's
    default 0.5-4.5, p 0.25 for the pair): each step keeps mean and standard deviation and negates
    the image, so the pair bends both ends of the histogram and leaves the sign as it was.
    """

    def __init__(self, prob: float = 0.25, gamma_range: tuple[float, float] = (0.5, 4.5)) -> None:
        super().__init__(prob)
        self.gamma_range = number_pair("gamma_range", gamma_range, 0.0, open_low=True)
        self.gammas = (1.0, 1.0)

    def _draw(self, shape: Shape3) -> None:
        self.gammas = (float(self.R.uniform(*self.gamma_range)), float(self.R.uniform(*self.gamma_range)))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return gamma_contrast(gamma_contrast(img, self.gammas[0]), self.gammas[1], invert=True)


class RandGaussianNoised(RandMapped):
    """Dict variant of :class:`RandGaussianNoise` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.4, max_std: float = 0.7) -> None:
        super().__init__(keys, RandGaussianNoise(prob, max_std))


class RandBrightnessd(RandMapped):
    """Dict variant of :class:`RandBrightness` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.3, sigma: float = 0.5) -> None:
        super().__init__(keys, RandBrightness(prob, sigma))


class RandContrastd(RandMapped):
    """Dict variant of :class:`RandContrast` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.3,
                 factor_range: tuple[float, float] = (0.5, 2.0), preserve_range_prob: float = 0.5) -> None:
        super().__init__(keys, RandContrast(prob, factor_range, preserve_range_prob))


class RandGammaContrastd(RandMapped):
    """Dict variant of :class:`RandGammaContrast` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.25,
                 gamma_range: tuple[float, float] = (0.5, 4.5)) -> None:
        super().__init__(keys, RandGammaContrast(prob, gamma_range))
