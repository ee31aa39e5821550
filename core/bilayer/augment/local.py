"""Changes confined to part of the patch: random erasing, an additive brightness gradient, local gamma.

The image only; labels are untouched (an erased membrane is still a membrane, so the network
learns to fill gaps). The gradient and the local gamma are weighted by a large Gaussian blob
whose centre may lie outside the patch, as in batchgenerators (which MemBrain-seg re-implements).
Two slips in MemBrain-seg's copy are not repeated: there the blob centre is drawn in voxels
rather than as a fraction of the patch (so it always sits near the first corner), and the blob is
2-D (``image.shape[2:]`` of a (C, Z, Y, X) patch), constant along z. Here both follow
batchgenerators: centre at U(−0.5, 1.5) × the axis length, and a 3-D blob.
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
    draw_blob,
    gaussian_blob,
)
from bilayer.checks import number, number_pair

__all__ = [
    "RandBrightnessGradient", "RandBrightnessGradientd", "RandEraseCuboids", "RandEraseCuboidsd", "RandLocalGamma",
    "RandLocalGammad", "add_brightness_gradient", "erase_cuboids", "local_gamma",
]

Cuboid = tuple[tuple[int, int, int], tuple[int, int, int]]  # (start (z, y, x), size (z, y, x)) in voxels
_EPS = 1e-8  # batchgenerators' guard against a flat blob or a flat image


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def erase_cuboids(x: torch.Tensor, cuboids: Sequence[Cuboid]) -> torch.Tensor:
    """``x`` with each cuboid (start, size in voxels) filled with ``x``'s per-channel mean.

    Cuboids reaching past the border are cut there. MemBrain-seg fills with the mean of the
    image as erased so far; the input's mean is used here, so the order of cuboids does not matter.
    """
    check_image(x)
    out = x.clone()
    mean = x.mean(dim=_spatial_dims(x), keepdim=True)
    for start, size in cuboids:
        box = tuple(slice(int(s), int(s) + int(n)) for s, n in zip(start, size, strict=True))
        out[(slice(None), *box)] = mean
    return out


def add_brightness_gradient(x: torch.Tensor, strength: float, center: Sequence[float],
                            scale: Sequence[float]) -> torch.Tensor:
    """``x`` plus a Gaussian blob (``center``, ``scale`` in voxels, (z, y, x)) scaled to peak at ``strength``."""
    check_image(x)
    blob = gaussian_blob(tuple(x.shape[-3:]), center, scale, device=x.device, dtype=x.dtype)
    return x + blob.mul_(float(strength) / max(float(blob.max()), _EPS))


def local_gamma(x: torch.Tensor, gamma: float, center: Sequence[float], scale: Sequence[float]) -> torch.Tensor:
    """``x`` through a gamma curve on its [min, max] range, blended in by a Gaussian blob.

    Where the blob is 1 the voxel gets the full curve, where it is 0 it keeps its value.

    Raises:
        ConfigError: bad ``x`` or ``gamma`` ≤ 0.
    """
    check_image(x)
    gamma = number("gamma", gamma, 0.0, open_low=True)
    dims = _spatial_dims(x)
    low = x.amin(dim=dims, keepdim=True)
    span = (x.amax(dim=dims, keepdim=True) - low).clamp_min(_EPS)
    unit = (x - low) / span
    blob = gaussian_blob(tuple(x.shape[-3:]), center, scale, device=x.device, dtype=x.dtype)
    return (unit + blob * (unit.pow(gamma) - unit)).mul_(span).add_(low)


def _membrain_blob_bounds(shape: Shape3) -> list[tuple[float, float]]:
    """Blob widths log-uniform between a sixth of the axis and the whole axis, in voxels."""
    return [(float(max(n // 6, 1)), float(n)) for n in shape]


class RandEraseCuboids(RandImageTransform):
    """Fill 1 to ``max_cuboids`` random cuboids with the image mean (MemBrain-seg: p 0.4, up to 5).

    Each edge is drawn uniformly (integers) between ``size_range`` times the axis length, i.e.
    16-53 voxels of a 160³ patch as in MemBrain-seg, and each position uniformly inside the patch.
    """

    def __init__(self, prob: float = 0.4, size_range: tuple[float, float] = (0.1, 1 / 3), max_cuboids: int = 5) -> None:
        super().__init__(prob)
        self.size_range = number_pair("size_range", size_range, 0.0, 1.0, open_low=True)
        self.max_cuboids = number("max_cuboids", max_cuboids, 1, integer=True)
        self.cuboids: tuple[Cuboid, ...] = ()

    def _draw(self, shape: Shape3) -> None:
        cuboids = []
        for _ in range(self.R.randint(1, self.max_cuboids + 1)):
            size = []
            for n in shape:
                low = max(1, int(n * self.size_range[0]))
                high = max(low, int(n * self.size_range[1]))
                size.append(int(self.R.randint(low, high + 1)))
            start = tuple(int(self.R.randint(0, max(n - s, 0) + 1)) for n, s in zip(shape, size, strict=True))
            cuboids.append((start, tuple(size)))
        self.cuboids = tuple(cuboids)

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return erase_cuboids(img, self.cuboids)


class RandBrightnessGradient(RandImageTransform):
    """An additive Gaussian blob peaking at ±U(``strength_range``), each sign with odds ½.

    MemBrain-seg: strength 1-5, p 0.3.
    """

    def __init__(self, prob: float = 0.3, strength_range: tuple[float, float] = (1.0, 5.0)) -> None:
        super().__init__(prob)
        self.strength_range = number_pair("strength_range", strength_range, 0.0)
        self.strength, self.blob = 0.0, ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def _draw(self, shape: Shape3) -> None:
        self.blob = draw_blob(self.R, shape, _membrain_blob_bounds(shape))
        sign = -1.0 if self.R.rand() < 0.5 else 1.0
        self.strength = sign * float(self.R.uniform(*self.strength_range))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return add_brightness_gradient(img, self.strength, *self.blob)


class RandLocalGamma(RandImageTransform):
    """Local gamma with γ from ``low_gamma_range`` or ``high_gamma_range``, odds ½ each (MemBrain-seg: p 0.3)."""

    def __init__(self, prob: float = 0.3, low_gamma_range: tuple[float, float] = (0.01, 0.8),
                 high_gamma_range: tuple[float, float] = (1.5, 4.0)) -> None:
        super().__init__(prob)
        self.low_gamma_range = number_pair("low_gamma_range", low_gamma_range, 0.0, open_low=True)
        self.high_gamma_range = number_pair("high_gamma_range", high_gamma_range, 0.0, open_low=True)
        self.gamma, self.blob = 1.0, ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def _draw(self, shape: Shape3) -> None:
        self.blob = draw_blob(self.R, shape, _membrain_blob_bounds(shape))
        gamma_range = self.low_gamma_range if self.R.rand() < 0.5 else self.high_gamma_range
        self.gamma = float(self.R.uniform(*gamma_range))

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        return local_gamma(img, self.gamma, *self.blob)


class RandEraseCuboidsd(RandMapped):
    """Dict variant of :class:`RandEraseCuboids` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.4,
                 size_range: tuple[float, float] = (0.1, 1 / 3), max_cuboids: int = 5) -> None:
        super().__init__(keys, RandEraseCuboids(prob, size_range, max_cuboids))


class RandBrightnessGradientd(RandMapped):
    """Dict variant of :class:`RandBrightnessGradient` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.3,
                 strength_range: tuple[float, float] = (1.0, 5.0)) -> None:
        super().__init__(keys, RandBrightnessGradient(prob, strength_range))


class RandLocalGammad(RandMapped):
    """Dict variant of :class:`RandLocalGamma` (image only by default)."""

    def __init__(self, keys: Sequence[Hashable] = IMAGE_KEYS, prob: float = 0.3,
                 low_gamma_range: tuple[float, float] = (0.01, 0.8),
                 high_gamma_range: tuple[float, float] = (1.5, 4.0)) -> None:
        super().__init__(keys, RandLocalGamma(prob, low_gamma_range, high_gamma_range))
