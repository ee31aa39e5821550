"""Shared pieces of the augmentation transforms: the two base classes, input checks, small tensor helpers.

Every random transform in :mod:`bilayer.augment` has three layers (STYLE.md): a pure function
over tensors, a ``Rand*`` class deriving from :class:`RandImageTransform` that draws its parameters
with ``self.R`` and applies the pure function, and a ``*d`` class deriving from :class:`RandMapped`
that draws once and applies that draw to each key of a sample dict. Samples are (C, Z, Y, X)
tensors; nothing here leaves the tensor's device.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

from bilayer.checks import probability
from bilayer.errors import ConfigError

__all__ = [
    "GEOMETRY_KEYS",
    "IMAGE_KEYS",
    "RandImageTransform",
    "RandMapped",
    "check_image",
    "draw_blob",
    "gaussian_blob",
    "pad_symmetric",
    "standardize",
]

#: Keys that intensity transforms touch by default: only the image.
IMAGE_KEYS: tuple[str, ...] = ("image",)
#: Keys that geometric transforms move together by default.
GEOMETRY_KEYS: tuple[str, ...] = ("image", "label")

Shape3 = tuple[int, int, int]


def check_image(img: torch.Tensor, *, floating: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``img`` is a (C, Z, Y, X) tensor (floating point if asked)."""
    if not isinstance(img, torch.Tensor) or img.ndim != 4:
        shape = tuple(img.shape) if hasattr(img, "shape") else type(img).__name__
        raise ConfigError(f"augmentation input {shape} must be a (C, Z, Y, X) torch tensor; add the channel axis")
    if floating and not img.is_floating_point():
        raise ConfigError(f"augmentation input has dtype {img.dtype}; convert the image to float32 first")


class RandImageTransform(RandomizableTransform):
    """Base of the array transforms: :meth:`randomize` draws, ``__call__`` applies the last draw.

    Subclasses implement ``_draw(shape)``, which uses only ``self.R``, and ``_apply(img)``, which
    is a pure function of the image and the drawn parameters. A new transform is seeded with 0
    (never MONAI's shared, unseeded class-level state) until ``set_random_state`` is called.
    Before the first draw a call with ``randomize=False`` returns the image unchanged.
    """

    #: Whether inputs must be floating point (geometry also moves integer labels).
    _needs_float = True

    def __init__(self, prob: float) -> None:
        super().__init__(probability("prob", prob), do_transform=False)
        self.set_random_state(seed=0)

    def randomize(self, data: torch.Tensor) -> None:
        """Decide whether to transform (probability ``prob``) and, if so, draw the parameters."""
        super().randomize(None)
        if self._do_transform:
            self._draw(tuple(data.shape[-3:]))

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """A new (C, Z, Y, X) tensor, or ``img`` itself when this draw leaves it alone."""
        check_image(img, floating=self._needs_float)
        if randomize:
            self.randomize(img)
        return self._apply(img) if self._do_transform else img

    def _draw(self, shape: Shape3) -> None:
        raise NotImplementedError

    def _apply(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class RandMapped(RandomizableTransform, MapTransform):
    """Dict variant of a :class:`RandImageTransform`: one draw, applied to every key in ``keys``.

    The wrapped transform holds the probability and the random state, so a dict transform and its
    array transform give the same results from the same seed. The caller's dict is never changed.
    """

    def __init__(self, keys: Sequence[Hashable], transform: RandImageTransform) -> None:
        MapTransform.__init__(self, tuple(keys))
        RandomizableTransform.__init__(self, transform.prob, do_transform=False)
        self.transform = transform
        self.R = transform.R

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandMapped:
        """Seed the wrapped transform; this one shares its random state."""
        self.transform.set_random_state(seed, state)
        self.R = self.transform.R
        return self

    def randomize(self, data: torch.Tensor) -> None:
        """Draw once for the whole sample, from the first key's tensor."""
        self.transform.randomize(data)
        self._do_transform = self.transform._do_transform

    def __call__(self, data: Mapping[Hashable, torch.Tensor], randomize: bool = True) -> dict:
        """A new dict whose ``keys`` hold the transformed tensors; other entries are passed on."""
        d = dict(data)
        keys = list(self.key_iterator(d))
        if randomize:
            self.randomize(d[keys[0]])
        if self._do_transform:
            for key in keys:
                d[key] = self.transform(d[key], randomize=False)
        return d


def standardize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x`` shifted and scaled per channel to mean 0 and standard deviation 1 (population std)."""
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, correction=0).clamp_min(eps)
    return (x - mean) / std


def pad_symmetric(x: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``x`` padded on its last ``len(pads)`` axes by mirroring with the edge repeated.

    This is SciPy's ``mode="reflect"`` (numpy's ``"symmetric"``), which ``torch.nn.functional.pad``
    lacks; it keeps filters here equal to their :mod:`scipy.ndimage` counterparts at the borders.

    Args:
        x: tensor of any shape.
        pads: (before, after) voxel counts for each of the last axes, outermost first; each at most
            the axis length.
    """
    first = x.ndim - len(pads)
    for offset, (before, after) in enumerate(pads):
        axis = first + offset
        parts = []
        if before:
            parts.append(x.narrow(axis, 0, before).flip(axis))
        parts.append(x)
        if after:
            parts.append(x.narrow(axis, x.shape[axis] - after, after).flip(axis))
        if len(parts) > 1:
            x = torch.cat(parts, dim=axis)
    return x


def gaussian_blob(shape: Shape3, center: Sequence[float], scale: Sequence[float], *,
                  device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """exp(-½ Σ ((i_a - center_a) / scale_a)²) over a (Z, Y, X) grid of voxel indices.

    Built as the outer product of three 1-D Gaussians, so it costs one multiplication per voxel.
    ``center`` may lie outside the volume (then only a flank of the blob is seen).
    """
    profiles = [torch.exp(-0.5 * ((torch.arange(n, device=device, dtype=dtype) - c) / s) ** 2)
                for n, c, s in zip(shape, center, scale, strict=True)]
    return profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]


def draw_blob(rng: np.random.RandomState, shape: Shape3, scale_bounds: Sequence[tuple[float, float]],
              loc_range: tuple[float, float] = (-0.5, 1.5)) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A random blob's (center, scale) in voxels, as batchgenerators' local transforms draw them.

    Per axis the scale is log-uniform between the axis' ``scale_bounds`` and the centre is uniform
    in ``loc_range`` times the axis length (so it may fall outside the patch).
    """
    scale = tuple(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) for lo, hi in scale_bounds)
    center = tuple(float(rng.uniform(*loc_range) * n) for n in shape)
    return center, scale
