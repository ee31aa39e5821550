"""Shared pieces of the augmentation transforms: checks, the two base classes, small tensor helpers.

Every random transform in :mod:`bilayer.augment` has three layers (STYLE.md): a pure function
over tensors, a ``Rand*`` class deriving from :class:`RandImageTransform` that draws its parameters
with ``self.R`` and applies the pure function, and a ``*d`` class deriving from :class:`RandMapped`
that draws once and applies that draw to each key of a sample dict. Samples are (C, Z, Y, X)
tensors; nothing here leaves the tensor's device.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

from bilayer.errors import ConfigError

__all__ = [
    "GEOMETRY_KEYS",
    "IMAGE_KEYS",
    "RandImageTransform",
    "RandMapped",
    "check_image",
    "check_prob",
    "check_range",
    "check_scalar",
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


def check_prob(name: str, value: float) -> float:
    """``value`` as a float when it is a probability in [0, 1], else a :class:`ConfigError` naming ``name``."""
    return check_scalar(name, value, 0.0, 1.0)


def check_scalar(name: str, value: float, low: float = -math.inf, high: float = math.inf, *,
                 open_low: bool = False, open_high: bool = False, integer: bool = False) -> float:
    """``value`` when it is a finite number within [low, high] (ends excluded where asked).

    Raises:
        ConfigError: not a number, not finite, not an integer where one is needed, or out of range;
            the message names ``name``, the value and the allowed interval.
    """
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{name}={value!r} must be {kind} in {_interval(low, high, open_low, open_high)}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        interval = _interval(low, high, open_low, open_high)
        raise ConfigError(f"{name}={value!r} is out of range; use a value in {interval}")
    return int(value) if integer else float(value)


def check_range(name: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf, *,
                open_low: bool = False, open_high: bool = False, integer: bool = False) -> tuple:
    """``value`` as a ``(lo, hi)`` tuple with ``lo <= hi``, both within [low, high].

    A range with equal ends fixes the value; draws are uniform between the ends.

    Raises:
        ConfigError: not a pair, an end out of range, or ``lo > hi``; the message names ``name``.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} must be a pair (low, high), e.g. ({low}, {high})")
    lo, hi = (check_scalar(f"{name}[{i}]", v, low, high, open_low=open_low, open_high=open_high, integer=integer)
              for i, v in enumerate(value))
    if lo > hi:
        raise ConfigError(f"{name}={tuple(value)!r} has low > high; write it as ({hi}, {lo})")
    return lo, hi


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    return f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"


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
        super().__init__(check_prob("prob", prob), do_transform=False)
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
